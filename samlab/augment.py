"""Batched image augmentation on the data's own device (CPU or GPU).

Random crop with zero padding and random horizontal flip, as in the standard CIFAR
recipe, done as tensor indexing on the whole batch (no per-image Python loop).
Used by :func:`samlab.train.fit` when ``augment=True`` (notebook 04).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip"]


def random_crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad ``x`` (N, C, H, W) by ``pad`` zeros, crop back to H×W at random offsets, flip half."""
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    dev = x.device
    g = dict(generator=generator, device=generator.device if generator is not None else dev)
    di = torch.randint(0, 2 * pad + 1, (n,), **g).to(dev)
    dj = torch.randint(0, 2 * pad + 1, (n,), **g).to(dev)
    flip = (torch.rand(n, **g) < 0.5).to(dev)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = di[:, None] + torch.arange(h, device=dev)[None, :]  # (N, H)
    cols = dj[:, None] + torch.arange(w, device=dev)[None, :]  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()

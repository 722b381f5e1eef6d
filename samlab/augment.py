"""Batched image augmentation on the data's own device (CPU or GPU).

Random crop with zero padding and random horizontal flip, as in the standard CIFAR
recipe, done as tensor indexing on the whole batch (no per-image Python loop).
Used by :func:`samlab.train.fit` when ``augment=True`` (notebook 04).

The random draws (:func:`crop_flip_params`) are separate from applying them
(:func:`apply_crop_flip`), so that the GPU fast path of :mod:`samlab.fast` can draw a
whole epoch's parameters at once (one host-to-device copy per epoch instead of three per
batch) and still use exactly the numbers :func:`random_crop_flip` would have drawn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["apply_crop_flip", "crop_flip_params", "random_crop_flip"]


def crop_flip_params(
    n: int, pad: int = 4, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row offsets, column offsets (each in ``[0, 2 pad]``) and flip flags of ``n`` images.

    Drawn from ``generator`` (on its own device) in a fixed order, then moved to ``device``.
    """
    gdev = generator.device if generator is not None else (device or "cpu")
    g = dict(generator=generator, device=gdev)
    di = torch.randint(0, 2 * pad + 1, (n,), **g)
    dj = torch.randint(0, 2 * pad + 1, (n,), **g)
    flip = torch.rand(n, **g) < 0.5
    if device is not None:
        di, dj, flip = di.to(device), dj.to(device), flip.to(device)
    return di, dj, flip


def apply_crop_flip(
    x: torch.Tensor, di: torch.Tensor, dj: torch.Tensor, flip: torch.Tensor, pad: int = 4
) -> torch.Tensor:
    """Pad ``x`` (N, C, H, W) by ``pad`` zeros, crop H×W at offsets ``(di, dj)``, flip where ``flip``.

    The result has the memory format of ``x`` (``channels_last`` stays ``channels_last``).
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = di[:, None] + torch.arange(h, device=dev)[None, :]  # (N, H)
    cols = dj[:, None] + torch.arange(w, device=dev)[None, :]  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out.permute(0, 3, 1, 2)  # an NHWC buffer viewed as NCHW is channels_last already
    return out.permute(0, 3, 1, 2).contiguous()


def random_crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad ``x`` (N, C, H, W) by ``pad`` zeros, crop back to H×W at random offsets, flip half."""
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    di, dj, flip = crop_flip_params(x.shape[0], pad, generator, device=x.device)
    return apply_crop_flip(x, di, dj, flip, pad)

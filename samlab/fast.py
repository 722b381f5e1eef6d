"""The GPU fast path of :func:`samlab.train.fit` (notebook 04).

Three opt-in ``FitConfig`` fields, all off by default (the default loop is unchanged):

* ``image_storage="uint8"``: the training images stay on the device as their 8-bit pixel
  codes (a quarter of the float32 memory and memory traffic), and each batch is decoded
  and normalised on the device, ``x = (q / scale − mean) / std``, with exactly the
  operations :func:`samlab.data.load` used, so the batches are bit-for-bit the float32
  dataset's. The random crop and flip (``augment=True``) are applied on the device too,
  with the parameters of a whole epoch drawn at once (one host-to-device copy per epoch
  instead of three per batch, which on a GPU would wait for the previous step each
  time). The draws are those of the default path, in the same order: same numbers.
* ``memory_format="channels_last"``: the model and every batch (training and evaluation)
  in NHWC layout, the layout tensor cores want for convolutions in bf16.
* ``compile=True``: ``model.compile()`` (``torch.compile`` of the model's forward, in
  place, so parameter names and checkpoints are unchanged). The first epoch pays the
  compilation.

bf16 autocast on CUDA is not an option here: every method already runs its forward
passes under :func:`samlab.methods.base.autocast` (fp32 on the CPU).

:func:`samlab.bench.throughput` measures training images per second of the default and
the fast configurations on one model (``python -m samlab.bench --throughput``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from samlab.augment import apply_crop_flip, crop_flip_params
from samlab.data import _NORMALISATION, MINI_INDICES, Dataset

__all__ = [
    "FAST",
    "IMAGE_STORAGES",
    "MEMORY_FORMATS",
    "PIXEL_CODES",
    "DeviceImages",
    "epoch_batches",
    "memory_format",
    "synthetic_images",
]

IMAGE_STORAGES = ("float32", "uint8")
MEMORY_FORMATS = ("contiguous", "channels_last")

#: The fast-path settings, as ``FitConfig`` fields (``FitConfig(**FAST)``); ``compile`` is
#: left off (try it with :func:`samlab.bench.throughput` first: compilation costs the first epoch).
FAST: dict[str, Any] = {"image_storage": "uint8", "memory_format": "channels_last"}

#: dataset name -> (scale, per-channel mean, per-channel std): the float32 images of
#: :func:`samlab.data.load` are ``(q / scale − mean) / std`` for integer codes q in [0, 255].
PIXEL_CODES: dict[str, tuple[float, tuple[float, ...], tuple[float, ...]]] = {
    **{name: (255.0, *_NORMALISATION[name]) for name in _NORMALISATION},
    **{name: (255.0, *_NORMALISATION[spec["parent"]]) for name, spec in MINI_INDICES.items()},
    "digits": (16.0, (0.0,), (1.0,)),  # scikit-learn's 0..16 grey levels / 16
}


def memory_format(name: str) -> torch.memory_format:
    if name not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}, got memory_format={name!r}")
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


@dataclass
class DeviceImages:
    """Images held as uint8 codes, stored NHWC, decoded to normalised float32 per batch."""

    codes: torch.Tensor  #: (N, H, W, C) uint8
    scale: float
    mean: torch.Tensor  #: (C,) float32
    std: torch.Tensor  #: (C,) float32

    @classmethod
    def from_dataset(cls, data: Dataset, x: torch.Tensor | None = None) -> DeviceImages:
        """The training images of ``data`` (or ``x``) as codes, checked to decode exactly.

        Raises ``ValueError`` (naming ``image_storage``) for data that are not 8-bit images.
        """
        x = data.x_train if x is None else x
        name = data.name
        if x.ndim != 4:
            raise ValueError(f"image_storage='uint8' needs image data of shape (N, C, H, W), got {tuple(x.shape)}")
        if name not in PIXEL_CODES:
            raise ValueError(
                f"image_storage='uint8' needs a dataset of 8-bit images, one of {tuple(PIXEL_CODES)}; "
                f"got {name!r} (use image_storage='float32', or add its codes to samlab.fast.PIXEL_CODES)"
            )
        scale, mean, std = PIXEL_CODES[name]
        if len(mean) != x.shape[1]:
            raise ValueError(f"image_storage='uint8': {name} has {len(mean)} channels, the data {x.shape[1]}")
        mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device)
        std_t = torch.tensor(std, dtype=torch.float32, device=x.device)
        nhwc = x.permute(0, 2, 3, 1)
        codes = torch.round((nhwc * std_t + mean_t) * scale).clamp_(0, 255).to(torch.uint8).contiguous()
        images = cls(codes=codes, scale=scale, mean=mean_t, std=std_t)
        err = float((images.decode(codes) - nhwc).abs().max()) if len(codes) else 0.0
        if err > 1e-5:
            raise ValueError(
                f"image_storage='uint8': the images of {name!r} are not {scale:g}-level codes "
                f"(round trip error {err:.2g}); use image_storage='float32'"
            )
        return images

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """uint8 codes (..., C) -> float32, normalised as :func:`samlab.data.load` does."""
        t = codes.float().div_(self.scale)
        return (t - self.mean) / self.std

    def batch(self, idx: torch.Tensor, fmt: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """The normalised float32 images ``idx``, shape (B, C, H, W), in memory format ``fmt``."""
        x = self.decode(self.codes[idx]).permute(0, 3, 1, 2)  # NHWC buffer: channels_last already
        return x if fmt == torch.channels_last else x.contiguous()

    def __len__(self) -> int:
        return len(self.codes)


def epoch_batches(
    images: DeviceImages,
    order: torch.Tensor,
    steps: int,
    batch: int,
    augment: bool,
    generator: torch.Generator,
    fmt: torch.memory_format = torch.contiguous_format,
    pad: int = 4,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(idx, x)`` for every step of an epoch: indices ``order[s·B:(s+1)·B]`` and their images.

    With ``augment`` the crop/flip parameters of every step are drawn first, step by step
    in the order :func:`samlab.augment.random_crop_flip` draws them, and moved to the
    device in one copy.
    """
    device = images.codes.device
    if augment:
        draws = [crop_flip_params(batch, pad, generator) for _ in range(steps)]
        di, dj, flip = (torch.cat(parts).to(device) for parts in zip(*draws)) if draws else (None, None, None)
    for s in range(steps):
        idx = order[s * batch : (s + 1) * batch]
        x = images.batch(idx, fmt)
        if augment:
            sl = slice(s * batch, (s + 1) * batch)
            x = apply_crop_flip(x, di[sl], dj[sl], flip[sl], pad)
        yield idx, x if fmt == torch.channels_last else x.contiguous()


# --------------------------------------------------------------------------- measurement


def synthetic_images(n: int = 1024, n_test: int = 256, hw: int = 32, classes: int = 10, seed: int = 0) -> Dataset:
    """Random 8-bit RGB images normalised exactly as CIFAR-10 is, random labels: for timing.

    Named ``cifar10`` (so ``image_storage="uint8"`` recognises its pixel codes), with
    ``meta={"synthetic": True}``; nothing can be learnt from it.
    """
    import numpy as np

    from samlab import data as data_mod

    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8),
        "y_train": rng.integers(0, classes, n).astype(np.int64),
        "x_test": rng.integers(0, 256, (n_test, hw, hw, 3), dtype=np.uint8),
        "y_test": rng.integers(0, classes, n_test).astype(np.int64),
    }
    x_tr, y_tr, x_te, y_te, _ = data_mod._images(arrays, "cifar10")
    return data_mod._make("cifar10", x_tr, y_tr, x_te, y_te, classes, None, synthetic=True)

"""Label noise: corrupt a label vector with its own seed.

Taught in notebook 00 (label noise and memorisation) and notebook 07 (structured noise).

Every function returns the noisy labels *and* the is-noisy mask (``noisy != clean``) and
the realised flip rate, so that training curves can be split into clean and noisy
examples. The noise draw uses its own ``torch.Generator`` seeded by ``seed``, independent
of the training seed, so every method in a comparison sees the same corrupted labels.

Kinds (taught in notebooks 00 and 07):

* ``symmetric-flip``: with probability ``rate`` replace the label by a *different* class
  drawn uniformly; the realised flip rate is ``rate`` in expectation.
* ``symmetric-uniform``: with probability ``rate`` redraw the label uniformly over all K
  classes (it may stay correct); the realised flip rate is about ``rate * (K-1)/K``.
* ``asymmetric``: class-conditional. For CIFAR-10 the standard mapping truck→automobile,
  bird→airplane, deer→horse, cat↔dog; for other label sets the cyclic ``i → i+1 mod K``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NOISE_KINDS", "CIFAR10_ASYMMETRIC", "NoisyLabels", "asymmetric_map", "corrupt", "transition_matrix"]

NOISE_KINDS = ("symmetric-flip", "symmetric-uniform", "asymmetric")

#: The standard CIFAR-10 class-conditional mapping (source class -> target class).
#: Classes: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse,
#: 8 ship, 9 truck.
CIFAR10_ASYMMETRIC: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}


@dataclass(frozen=True)
class NoisyLabels:
    """The result of :func:`corrupt`."""

    labels: torch.Tensor  #: observed (possibly corrupted) labels, int64
    is_noisy: torch.Tensor  #: bool mask, ``labels != clean``
    realised_rate: float  #: fraction of labels that differ from the clean ones
    kind: str
    rate: float
    seed: int


def _check(clean: torch.Tensor, kind: str, rate: float, num_classes: int) -> None:
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got kind={kind!r}")
    if not (0.0 <= float(rate) < 1.0):
        raise ValueError(f"noise rate must be in [0, 1), got rate={rate!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got num_classes={num_classes}")
    if clean.ndim != 1 or clean.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"labels must be a 1-D integer tensor, got shape {tuple(clean.shape)} and dtype {clean.dtype}"
        )
    if clean.numel() and (int(clean.min()) < 0 or int(clean.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] for num_classes={num_classes}")


def asymmetric_map(num_classes: int, dataset: str | None = None) -> dict[int, int]:
    """The class mapping used by ``asymmetric`` noise for ``dataset``."""
    if dataset is not None and dataset.startswith("cifar10") and num_classes == 10:
        return dict(CIFAR10_ASYMMETRIC)
    return {i: (i + 1) % num_classes for i in range(num_classes)}


def corrupt(
    labels: torch.Tensor,
    kind: str,
    rate: float,
    num_classes: int,
    seed: int = 0,
    dataset: str | None = None,
) -> NoisyLabels:
    """Corrupt ``labels`` with ``kind`` noise at ``rate``, drawing with its own ``seed``.

    ``dataset`` only matters for ``asymmetric`` noise (``"cifar10"`` and its mini subset
    use the standard CIFAR-10 mapping). Works on any device; the draw happens on the CPU
    so that it does not depend on the device.
    """
    _check(labels, kind, rate, num_classes)
    clean = labels.detach().to("cpu", torch.int64)
    gen = torch.Generator().manual_seed(int(seed))
    n = clean.numel()
    hit = torch.rand(n, generator=gen) < rate
    noisy = clean.clone()
    if kind == "symmetric-flip":
        # a uniformly drawn *other* class: add an offset in 1..K-1 modulo K
        offset = torch.randint(1, num_classes, (n,), generator=gen)
        noisy[hit] = (clean[hit] + offset[hit]) % num_classes
    elif kind == "symmetric-uniform":
        draw = torch.randint(0, num_classes, (n,), generator=gen)
        noisy[hit] = draw[hit]
    else:
        mapping = asymmetric_map(num_classes, dataset)
        target = torch.arange(num_classes)
        for src, dst in mapping.items():
            target[src] = dst
        noisy[hit] = target[clean[hit]]
    is_noisy = noisy != clean
    realised = float(is_noisy.float().mean()) if n else 0.0
    return NoisyLabels(
        labels=noisy.to(labels.device),
        is_noisy=is_noisy.to(labels.device),
        realised_rate=realised,
        kind=kind,
        rate=float(rate),
        seed=int(seed),
    )


def transition_matrix(kind: str, rate: float, num_classes: int, dataset: str | None = None) -> torch.Tensor:
    """The expected noise transition matrix T[i, j] = P(observed j | clean i).

    Rows sum to one. Used to check a realised corruption against its expectation and,
    in notebook 07, to draw the noise as a confusion matrix.
    """
    _check(torch.zeros(1, dtype=torch.int64), kind, rate, num_classes)
    k = num_classes
    eye = torch.eye(k, dtype=torch.float64)
    if kind == "symmetric-flip":
        return (1 - rate) * eye + rate * (1 - eye) / (k - 1)
    if kind == "symmetric-uniform":
        return (1 - rate) * eye + rate * torch.full((k, k), 1.0 / k, dtype=torch.float64)
    t = eye.clone()
    for src, dst in asymmetric_map(k, dataset).items():
        t[src, src] = 1 - rate
        t[src, dst] += rate
    return t

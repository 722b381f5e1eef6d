"""Named datasets as tensors, with optional label noise.

Taught in notebook 00; every notebook loads its data through :func:`load`.

Names: ``gaussian`` (synthetic mixture), ``digits`` (scikit-learn's bundled 8×8 digits,
always available offline), ``mnist``, ``cifar10``, ``cifar100`` (torchvision, downloaded
to the data folder on first use) and the two exact subsets ``cifar10-mini`` and
``mnist-mini`` (derived from the full datasets, verified by the SHA-256 of their arrays,
cached as ``<data>/<name>.npz``; a user may place such a file there by hand, and it is
accepted only when its hashes match).

Validation split: :func:`load` holds out ``val_fraction`` (default 0.1) of the training set
as a validation set, *after* the label noise is drawn, stratified by the *observed* label
(:func:`split_validation`). Its labels carry the same noise as the training labels: a
noisy validation set is all a practitioner has, and it is what samlab chooses epochs and
hyperparameters on. ``Dataset.y_val_clean`` (the true labels) is a teaching quantity only.
``val_fraction=0`` gives no split: exactly the dataset of earlier samlab versions (the
linear notebooks 01 and 02 use it, so that their closed forms see every example).

The data folder is ``$SAMLAB_DATA`` if set, else ``data/`` at the root of a source
checkout, else ``~/.cache/samlab``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samlab.noise import NoisyLabels, corrupt

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "MINI_HASHES",
    "MINI_INDICES",
    "Dataset",
    "DatasetUnavailableError",
    "data_root",
    "load",
    "load_mini_arrays",
    "split_validation",
    "with_noise",
]

#: CIFAR-10's class names, in label order (0 airplane … 9 truck); also the labels of
#: ``cifar10-mini``. Notebook 07 uses them to name the rows of confusion matrices.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

DATASETS = ("gaussian", "digits", "mnist", "cifar10", "cifar100", "cifar10-mini", "mnist-mini")

#: Per-channel (mean, std) used to normalise images.
_NORMALISATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

#: Which indices of the full torchvision datasets make up each mini subset.
MINI_INDICES: dict[str, dict[str, Any]] = {
    "cifar10-mini": {
        "parent": "cifar10",
        "train": np.concatenate([np.arange(b * 10000, b * 10000 + 1000) for b in range(5)]),
        "test": np.arange(1000),
    },
    "mnist-mini": {"parent": "mnist", "train": np.arange(10000), "test": np.arange(10000)},
}

#: SHA-256 of each array's raw bytes (C order), from the subsets' definition.
MINI_HASHES: dict[str, dict[str, str]] = {
    "cifar10-mini": {
        "x_train": "8ed800dfd8f17bb9d8922112293045c000f29a0128707d972c74f3ca5ce949d2",
        "y_train": "c08b5c3c3c5c69296f1b8c82e584881aa613b671b785da110d200d7bccc3061b",
        "x_test": "da362006b99671213d1a5d856cab2bedf64d40bad4501630ee60f4ceb2d3ec7f",
        "y_test": "6327b0e49549c8cf6ad65317a0fb463ec49ade30d02f63daec6b149052db4922",
    },
    "mnist-mini": {
        "x_train": "2f7182bf021ffc5c1f62db987487f14d899b5c639f421a80f3095affc09a7db2",
        "y_train": "2c548d1fe3a8c3cf623bf2f2e747bb54a83ec786e25aaa86212475a2df21efea",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "2fd8de6bdb8d11780b4b96dc57847bcfe6953f7c32aa48bfcd8237c3b7847243",
    },
}


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be found on disk nor downloaded."""


@dataclass(frozen=True)
class Split:
    """How a validation set was held out of the (noisy) training set: see :func:`split_validation`."""

    fraction: float
    seed: int
    train_index: torch.Tensor  #: positions in the full training set of the examples kept for training (sorted)
    val_index: torch.Tensor  #: positions of the held-out validation examples (sorted)


@dataclass(frozen=True)
class Dataset:
    """A dataset held as tensors. ``y_train`` holds the *observed* labels.

    Without noise, ``y_train == y_train_clean`` and ``is_noisy`` is all false. With a
    validation split (``has_validation``), ``x_val``/``y_val`` (observed, noisy labels),
    ``y_val_clean`` (true labels: a teaching quantity, unavailable in practice) and
    ``val_is_noisy`` hold the held-out part, and ``split`` records how it was drawn;
    ``noise`` stays the record of the whole draw (training and validation together).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    y_train_clean: torch.Tensor
    is_noisy: torch.Tensor
    noise: NoisyLabels | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None  #: observed (noisy) validation labels
    y_val_clean: torch.Tensor | None = None  #: true validation labels (teaching only)
    val_is_noisy: torch.Tensor | None = None
    split: Split | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def has_validation(self) -> bool:
        return self.y_val is not None and len(self.y_val) > 0

    @property
    def train_noise_rate(self) -> float:
        """Fraction of the training examples (validation excluded) whose label is wrong."""
        return float(self.is_noisy.float().mean()) if len(self.is_noisy) else 0.0

    @property
    def val_noise_rate(self) -> float | None:
        """Fraction of the validation examples whose label is wrong (``None`` without a split)."""
        return float(self.val_is_noisy.float().mean()) if self.has_validation else None

    def to(self, device: torch.device | str) -> Dataset:
        moved: dict[str, Any] = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        if self.noise is not None:  # keep the noise record's tensors with the data
            moved["noise"] = dataclasses.replace(
                self.noise, labels=self.noise.labels.to(device), is_noisy=self.noise.is_noisy.to(device)
            )
        return dataclasses.replace(self, **moved)

    def describe(self) -> str:
        noise = (
            "clean labels"
            if self.noise is None
            else f"{self.noise.kind} noise, rate {self.noise.rate:g} "
            f"(realised {self.noise.realised_rate:.3f}, noise seed {self.noise.seed})"
        )
        val = (
            f" + {len(self.y_val)} validation (held out of the noisy training set, "
            f"{self.split.fraction:g} stratified by observed label, val seed {self.split.seed})"
            if self.has_validation
            else ""
        )
        return (
            f"{self.name}: {len(self.y_train)} train{val} / {len(self.y_test)} test, "
            f"{self.num_classes} classes, input {self.input_shape}, {noise}"
        )


def data_root() -> Path:
    """The folder where datasets are downloaded and mini subsets cached."""
    env = os.environ.get("SAMLAB_DATA")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout / "data"
    return Path.home() / ".cache" / "samlab"


def _make(name: str, x_tr, y_tr, x_te, y_te, k: int, device, **meta) -> Dataset:
    y_tr = torch.as_tensor(y_tr, dtype=torch.int64)
    ds = Dataset(
        name=name,
        x_train=torch.as_tensor(x_tr, dtype=torch.float32),
        y_train=y_tr,
        x_test=torch.as_tensor(x_te, dtype=torch.float32),
        y_test=torch.as_tensor(y_te, dtype=torch.int64),
        num_classes=k,
        y_train_clean=y_tr.clone(),
        is_noisy=torch.zeros_like(y_tr, dtype=torch.bool),
        meta=meta,
    )
    return ds.to(device) if device is not None else ds


def _gaussian(
    n: int = 1000,
    d: int = 20,
    classes: int = 2,
    separation: float = 3.0,
    sigma: float = 1.0,
    n_test: int = 2000,
    seed: int = 0,
) -> tuple:
    """K Gaussian blobs ``N(mu_k, sigma^2 I)`` with ``||mu_j - mu_k|| = separation``.

    For two classes the means are ``±(separation/2) e_1``; for K classes they are
    ``(separation/sqrt 2) e_k`` (a regular simplex), so every pair is ``separation`` apart.
    """
    for pname, value in (("n", n), ("d", d), ("n_test", n_test)):
        if value < 1:
            raise ValueError(f"{pname} must be >= 1, got {pname}={value}")
    if classes < 2 or (classes > 2 and classes > d):
        raise ValueError(f"classes must be in [2, d={d}], got classes={classes}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got sigma={sigma}")
    gen = torch.Generator().manual_seed(seed)
    if classes == 2:
        means = torch.zeros(2, d)
        means[0, 0], means[1, 0] = -separation / 2, separation / 2
    else:
        means = torch.eye(classes, d) * separation / 2**0.5

    def draw(m: int):
        y = torch.randint(0, classes, (m,), generator=gen)
        return means[y] + sigma * torch.randn(m, d, generator=gen), y

    x_tr, y_tr = draw(n)
    x_te, y_te = draw(n_test)
    return x_tr, y_tr, x_te, y_te, classes


def _digits(classes: tuple[int, ...] | None = None, test_fraction: float = 0.25, images: bool = False):
    """scikit-learn's digits (1797 8×8 images) scaled to [0, 1], split with a fixed seed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    if classes is not None:
        classes = tuple(classes)
        if len(classes) < 2 or len(set(classes)) != len(classes) or not set(classes) <= set(range(10)):
            raise ValueError(f"classes must be >= 2 distinct digits in 0..9, got classes={classes}")
        keep = torch.isin(y, torch.tensor(classes))
        x, y = x[keep], y[keep]
        remap = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([remap[int(v)] for v in y], dtype=torch.int64)
    if images:
        x = x.reshape(-1, 1, 8, 8)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te], len(classes) if classes else 10


def _download_hint(name: str, root: Path) -> str:
    return (
        f"Could not download {name} into {root}. Is this machine offline? Either connect to "
        f"the internet and run again, or copy the torchvision files of {name} into {root} "
        f"yourself (the layout torchvision's datasets.{_TORCHVISION[name]}(root={str(root)!r}) "
        f"expects)."
    )


_TORCHVISION = {"mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def _torchvision_arrays(name: str, root: Path, download: bool) -> dict[str, np.ndarray]:
    """The raw uint8 images (CIFAR: NHWC; MNIST: NHW) and int64 labels of a torchvision set."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION[name])
    out: dict[str, np.ndarray] = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = cls(str(root), train=train, download=download)
        except DatasetUnavailableError:
            raise
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ...
            if not download:
                raise DatasetUnavailableError(
                    f"{name} is not in {root} and download=False. Call load({name!r}) with "
                    f"download=True on a machine with internet access."
                ) from exc
            raise DatasetUnavailableError(_download_hint(name, root)) from exc
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        targets = ds.targets.numpy() if isinstance(ds.targets, torch.Tensor) else np.asarray(ds.targets)
        out[f"x_{split}"] = np.ascontiguousarray(data, dtype=np.uint8)
        out[f"y_{split}"] = np.ascontiguousarray(targets, dtype=np.int64)
    return out


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _verify_mini(name: str, arrays: dict[str, np.ndarray], where: str, advice: str) -> None:
    for key, expected in MINI_HASHES[name].items():
        if key not in arrays:
            raise ValueError(f"{where} has no array {key!r}; a {name} file needs {sorted(MINI_HASHES[name])}. {advice}")
        got = _sha256(arrays[key])
        if got != expected:
            raise ValueError(
                f"{where}: array {key!r} does not match the definition of {name} "
                f"(SHA-256 {got[:12]}…, expected {expected[:12]}…). {advice}"
            )


def load_mini_arrays(name: str, root: Path | None = None, download: bool = True) -> dict[str, np.ndarray]:
    """The verified raw arrays of a mini subset, from the cache or derived from the full set."""
    if name not in MINI_INDICES:
        raise ValueError(f"name must be one of {tuple(MINI_INDICES)}, got name={name!r}")
    root = Path(root) if root is not None else data_root()
    cache = root / f"{name}.npz"
    rebuild = f"Delete {cache} and load {name!r} again to rebuild it from the full dataset."
    if cache.exists():
        try:
            with np.load(cache) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as exc:  # truncated or not an .npz at all: zipfile, OSError, pickle refusal, ...
            raise ValueError(f"{cache} is not a readable .npz file ({exc}). {rebuild}") from exc
        _verify_mini(name, arrays, str(cache), rebuild)
        return arrays
    spec = MINI_INDICES[name]
    try:
        full = _torchvision_arrays(spec["parent"], root, download)
    except DatasetUnavailableError as exc:
        raise DatasetUnavailableError(
            f"{exc} Alternatively, place a verified copy of {name} at {cache} "
            f"(arrays {sorted(MINI_HASHES[name])}, checked against their SHA-256)."
        ) from exc.__cause__
    arrays = {
        "x_train": full["x_train"][spec["train"]],
        "y_train": full["y_train"][spec["train"]],
        "x_test": full["x_test"][spec["test"]],
        "y_test": full["y_test"][spec["test"]],
    }
    _verify_mini(
        name,
        arrays,
        f"the subset derived from {spec['parent']} in {root}",
        f"The {spec['parent']} files in {root} differ from the official release; delete them and "
        f"load {name!r} again to download them afresh. No cache was written.",
    )
    root.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
    return arrays


def _images(arrays: dict[str, np.ndarray], parent: str) -> tuple:
    """uint8 NHWC / NHW arrays -> normalised float32 NCHW tensors."""
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in _NORMALISATION[parent])

    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
        t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
        return (t - mean) / std

    k = 100 if parent == "cifar100" else 10
    return prep(arrays["x_train"]), arrays["y_train"], prep(arrays["x_test"]), arrays["y_test"], k


def with_noise(ds: Dataset, kind: str, rate: float, seed: int = 0) -> Dataset:
    """A copy of ``ds`` whose training labels carry ``kind`` noise at ``rate`` (own ``seed``)."""
    if ds.split is not None:
        raise ValueError("draw the noise before holding out the validation split (load does): ds already has a split")
    noisy = corrupt(ds.y_train_clean, kind, rate, ds.num_classes, seed=seed, dataset=ds.name)
    return dataclasses.replace(ds, y_train=noisy.labels, is_noisy=noisy.is_noisy, noise=noisy)


def _stratified_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of a validation set of round(fraction · n) examples, stratified by ``labels``.

    Each class c with n_c examples gets floor(fraction · n_c) of them, and the few left to
    reach the total go one each to the classes with the largest fractional parts (ties in
    a random order): every class's count is within 1 of its proportional target.
    """
    classes, counts = np.unique(labels, return_counts=True)
    total = int(math.floor(fraction * len(labels) + 0.5))
    target = fraction * counts
    take = np.floor(target).astype(np.int64)
    left = total - int(take.sum())
    order = np.lexsort((rng.permutation(len(classes)), -(target - take)))
    take[order[:left]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def split_validation(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """Hold out ``fraction`` of ``ds``'s training set as a validation set, stratified by observed label.

    The split is drawn with NumPy's PCG64 generator seeded by ``seed``
    (``numpy.random.default_rng(seed)``), a different generator from the noise draw's
    (torch's Mersenne Twister), so equal seeds do not tie the two draws together. Per class
    of *observed* label, the number held out is within 1 of ``fraction`` times the class
    size, and the total is ``round(fraction · n)``. The held-out labels keep their noise;
    training and validation examples keep their original order. ``fraction=0`` returns
    ``ds`` unchanged (no split).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 0.5:
        raise ValueError(f"val_fraction must be a number in [0, 0.5] (0: no validation split), got val_fraction={fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"val_seed must be an integer >= 0 (or None: the noise seed), got val_seed={seed!r}")
    if ds.split is not None:
        raise ValueError(f"{ds.name} already has a validation split")
    if fraction == 0:
        return ds
    n = len(ds.y_train)
    labels = ds.y_train.detach().cpu().numpy()
    val = _stratified_holdout(labels, float(fraction), np.random.default_rng(int(seed)))
    if len(val) == 0:
        raise ValueError(
            f"val_fraction={fraction} holds out no example of the {n} training examples of {ds.name}; "
            f"pass val_fraction=0 for no split, or a larger fraction"
        )
    keep = np.ones(n, dtype=bool)
    keep[val] = False
    train_idx, val_idx = torch.from_numpy(np.flatnonzero(keep)), torch.from_numpy(val)
    dev = ds.y_train.device
    ti, vi = train_idx.to(dev), val_idx.to(dev)
    return dataclasses.replace(
        ds,
        x_train=ds.x_train[ti],
        y_train=ds.y_train[ti],
        y_train_clean=ds.y_train_clean[ti],
        is_noisy=ds.is_noisy[ti],
        x_val=ds.x_train[vi],
        y_val=ds.y_train[vi],
        y_val_clean=ds.y_train_clean[vi],
        val_is_noisy=ds.is_noisy[vi],
        split=Split(fraction=float(fraction), seed=int(seed), train_index=train_idx, val_index=val_idx),
    )


def load(
    name: str,
    *,
    noise: str | None = None,
    rate: float = 0.0,
    noise_seed: int = 0,
    val_fraction: float = 0.1,
    val_seed: int | None = None,
    device: torch.device | str | None = None,
    root: str | Path | None = None,
    download: bool = True,
    **options: Any,
) -> Dataset:
    """Load dataset ``name`` as tensors on ``device``, optionally with label noise.

    The noise is drawn first (seed ``noise_seed``) on the whole training set; then
    ``val_fraction`` of it (in [0, 0.5]; default 0.1, 0 for none) is held out as a
    validation set, stratified by observed label, with seed ``val_seed`` (default:
    ``noise_seed``, drawn from a different generator; see :func:`split_validation`).

    ``options`` go to the synthetic and scikit-learn loaders: ``gaussian(n, d, classes,
    separation, sigma, n_test, seed)``, ``digits(classes, test_fraction, images)``.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got name={name!r}")
    root_path = Path(root) if root is not None else data_root()
    if name == "gaussian":
        ds = _make(name, *_gaussian(**options), None, **options)
    elif name == "digits":
        ds = _make(name, *_digits(**options), None, **options)
    else:
        if options:
            raise ValueError(f"{name} takes no options, got {sorted(options)}")
        if name in MINI_INDICES:
            arrays = load_mini_arrays(name, root_path, download)
            parent = MINI_INDICES[name]["parent"]
        else:
            arrays = _torchvision_arrays(name, root_path, download)
            parent = name
        ds = _make(name, *_images(arrays, parent), None)
    if noise is not None:
        ds = with_noise(ds, noise, rate, noise_seed)
    elif rate:
        raise ValueError(f"rate={rate} given without a noise kind; pass noise= one of the kinds")
    ds = split_validation(ds, val_fraction, noise_seed if val_seed is None else val_seed)
    return ds.to(device) if device is not None else ds

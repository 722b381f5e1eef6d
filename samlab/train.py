"""The one training loop: ``fit(model, method, data, config) -> History``.

Taught in notebook 00; every experiment of the course trains through it, on CPU or GPU
unchanged.

Per epoch it records, on the whole training set in eval mode: the accuracy on clean
examples (``clean_fit``), the accuracy on noisy examples against their *observed* labels
(``noisy_fit``, memorisation) and against their *true* labels (``noisy_true``), the mean
losses of both groups, the test accuracy and loss, the test accuracy on the images of the
classes that lose training labels to noise (``test_source_acc``: every class under symmetric
noise, the mapping's sources under asymmetric noise, NaN without noise), the last-layer weight norm
(``head_norm``) and the mean penultimate feature norm (``feature_norm``), the learning
rate and the wall time. When the dataset has a validation split (:func:`samlab.data.load`'s
``val_fraction``), also the validation accuracy against the *observed*, noisy labels
(``val_acc``: what a practitioner can measure), against the true labels
(``val_acc_clean``: a teaching quantity, unavailable in practice) and the validation
loss against the observed labels (``val_loss``). Epoch 0 is the initial model. Methods that report numbers in
``StepInfo.extras`` (F-SAM's ``cos_g_ema``, SANER's ``frac_shrunk``, ...) get their mean
over the epoch's steps recorded as ``step_<name>`` (NaN values are left out of the mean;
a key that was NaN at every step records NaN); epoch 0 has none.

``fit(..., on_epoch=fn)`` calls ``fn(epoch, model)`` after epoch 0's evaluation (fresh
runs only) and after each trained epoch's evaluation, before that epoch's checkpoint: a
probe that measures the model (notebook 01's clean/noisy gradient ratio,
:mod:`samlab.probes`; notebook 06's gradient groups, :mod:`samlab.analysis`). It must leave
the model's weights, buffers and mode as it found them. If it returns a mapping of
numbers, they are merged into that epoch's record, so they are part of the history and
of the checkpoint; epochs restored from a checkpoint keep their values and are not probed
again.

Reproducibility and resume: each epoch's shuffling, augmentation and dropout are seeded
from ``(seed, epoch)``, so an epoch depends only on the weights it starts from. With
``checkpoint=path`` the loop saves model, optimiser, scheduler, method state and history
atomically after every epoch; calling ``fit`` again with the same arguments continues
from the last saved epoch and ends with the same history as an uninterrupted run.
A checkpoint written under a different configuration is refused with an error.

Speed: each epoch's record has ``images_per_second`` (training images per second of the
epoch's training loop, evaluation excluded). The GPU fast path (notebook 04,
:mod:`samlab.fast`) is opt-in through three fields, all off by default:
``image_storage="uint8"`` (training images on the device as 8-bit codes, normalised and
augmented per batch on the device), ``memory_format="channels_last"`` and
``compile=True``. They change how the same computation runs, not what it computes, so
they are not part of a checkpoint's configuration: a run may resume under other ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samlab import fast
from samlab.augment import random_crop_flip
from samlab.data import Dataset
from samlab.losses import per_example_loss, predictions
from samlab.methods.base import Method

__all__ = ["LAST", "SCHEDULES", "SMOOTHING", "FitConfig", "History", "epoch_batches", "evaluate", "fit", "smoothed"]

SCHEDULES = ("constant", "cosine", "step")


@dataclass
class FitConfig:
    """How to train. ``batch_size=None`` means full-batch gradient descent."""

    epochs: int = 10
    batch_size: int | None = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"  #: "constant", "cosine", or "step" (×0.1 at 50% and 75%)
    seed: int = 0
    augment: bool = False
    #: examples per forward pass of the per-epoch evaluation; None: :data:`EVAL_BATCH` of the
    #: device type (the results do not depend on it: the model is in eval mode)
    eval_batch_size: int | None = None
    checkpoint: str | None = None
    progress: bool = True
    #: fast path (see :mod:`samlab.fast`): "float32" (index the dataset's float tensor) or
    #: "uint8" (training images on the device as 8-bit codes, decoded per batch)
    image_storage: str = "float32"
    memory_format: str = "contiguous"  #: "contiguous" or "channels_last" (model and batches)
    compile: bool = False  #: ``model.compile()`` before training

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got epochs={self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None (full batch), got batch_size={self.batch_size}")
        if self.eval_batch_size is not None and (isinstance(self.eval_batch_size, bool) or self.eval_batch_size < 1):
            raise ValueError(f"eval_batch_size must be >= 1 or None (the device's default), got eval_batch_size={self.eval_batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got lr={self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got momentum={self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got weight_decay={self.weight_decay}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got schedule={self.schedule!r}")
        if self.image_storage not in fast.IMAGE_STORAGES:
            raise ValueError(
                f"image_storage must be one of {fast.IMAGE_STORAGES}, got image_storage={self.image_storage!r}"
            )
        if self.memory_format not in fast.MEMORY_FORMATS:
            raise ValueError(
                f"memory_format must be one of {fast.MEMORY_FORMATS}, got memory_format={self.memory_format!r}"
            )
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got compile={self.compile!r}")

    def lr_factor(self, epoch: int) -> float:
        if self.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * epoch / max(1, self.epochs)))
        if self.schedule == "step":
            return 0.1 ** ((epoch >= 0.5 * self.epochs) + (epoch >= 0.75 * self.epochs))
        return 1.0


#: evaluation batch per device type when FitConfig.eval_batch_size is None. On the CPU small
#: batches keep each layer's activations in cache (``python -m samlab.bench --eval`` times it:
#: the small CNN's evaluation of cifar10-mini's 5,500 images at batch 128 against 2048);
#: on a GPU large ones fill the device.
EVAL_BATCH: dict[str, int] = {"cpu": 128, "cuda": 2048}


def eval_batch(config_value: int | None, device: torch.device) -> int:
    """The evaluation batch size: ``config_value``, or :data:`EVAL_BATCH` of ``device``'s type (2048 if unlisted)."""
    return config_value if config_value is not None else EVAL_BATCH.get(torch.device(device).type, 2048)


#: how many epochs the centred moving average of the validation accuracy spans (see History.val_epoch)
SMOOTHING = 3
#: how many final epochs History.last5_test_acc averages over
LAST = 5


def smoothed(values: list[float], width: int = SMOOTHING) -> list[float]:
    """Centred moving average over ``width`` (odd) consecutive values, truncated at the ends.

    Entry i is the mean of ``values[i - h : i + h + 1]`` (h = width // 2) clipped to the
    list: with width 3, the first entry averages values 0 and 1, the last the final two.
    """
    if width < 1 or width % 2 == 0:
        raise ValueError(f"width must be an odd integer >= 1, got width={width}")
    h = width // 2
    out = []
    for i in range(len(values)):
        window = values[max(0, i - h) : i + h + 1]
        out.append(sum(window) / len(window))
    return out


@dataclass
class History:
    """Per-epoch records (a list of dicts) plus the run's description.

    What a run reports (:meth:`summary`):

    * ``val_epoch``: the epoch with the best *smoothed* noisy-validation accuracy — the
      centred moving average of ``val_acc`` over 3 epochs, truncated at the ends
      (:func:`smoothed`), over every recorded epoch including epoch 0; the earliest such
      epoch on a tie. ``test_at_val``: the raw test accuracy at that epoch — **the reported
      accuracy of a run** (early stopping on a held-out noisy validation set).
      ``val_acc``: the raw validation accuracy at that epoch (what hyperparameters are
      chosen on). ``None`` for all three without a validation split.
    * ``oracle_test_acc`` and ``oracle_epoch``: the test-set maximum over epochs and its
      epoch — an *oracle* (it chooses the epoch on the test set); report it only beside
      ``test_at_val``, labelled. (Files written before 2026-11-30 may also hold them as
      ``best_test_acc``/``best_epoch``, their former names; nothing reads those.)
    * ``last5_test_acc`` and ``last5_noisy_fit``: means over the last 5 trained epochs (all
      of them if fewer) of the test accuracy and of the noisy fit: "final" numbers that
      do not depend on one epoch of an oscillating curve. ``final_test_acc`` and the
      other ``final_*`` keys are the last epoch's values, as before.
    """

    records: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def column(self, key: str) -> list[float]:
        return [r[key] for r in self.records]

    @property
    def oracle_epoch(self) -> int:
        """The epoch of the test-set maximum: an oracle (it chooses the epoch by looking at the test set)."""
        acc = self.column("test_acc")
        return int(self.records[max(range(len(acc)), key=acc.__getitem__)]["epoch"])

    @property
    def oracle_test_acc(self) -> float:
        """The test-set maximum over epochs: an oracle; report it only beside ``test_at_val``, labelled."""
        return max(self.column("test_acc"))

    @property
    def final_test_acc(self) -> float:
        return self.records[-1]["test_acc"]

    @property
    def has_validation(self) -> bool:
        return bool(self.records) and all(r.get("val_acc") is not None for r in self.records)

    @property
    def val_epoch(self) -> int | None:
        """The epoch with the best smoothed noisy-validation accuracy (``None`` without validation)."""
        return self.epoch_chosen_on("val_acc") if self.has_validation else None

    def epoch_chosen_on(self, key: str) -> int:
        """The epoch with the best smoothed ``key`` (the first of a tie): ``"val_acc"`` is the reported
        epoch (:attr:`val_epoch`); ``"val_acc_clean"``, the epoch a validation set with *true* labels
        would choose, shows in a notebook what the noisy labels cost the choice (unavailable in practice)."""
        if not self.records or any(r.get(key) is None for r in self.records):
            raise ValueError(f"key must be recorded at every epoch of this history, got key={key!r}")
        s = smoothed(self.column(key))
        return int(self.records[max(range(len(s)), key=s.__getitem__)]["epoch"])

    def at_epoch(self, epoch: int) -> dict[str, float]:
        return next(r for r in self.records if r["epoch"] == epoch)

    def last_mean(self, key: str, last: int = LAST) -> float:
        """Mean of ``key`` over the last ``last`` trained epochs (epoch 0 excluded; all of them if fewer)."""
        trained = [r[key] for r in self.records if r["epoch"] > 0] or [self.records[-1][key]]
        window = trained[-last:]
        return sum(window) / len(window)

    def summary(self) -> dict[str, float]:
        val_epoch = self.val_epoch
        at_val = self.at_epoch(val_epoch) if val_epoch is not None else None
        return {
            "val_epoch": val_epoch,
            "test_at_val": at_val["test_acc"] if at_val else None,
            "val_acc": at_val["val_acc"] if at_val else None,
            "oracle_test_acc": self.oracle_test_acc,
            "oracle_epoch": self.oracle_epoch,
            "last5_test_acc": self.last_mean("test_acc"),
            "last5_noisy_fit": self.last_mean("noisy_fit"),
            "final_test_acc": self.final_test_acc,
            "final_clean_fit": self.records[-1]["clean_fit"],
            "final_noisy_fit": self.records[-1]["noisy_fit"],
            "seconds_per_epoch": self.seconds_per_epoch,
            "images_per_second": self.images_per_second,
        }

    @property
    def seconds_per_epoch(self) -> float:
        train = [r["seconds"] for r in self.records if r["epoch"] > 0]
        return sum(train) / len(train) if train else float("nan")

    @property
    def images_per_second(self) -> float:
        """Median over the trained epochs (robust to a first epoch that compiles or warms up)."""
        ips = [r.get("images_per_second") for r in self.records if r["epoch"] > 0]
        ips = [v for v in ips if v is not None and not math.isnan(v)]
        return float(statistics.median(ips)) if ips else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(records=list(d["records"]), info=dict(d.get("info", {})))


def _group_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(values[mask].float().mean()) if bool(mask.any()) else float("nan")


@torch.no_grad()
def evaluate(
    model: nn.Module, data: Dataset, batch_size: int = 2048, memory_format: str = "contiguous"
) -> dict[str, float]:
    """Accuracies, losses and norms of ``model`` on ``data`` (eval mode, no gradients).

    ``memory_format="channels_last"`` feeds the batches in that layout (for a model in it).
    """
    was_training = model.training
    model.eval()
    fmt = fast.memory_format(memory_format)

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, feat_norms = [], []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            if fmt == torch.channels_last and xb.ndim == 4:
                xb = xb.contiguous(memory_format=fmt)
            feats = model.features(xb)
            out = model.head(feats)
            logits.append(out.squeeze(-1) if out.shape[-1] == 1 else out)
            feat_norms.append(torch.linalg.vector_norm(feats.float(), dim=1))
        return torch.cat(logits).float(), torch.cat(feat_norms)

    train_logits, feat_norms = run(data.x_train)
    test_logits, _ = run(data.x_test)
    val: dict[str, float] = {}
    if data.has_validation:
        val_logits, _ = run(data.x_val)
        val_pred = predictions(val_logits)
        val = {
            "val_acc": float((val_pred == data.y_val).float().mean()),
            "val_acc_clean": float((val_pred == data.y_val_clean).float().mean()),
            "val_loss": float(per_example_loss(val_logits, data.y_val).mean()),
        }
    model.train(was_training)
    pred = predictions(train_logits)
    loss = per_example_loss(train_logits, data.y_train)
    clean, noisy = ~data.is_noisy, data.is_noisy
    test_right = predictions(test_logits) == data.y_test
    # the classes that lose training labels to noise (all of them under symmetric noise; the
    # mapping's sources under asymmetric noise): test accuracy on their images
    sources = torch.isin(data.y_test, torch.unique(data.y_train_clean[noisy]))
    return {
        **val,
        "train_acc": float((pred == data.y_train).float().mean()),
        "train_eval_loss": float(loss.mean()),
        "clean_fit": _group_mean(pred == data.y_train, clean),
        "noisy_fit": _group_mean(pred == data.y_train, noisy),
        "noisy_true": _group_mean(pred == data.y_train_clean, noisy),
        "clean_loss": _group_mean(loss, clean),
        "noisy_loss": _group_mean(loss, noisy),
        "test_acc": float(test_right.float().mean()),
        "test_source_acc": _group_mean(test_right, sources),
        "test_loss": float(per_example_loss(test_logits, data.y_test).mean()),
        "head_norm": float(torch.linalg.vector_norm(model.head.weight.detach().float())),
        "feature_norm": float(feat_norms.mean()),
    }


def _without_engine(cfg: dict[str, Any]) -> dict[str, Any]:
    """A method config without its per-example ``engine`` (at any depth): the engine changes how
    the gradient is computed, not what it is (tested to 1e-10 in float64), like ``compile``."""
    return {k: _without_engine(v) if isinstance(v, dict) else v for k, v in cfg.items() if k != "engine"}


def _fingerprint(model: nn.Module, method: Method, data: Dataset, config: FitConfig) -> dict[str, Any]:
    cfg = dataclasses.asdict(config)
    # how the computation runs, not what it computes: a run may resume under other values
    for volatile in ("checkpoint", "progress", "eval_batch_size", "image_storage", "memory_format", "compile"):
        cfg.pop(volatile)
    return json.loads(
        json.dumps(
            {
                "model": type(model).__name__,
                "parameters": sum(p.numel() for p in model.parameters()),
                "method": _without_engine(method.config()),
                "data": data.describe(),
                "config": cfg,
            },
            default=str,
        )
    )


def stale_checkpoint(model: nn.Module, method: Method, data: Dataset, config: FitConfig) -> bool:
    """Whether ``config.checkpoint`` exists but was written by a run of another configuration
    (another method setting, data, model or training): :func:`fit` refuses to resume from it.
    The runner uses this to set aside the checkpoint of a run whose method was re-configured."""
    if not config.checkpoint or not Path(config.checkpoint).exists():
        return False
    state = torch.load(config.checkpoint, map_location="cpu", weights_only=False)
    return state["fingerprint"] != _fingerprint(model, method, data, config)


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


def epoch_batches(
    data: Dataset,
    config: FitConfig,
    order: torch.Tensor,
    generator: torch.Generator,
    steps: int,
    batch: int,
    images: fast.DeviceImages | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(x, y)`` training batches of one epoch, in ``order``, augmented from ``generator``.

    Default path: index the float tensor, augment per batch. With ``images`` (the
    ``image_storage="uint8"`` fast path) the batches come from :func:`samlab.fast.epoch_batches`:
    the same numbers, decoded on the device.
    """
    fmt = fast.memory_format(config.memory_format)
    if images is not None:
        for idx, x in fast.epoch_batches(images, order, steps, batch, config.augment, generator, fmt):
            yield x, data.y_train[idx]
        return
    for s in range(steps):
        idx = order[s * batch : (s + 1) * batch]
        x = data.x_train[idx]
        if config.augment:
            x = random_crop_flip(x, generator=generator)
        if fmt == torch.channels_last:
            x = x.contiguous(memory_format=fmt)
        yield x, data.y_train[idx]


class _StepMeans:
    """Running sums of ``StepInfo.extras`` over one epoch's steps, NaN values skipped (floats only)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, extras: dict[str, float]) -> None:
        for key, value in extras.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key not in self.sums:
                self.sums[key], self.counts[key] = 0.0, 0
            if not math.isnan(value):
                self.sums[key] += float(value)
                self.counts[key] += 1

    def record(self) -> dict[str, float]:
        return {f"step_{k}": (self.sums[k] / self.counts[k] if self.counts[k] else float("nan")) for k in self.sums}


def fit(
    model: nn.Module,
    method: Method,
    data: Dataset,
    config: FitConfig | None = None,
    *,
    on_epoch: Callable[[int, nn.Module], Mapping[str, float] | None] | None = None,
    **overrides: Any,
) -> History:
    """Train ``model`` on ``data`` with ``method`` for ``config.epochs`` epochs.

    The model and data must be on the same device. ``overrides`` replace fields of
    ``config`` (``fit(model, method, data, epochs=5)``). ``on_epoch(epoch, model)``, if
    given, is called after epoch 0's evaluation and after every trained epoch; what it
    returns (a mapping, or None) is merged into the epoch's record (see the module
    docstring). It must leave the model as it found it.
    """
    config = dataclasses.replace(config or FitConfig(), **overrides)
    if not isinstance(method, Method):
        raise TypeError(f"method must be a samlab.methods.Method (use samlab.methods.get), got {type(method).__name__}")
    device = data.x_train.device
    if next(model.parameters()).device != device:
        raise ValueError(f"model is on {next(model.parameters()).device} but data is on {device}; move one of them")
    if config.augment and data.x_train.ndim != 4:
        raise ValueError("augment=True needs image data of shape (N, C, H, W)")
    if config.memory_format == "channels_last" and data.x_train.ndim != 4:
        raise ValueError("memory_format='channels_last' needs image data of shape (N, C, H, W)")
    images = fast.DeviceImages.from_dataset(data) if config.image_storage == "uint8" else None
    if config.memory_format == "channels_last":
        model.to(memory_format=torch.channels_last)
    if config.compile:
        model.compile()  # in place: parameter names (and checkpoints) unchanged

    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor)
    fingerprint = _fingerprint(model, method, data, config)
    history = History(info={"fingerprint": fingerprint, "device": str(device)})
    start = 0
    ckpt = Path(config.checkpoint) if config.checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state["fingerprint"] != fingerprint:
            diff = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
            raise ValueError(
                f"checkpoint {ckpt} was written by a run with a different configuration "
                f"(differs in: {', '.join(diff)}). Delete it or pass another checkpoint path."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        method.load_state_dict(state["method"])
        history = History.from_dict(state["history"])
        start = int(state["epoch"])

    n = len(data.y_train)
    batch = n if config.batch_size is None else min(config.batch_size, n)
    steps = max(1, n // batch)  # incomplete last batch dropped: every batch has `batch` examples

    if start == 0 and not history.records:
        history.records.append(
            {
                "epoch": 0,
                "lr": config.lr,
                "train_loss": float("nan"),
                "seconds": 0.0,
                "images_per_second": float("nan"),
                **evaluate(model, data, eval_batch(config.eval_batch_size, device), config.memory_format),
            }
        )
        if on_epoch is not None:
            history.records[-1].update(on_epoch(0, model) or {})

    from tqdm.auto import tqdm

    bar = tqdm(range(start, config.epochs), desc=method.name, disable=not config.progress, leave=False, initial=start, total=config.epochs)
    for epoch in bar:
        seed = _epoch_seed(config.seed, epoch)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=gen).to(device)
        method.start_epoch(epoch, config.epochs)
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        step_means = _StepMeans()
        for x, y in epoch_batches(data, config, order, gen, steps, batch, images):
            info = method.step(model, x, y, optimizer)
            loss_sum += info.losses.mean()
            if info.extras:
                step_means.add(info.extras)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        scheduler.step()
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(loss_sum) / steps,
            "seconds": seconds,
            "images_per_second": steps * batch / seconds if seconds > 0 else float("nan"),
            **step_means.record(),
        }
        record.update(evaluate(model, data, eval_batch(config.eval_batch_size, device), config.memory_format))
        if on_epoch is not None:
            record.update(on_epoch(epoch + 1, model) or {})
        history.records.append(record)
        bar.set_postfix(test=f"{record['test_acc']:.3f}", noisy_fit=f"{record['noisy_fit']:.2f}")
        if ckpt is not None:
            _save(
                ckpt,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "method": method.state_dict(),
                    "history": history.to_dict(),
                },
            )
    bar.close()
    return history

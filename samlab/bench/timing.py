"""Milliseconds per training step of every method, and its ratio to SGD (``python -m samlab.bench``; see the README).

Run ``python -m samlab.bench`` (options: ``--models``, ``--batch``, ``--repeats``,
``--warmup``, ``--methods``). For each model, every method takes steps on the *same*
model (a copy of one initialisation) and the *same* random batch of CIFAR shape
(3×32×32, 10 classes), with ``torch.manual_seed`` fixed: a few warm-up steps, then the
median wall time of ``--repeats`` single steps (``method.step``: the method's passes plus
the base optimiser's step; CUDA is synchronised around each timed step). The methods
step in turn (round robin), so that a change in the machine's load during the run hits
all of them alike; on a shared CPU the numbers still move from run to run (the device
field records the load average).

Methods: every name in :func:`samlab.methods.names`, with the per-example and wrapper
variants configured explicitly (:data:`VARIANTS`: ``1-sam`` = ``sam(m=1)``, ``jsam-1`` =
``jsam(per_example=True)``, ``saner(fsam)``, ...). A variant whose method is not
registered, or whose hyperparameters the registered class does not accept, is skipped
with a note. Every per-example method is timed with both engines: ``1-sam``, ``jsam-1``,
``lsam-1``, ``saner(1-sam)`` with the exact engine (the default, ``engine="auto"``,
:mod:`samlab.methods.exact`) and ``1-sam[vmap]``, ... with torch.func's; ``obf`` (exact)
beside ``obf[loop]`` (its per-chunk loop; with training-mode BatchNorm both run the loop).
Models: ``small-cnn-gn`` and ``small-cnn-bn`` on any device, ``resnet18`` (BatchNorm) and
``resnet18-gn`` (GroupNorm, notebook 04's model) added by default when CUDA is available,
``mlp`` (tiny, for tests), ``mlp-mnist`` (notebook 03's mnist run: one hidden layer of
128, 1×28×28 inputs). After the timed rounds each method takes one more step whose peak
memory is recorded (``peak_mb``: CUDA's ``max_memory_allocated`` above what was

Output: a table per model, then one JSON line per model
``{"device", "model", "batch", "ms_per_step", "ratio_to_sgd", "targets", "skipped"}``;
the last line of the output is JSON. ``targets`` compares the ratios with the project's
goals (:data:`samlab.bench.costs.TARGETS`).
"""

from __future__ import annotations

import copy
import ctypes
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samlab import hardware, methods
from samlab.bench.costs import VARIANTS, targets_for
from samlab.models import build

__all__ = ["INPUT_SHAPE", "INPUT_SHAPES", "MODELS", "NUM_CLASSES", "bench_model", "build_methods", "peak_memory_mb"]

#: model option -> (samlab.models.build name, options)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "small-cnn-gn": ("small-cnn", {"norm": "gn"}),
    "small-cnn-bn": ("small-cnn", {"norm": "bn"}),
    "resnet18": ("resnet18", {"norm": "bn"}),
    "resnet18-gn": ("resnet18", {"norm": "gn"}),  # notebook 04's model
    "mlp": ("mlp", {"hidden": 64, "depth": 2}),
    "mlp-mnist": ("mlp", {"hidden": 128, "depth": 1}),  # notebook 03's mnist run (logit-jacobian-mnist-50)
}


INPUT_SHAPE = (3, 32, 32)


#: models whose input is not CIFAR-shaped
INPUT_SHAPES: dict[str, tuple[int, ...]] = {"mlp-mnist": (1, 28, 28)}


NUM_CLASSES = 10


def build_methods(labels: Sequence[str] | None, batch: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Methods to time, by label, and a note for each one skipped.

    ``labels=None``: every variant of :data:`VARIANTS` plus every other registered name.
    OBF's chunk size is 64 when it divides ``batch``, else the whole batch.
    """
    registered = methods.names()
    variants = dict(VARIANTS)
    for name in registered:
        if name not in {base for base, _ in VARIANTS.values()}:
            variants[name] = (name, {})
    if labels is None:
        labels = list(variants)
    built: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for label in labels:
        if label not in variants:
            skipped[label] = f"unknown method label (known: {', '.join(variants)})"
            continue
        name, kwargs = variants[label]
        kwargs = copy.deepcopy(kwargs)
        if name not in registered:
            skipped[label] = f"method {name!r} is not registered"
            continue
        if name == "obf" and "m" not in kwargs:
            kwargs["m"] = 64 if batch % 64 == 0 else None
        try:
            built[label] = methods.get(name, **kwargs)
        except (TypeError, ValueError) as exc:
            skipped[label] = f"cannot build {name}({kwargs}): {exc}"
    return built, skipped


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _where(device: torch.device) -> str:
    """:func:`samlab.hardware.describe`, with the load average on a CPU (timings move with it)."""
    if device.type == "cuda":
        return hardware.describe(device)
    return f"{hardware.describe(device)}, load average {os.getloadavg()[0]:.1f}"


def _rss_kb(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process in kB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_free_memory() -> None:
    """glibc: hand freed heap pages back (``malloc_trim``), so that what a step allocates shows
    in the resident set again instead of reusing pages already counted; elsewhere nothing."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_mb(fn: Any, device: torch.device) -> float | None:
    """Peak memory that ``fn()`` adds, in MB: on CUDA ``torch.cuda.max_memory_allocated``
    above what was allocated before; on a Linux CPU the resident-set high-water mark
    (``VmHWM``, reset through ``/proc/self/clear_refs``) above the resident set before, after
    freed heap pages are returned (``malloc_trim``) — coarser than on CUDA (pages, not
    tensors; memory the allocator keeps mapped is missed); None where neither is available."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    _release_free_memory()
    before = _rss_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        before = None
    fn()
    peak = _rss_kb("VmHWM")
    return None if before is None or peak is None else max(0, peak - before) / 1024


class _Runner:
    """One method on its own copy of the model, with its own base optimiser."""

    def __init__(self, method: Any, model: nn.Module, seed: int):
        torch.manual_seed(seed)
        self.method = copy.deepcopy(method)  # no state (an EMA, a schedule) carried from another model
        self.net = copy.deepcopy(model).train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.method.start_epoch(0, 1)
        self.times: list[float] = []

    def step(self, x: torch.Tensor, y: torch.Tensor, timed: bool) -> None:
        _sync(x.device)
        t0 = time.perf_counter()
        self.method.step(self.net, x, y, self.opt)
        _sync(x.device)
        if timed:
            self.times.append(time.perf_counter() - t0)


def _model_and_batch(model_key: str, batch: int, seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Model ``model_key`` (a key of :data:`MODELS`) built with ``seed``, and one random batch of its
    input shape with random labels (on the CPU): what every method of a benchmark steps on."""
    name, options = MODELS[model_key]
    shape = INPUT_SHAPES.get(model_key, INPUT_SHAPE)
    model = build(name, shape, NUM_CLASSES, seed=seed, **options)
    gen = torch.Generator().manual_seed(seed)
    return model, torch.randn(batch, *shape, generator=gen), torch.randint(0, NUM_CLASSES, (batch,), generator=gen)


def bench_model(
    model_key: str,
    methods_by_label: dict[str, Any],
    *,
    batch: int = 128,
    repeats: int = 3,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Time every method on model ``model_key`` (a key of :data:`MODELS`); returns the JSON record.

    The methods take their steps in turn (round robin: one step of each, ``warmup +
    repeats`` rounds), so that a change in the machine's load hits all of them alike.
    """
    device = torch.device(device)
    model, x, y = (t.to(device) for t in _model_and_batch(model_key, batch, seed))
    runners = {label: _Runner(method, model, seed) for label, method in methods_by_label.items()}
    failed: dict[str, str] = {}
    for r in range(warmup + repeats):
        for label, runner in runners.items():
            if label in failed:
                continue
            try:
                runner.step(x, y, timed=r >= warmup)
            except Exception as exc:  # a method that cannot run on this model is reported, not fatal
                failed[label] = f"failed: {type(exc).__name__}: {exc}"
    ms = {k: 1000.0 * statistics.median(r.times) for k, r in runners.items() if k not in failed and r.times}
    peak: dict[str, float] = {}
    for label in ms:  # one more, untimed step each, for its peak memory
        mb = peak_memory_mb(lambda r=runners[label]: r.step(x, y, timed=False), device)
        if mb is not None:
            peak[label] = round(mb, 1)
    base = ms.get("sgd")
    ratio = {k: v / base for k, v in ms.items()} if base else {}
    targets = {}
    for label, limit in targets_for(model_key, device.type).items():
        if label in ratio:
            targets[label] = {"max": limit, "ratio": round(ratio[label], 3), "met": bool(ratio[label] <= limit)}
    return {
        "device": _where(device),
        "model": model_key,
        "batch": batch,
        "ms_per_step": {k: round(v, 2) for k, v in ms.items()},
        "ratio_to_sgd": {k: round(v, 3) for k, v in ratio.items()},  # empty if SGD failed
        "peak_mb": peak,
        "targets": targets,
        "skipped": failed,
        "configs": {k: str(m) for k, m in methods_by_label.items() if k in ms},
    }

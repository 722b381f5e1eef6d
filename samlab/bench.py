"""Milliseconds per training step of every method, and its ratio to SGD (see the README).

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
allocated before; on a Linux CPU the rise of the resident-set high-water mark, coarser).

FLOP and memory model of the GPU case (to be measured; no GPU this session). Per conv
layer with I = C_in·k² inputs per patch, O = C_out, L output positions, batch B, let
F = 2·B·L·I·O be its forward FLOPs; SGD costs ≈ 3F (forward, input and weight
gradients), whole-batch SAM ≈ 6F. The exact engine's 1-SAM: forward F; output gradients
only, ≈ F; then per layer either the per-example gradients G_i = D_i U_iᵀ (F) and the
added term c_i G_i U'_i in the second forward (F) and its input gradient in the second
backward (F), or, where R(I + O) < I·O with R = L rows per example (the deep layers:
ResNet-18's stages 3–4 at 32×32), the ghost form whose Gram products cost
≈ 6·B·L²(I + O) ≪ F; plus the second forward and backward (3F). So ≈ 8F (≈ 2.7× SGD) on
materialised layers and ≈ 5F (≈ 1.7×) on ghost layers, with im2col traffic (k²× the
layer's input, twice, plus col2im) on top; the vmap engine does similar FLOPs but as
grouped convolutions with B groups, which run far below peak (21× SGD measured on an
H100). Memory beyond SAM's two passes: B × (parameters of the materialised layers) for
G and again for ε (ResNet-18 width 64: ≈ 0.7M such parameters, ≈ 0.7 GB in fp32 at
B = 128), the unfolded inputs of the ghost layers until the second pass (≈ 0.3 GB), and
B·L² Gram entries — against B × all 11M parameters (≈ 5.6 GB per copy) for vmap.
``chunk_size`` bounds both engines by processing the batch in groups. Materialised convs
use unfold + batched matmul on CUDA; ``samlab.methods.exact.CONV_BACKEND["cuda"] =
"grouped"`` times the grouped-convolution form the CPU uses instead.

Output: a table per model, then one JSON line per model
``{"device", "model", "batch", "ms_per_step", "ratio_to_sgd", "targets", "skipped"}``;
the last line of the output is JSON. ``targets`` compares the ratios with the project's
goals (:data:`TARGETS`).

``--throughput`` measures instead the training images per second of the default data
path of :func:`samlab.train.fit` against its GPU fast path (:mod:`samlab.fast`, timed by :func:`throughput`: uint8
images on the device, ``channels_last``; ``--compile`` adds ``torch.compile``), through
the real batch pipeline (crop+flip augmentation included) on synthetic 8-bit CIFAR-shaped
images, for the methods of ``--methods`` (default ``sgd,sam``). ``--repeats`` timed
steps per configuration (use 50 or more on a GPU). One JSON line per model and method
``{"device", "model", "batch", "method", "images_per_second", "speedup"}``; no number
is asserted anywhere.

``--eval 128,2048`` times instead :func:`samlab.train.evaluate`, the evaluation ``fit``
runs after every epoch (training, validation and test sets; here synthetic CIFAR-shaped
images of cifar10-mini's size), at each evaluation batch size, and checks that the sizes
give the same figures: what :data:`samlab.train.EVAL_BATCH` is chosen by.

``--flops`` counts instead the FLOPs of one step of every method (:func:`count_flops`:
torch's ``FlopCounterMode``, matrix products and convolutions only, on the CPU; the exact
engine's convolutions counted in their unfold form), and their ratio to SGD's: the
arithmetic floor under each time ratio, and, for ``resnet18-gn``, the FLOP side of the GPU
case below measured rather than modelled.

``--out FILE`` (any mode) also writes the records, with the command, hardware, torch
version, commit and date, to a JSON file; ``--readme README.md`` rewrites the README's
benchmark tables from the committed ``data/results/cpu/bench.json`` and
``data/results/gpu/{bench,throughput}.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samlab import data as data_mod
from samlab import fast, hardware, methods, provenance, results
from samlab.methods import exact
from samlab.models import build
from samlab.train import FitConfig, epoch_batches, evaluate

__all__ = [
    "MODELS",
    "README_FLOPS_MARKERS",
    "README_GPU_MARKERS",
    "README_MARKERS",
    "TARGETS",
    "VARIANTS",
    "targets_for",
    "bench_costs",
    "bench_model",
    "build_methods",
    "committed_gpu_tables",
    "committed_table",
    "count_flops",
    "eval_seconds",
    "flops_markdown_table",
    "load_record",
    "relabel",
    "main",
    "markdown_table",
    "throughput",
    "throughput_markdown_table",
    "throughput_records",
    "throughput_table",
    "training_hours",
    "variant_of",
]

#: the README's benchmark table sits between these lines (``make bench-table``)
README_MARKERS = ("<!-- bench-table:start -->", "<!-- bench-table:end -->")
#: the README's GPU tables (``data/results/gpu/bench.json`` and ``throughput.json``)
README_GPU_MARKERS = ("<!-- bench-gpu-table:start -->", "<!-- bench-gpu-table:end -->")
#: the README's FLOP table (``data/results/cpu/flops.json``, written by ``--flops --out``)
README_FLOPS_MARKERS = ("<!-- bench-flops-table:start -->", "<!-- bench-flops-table:end -->")

#: label -> (registered method name, hyperparameters). Registered methods not named here
#: are benchmarked with their defaults under their own name.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", {}),
    "sam": ("sam", {"rho": 0.05}),
    "1-sam": ("sam", {"rho": 0.05, "m": 1}),
    "1-sam[vmap]": ("sam", {"rho": 0.05, "m": 1, "engine": "vmap"}),
    "asam": ("sam", {"rho": 0.5, "adaptive": True}),
    "lsam": ("lsam", {"rho": 0.05}),
    "lsam-1": ("lsam", {"rho": 0.05, "per_example": True}),
    "lsam-1[vmap]": ("lsam", {"rho": 0.05, "per_example": True, "engine": "vmap"}),
    "jsam": ("jsam", {"rho": 0.05}),
    "jsam-1": ("jsam", {"rho": 0.05, "per_example": True}),
    "jsam-1[vmap]": ("jsam", {"rho": 0.05, "per_example": True, "engine": "vmap"}),
    "fsam": ("fsam", {}),
    "obf": ("obf", {}),
    "obf[loop]": ("obf", {"engine": "loop"}),
    "saner(sam)": ("saner", {"inner": {"method": "sam", "rho": 0.1}}),
    "saner(1-sam)": ("saner", {"inner": {"method": "sam", "rho": 0.1, "m": 1}}),
    "saner(1-sam)[vmap]": ("saner", {"inner": {"method": "sam", "rho": 0.1, "m": 1, "engine": "vmap"}}),
    "saner(fsam)": ("saner", {"inner": {"method": "fsam"}}),
    "regsgd": ("regsgd", {}),
    "regsgd-weighted": ("regsgd", {"weighted": True}),
}

def _shape(name: str, cfg: dict[str, Any]) -> tuple[Any, ...]:
    """What decides a method's cost per step: its name and structural options, not its coefficients.

    The engine counts: "vmap" (per-example methods) and "loop" (OBF) are the older engines;
    "auto", "exact" or no field, the exact engine (configs written before the engine field
    existed ran the older engines: their costs are the ``[vmap]``/``[loop]`` variants').
    A wrapper's inner method counts by its own shape."""
    inner = cfg.get("inner")
    return (
        name,
        name == "sam" and cfg.get("m") == 1,
        bool(cfg.get("adaptive")),
        bool(cfg.get("per_example")),
        bool(cfg.get("weighted")),
        _shape(inner["method"], inner) if isinstance(inner, dict) and "method" in inner else None,
        cfg.get("engine") in ("vmap", "loop"),
    )


def variant_of(config: dict[str, Any]) -> str | None:
    """The benchmark label of a method config (``{"method": "sam", "rho": 0.01, "m": 1}`` → ``"1-sam"``),
    matched on the options that change the cost of a step (per-example or not, adaptive, weighted, the
    inner method of a wrapper, the engine), not on coefficients; ``None`` if no variant matches.
    The inverse of :data:`VARIANTS`, derived from it."""
    want = _shape(config["method"], config)
    return next((label for label, (name, kw) in VARIANTS.items() if _shape(name, kw) == want), None)


def bench_costs(result: dict[str, Any], bench_record: dict[str, Any]) -> dict[str, float]:
    """Cost of each method label of ``result`` relative to SGD, read from one model's benchmark record
    (its ``ratio_to_sgd``, by variant; see :func:`variant_of`). Labels with no timed variant are left out."""
    ratios = bench_record["ratio_to_sgd"]
    out: dict[str, float] = {}
    for label, cfg in result["config"]["methods"].items():
        variant = variant_of(cfg)
        if variant in ratios:
            out[label] = float(ratios[variant])
    return out


#: The project's goals, as the largest acceptable ratio to SGD at batch 128: ``(device type, model)``
#: -> label -> ratio, where ``"*"`` stands for any model (a model's own entry wins). The
#: per-example goals are those of the exact engine (issue 15); ``*[vmap]`` variants have none.
#: The two-pass and regulariser goals on the CPU were set for the small CNN (on notebook 03's
#: MLP a step takes about a millisecond and fixed costs dominate; only its per-example goals are set).
TARGETS: dict[tuple[str, str], dict[str, float]] = {
    ("cpu", "small-cnn-gn"): {"sam": 2.1, "jsam": 2.2, "regsgd": 1.15, "1-sam": 2.6, "jsam-1": 2.6, "lsam-1": 2.4},
    ("cpu", "small-cnn-bn"): {"sam": 2.1, "jsam": 2.2, "regsgd": 1.15, "1-sam": 3.0, "jsam-1": 3.0, "lsam-1": 3.0},
    ("cpu", "mlp-mnist"): {"1-sam": 3.0, "jsam-1": 3.0, "lsam-1": 3.0},
    ("cuda", "*"): {"sam": 2.15, "jsam": 2.2, "regsgd": 1.15, "asam": 2.3, "fsam": 2.3, "saner(sam)": 2.3, "obf": 2.4},
    ("cuda", "resnet18-gn"): {"1-sam": 4.0},
}


def targets_for(model: str, device_type: str) -> dict[str, float]:
    """The goals (label -> largest ratio to SGD) that apply to ``model`` on a device of ``device_type``."""
    return {**TARGETS.get((device_type, "*"), {}), **TARGETS.get((device_type, model), {})}

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


@contextlib.contextmanager
def _countable_convolutions():
    """The exact engine's materialised convolutions as unfold + batched matmul, on every device, while
    FLOPs are counted: torch's counter leaves a convolution's ``groups`` out of its backward, and so
    counts the backward of the grouped form (B groups) B times too high; unfold + batched matmul is the
    same arithmetic, counted right."""
    saved = dict(exact.CONV_BACKEND)
    exact.CONV_BACKEND.clear()
    try:
        yield
    finally:
        exact.CONV_BACKEND.clear()
        exact.CONV_BACKEND.update(saved)


def count_flops(model_key: str, methods_by_label: dict[str, Any], *, batch: int = 128, seed: int = 0) -> dict[str, Any]:
    """FLOPs of one training step of every method on model ``model_key``, on the CPU, the same model
    and batch as :func:`bench_model`; returns the JSON record.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on each method's second step (the first
    sets up state such as F-SAM's average): the matrix products and convolutions, forward and
    backward, that torch's counter knows; elementwise work (norms, activations, pooling, the
    optimiser) is not counted. A method's ratio to SGD is therefore the ratio of the arithmetic a
    fast kernel must do, the floor its time ratio approaches when that arithmetic dominates. On a
    model with convolutions the vmap engine (``[vmap]`` labels) is skipped: its per-example
    convolutions are grouped, whose backward the counter does not count right (see
    :func:`_countable_convolutions`).
    """
    from torch.utils.flop_counter import FlopCounterMode

    model, x, y = _model_and_batch(model_key, batch, seed)
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    flops: dict[str, int] = {}
    skipped: dict[str, str] = {}
    with _countable_convolutions():
        for label, method in methods_by_label.items():
            if label.endswith("[vmap]") and convolutional:
                skipped[label] = "vmap's per-example convolutions are grouped: torch's counter miscounts their backward"
                continue
            runner = _Runner(method, model, seed)
            try:
                runner.step(x, y, timed=False)
                counter = FlopCounterMode(display=False)
                with counter:
                    runner.step(x, y, timed=False)
            except Exception as exc:  # a method that cannot run on this model is reported, not fatal
                skipped[label] = f"failed: {type(exc).__name__}: {exc}"
                continue
            flops[label] = int(counter.get_total_flops())
    base = flops.get("sgd")
    return {
        "device": _where(torch.device("cpu")),
        "model": model_key,
        "batch": batch,
        "flops_per_step": flops,
        "flop_ratio_to_sgd": {k: round(v / base, 3) for k, v in flops.items()} if base else {},
        "skipped": skipped,
    }


def flops_markdown_table(saved: dict[str, Any], timed: dict[str, Any] | None = None) -> str:
    """The README's FLOP table from a ``--flops --out`` file: per method and model, GFLOPs per step and
    the ratio to SGD; where ``timed`` (a ``bench.json``) timed the same model, its time ratio beside it."""
    records = saved["records"]
    times = {r["model"]: relabel(r)["ratio_to_sgd"] for r in (timed or {}).get("records", [])}
    labels = list(dict.fromkeys(label for r in records for label in r["flops_per_step"]))
    lines = ["| method | " + " | ".join(f"{r['model']}: GFLOPs (× SGD; time × SGD)" for r in records) + " |",
             "|---" * (len(records) + 1) + "|"]
    for label in labels:
        cells = []
        for r in records:
            g = r["flops_per_step"].get(label)
            t = times.get(r["model"], {}).get(label)
            gf = None if g is None else g / 1e9
            cells.append("—" if gf is None else (f"{gf:.3g}" if gf < 1000 else f"{gf:.0f}") + f" ({r['flop_ratio_to_sgd'][label]:.2f}×"
                         + (f"; {t:.2f}×)" if t is not None else ")"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"`{saved['command']}` ({saved['hardware']}), batch {records[0]['batch']}, {saved['date']}, "
                 f"commit {saved['git_commit']}; time ratios from the committed `data/results/cpu/bench.json`.")
    return "\n".join(lines)


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


def _table(record: dict[str, Any]) -> str:
    lines = [f"== {record['model']} on {record['device']}, batch {record['batch']} =="]
    lines.append(f"{'method':<18} {'ms/step':>9} {'x SGD':>7} {'peak MB':>8}  {'goal':<12} config")
    for label, v in record["ms_per_step"].items():
        goal = ""
        if label in record["targets"]:
            t = record["targets"][label]
            goal = f"<= {t['max']:g} {'ok' if t['met'] else 'MISSED'}"
        r = record["ratio_to_sgd"].get(label, float("nan"))
        mb = record.get("peak_mb", {}).get(label, float("nan"))
        lines.append(f"{label:<18} {v:>9.1f} {r:>7.2f} {mb:>8.1f}  {goal:<12} {record['configs'].get(label, '')}")
    for label, why in record["skipped"].items():
        lines.append(f"{label:<18} skipped: {why}")
    return "\n".join(lines)


def markdown_table(saved: dict[str, Any]) -> str:
    """The README's benchmark table from a file written by ``--out``: one column per model, each cell
    ms per step, ratio to SGD and (where recorded) peak memory; the last column the goals and whether
    each model met them."""
    records = [relabel(r) for r in saved["records"]]
    labels = list(dict.fromkeys(label for r in records for label in r["ms_per_step"]))
    head = "| method | " + " | ".join(f"{r['model']}: ms/step (× SGD, peak MB)" for r in records) + " | target |"
    lines = [head, "|---" * (len(records) + 2) + "|"]
    for label in labels:
        cells = []
        for r in records:
            ms, ratio, mb = r["ms_per_step"].get(label), r["ratio_to_sgd"].get(label), r.get("peak_mb", {}).get(label)
            cells.append("—" if ms is None else f"{ms:.0f} ({ratio:.2f}×" + (f", {mb:.0f})" if mb is not None else ")"))
        goals = []
        for r in records:
            if label in r["targets"]:
                t = r["targets"][label]
                who = f"{r['model']} " if len(records) > 1 else ""
                goals.append(f"{who}≤ {t['max']:g}× " + ("met" if t["met"] else "**missed**"))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'; '.join(goals)} |")
    lines.append("")
    lines.append(f"`{saved['command']}` on {records[0]['device']} ({saved['hardware']}), batch {records[0]['batch']}, "
                 f"{saved['date']}, commit {saved['git_commit']}.")
    return "\n".join(lines)


def throughput_markdown_table(saved: dict[str, Any]) -> str:
    """A table of images per second (speed-up over the default path) from a ``--throughput --out`` file."""
    records = saved["records"]
    configs = list(records[0]["images_per_second"])
    lines = ["| model | method | " + " | ".join(configs) + " |", "|---" * (len(configs) + 2) + "|"]
    for r in records:
        cells = [f"{r['images_per_second'][c]:.0f} ({r['speedup'][c]:.2f}×)" if c in r["images_per_second"] else "—"
                 for c in configs]
        lines.append(f"| {r['model']} | {r['method']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"`{saved['command']}` on {records[0]['device']} ({saved['hardware']}), batch {records[0]['batch']}, "
                 f"{saved['date']}, commit {saved['git_commit']}.")
    return "\n".join(lines)


#: labels of a record written before the exact engine existed -> what they timed (the older engines)
PRE_ENGINE: dict[str, str] = {"1-sam": "1-sam[vmap]", "jsam-1": "jsam-1[vmap]", "lsam-1": "lsam-1[vmap]", "obf": "obf[loop]"}


def relabel(record: dict[str, Any]) -> dict[str, Any]:
    """A benchmark record with its labels naming the engine that was timed. Records written before the
    exact engine (no ``peak_mb``, no ``[vmap]`` label) timed the vmap/loop engines under the plain labels
    (``1-sam``, ``jsam-1``, ``lsam-1``, ``obf``): those are renamed (:data:`PRE_ENGINE`), so that a
    current config (exact engine) finds no cost where none was measured. Newer records are unchanged."""
    if "peak_mb" in record or any(label.endswith("[vmap]") for label in record["ms_per_step"]):
        return record  # written with the exact engine (peak memory came with it)
    rename = lambda d: {PRE_ENGINE.get(k, k): v for k, v in d.items()}  # noqa: E731
    out = dict(record)
    for key in ("ms_per_step", "ratio_to_sgd", "targets", "peak_mb"):
        if key in record:
            out[key] = rename(record[key])
    return out


def load_record(profile: str | None = None, model: str = "small-cnn-gn") -> dict[str, Any] | None:
    """:func:`samlab.results.load_bench`, relabelled by engine (:func:`relabel`); ``None`` if absent."""
    record = results.load_bench(profile, model)
    return None if record is None else relabel(record)


def committed_table(path: Path | None = None) -> str:
    """:func:`markdown_table` of the committed ``data/results/cpu/bench.json``, or a note that there is none."""
    saved = json.loads(Path(path).read_text()) if path is not None and Path(path).exists() else None
    if path is None:
        saved = results.committed("cpu", "bench")
    return "_No benchmark file yet._" if saved is None else markdown_table(saved)


def committed_gpu_tables() -> str:
    """The README's GPU section: ms per step (``data/results/gpu/bench.json``) and images per second
    of the fast path (``data/results/gpu/throughput.json``), each or a note that there is none."""
    bench, speed = results.committed("gpu", "bench"), results.committed("gpu", "throughput")
    parts = ["_No GPU benchmark file yet._" if bench is None else markdown_table(bench),
             "_No GPU throughput file yet._" if speed is None else throughput_markdown_table(speed)]
    return "\n\n".join(parts)


def committed_flops_table() -> str:
    """:func:`flops_markdown_table` of the committed ``data/results/cpu/flops.json`` (time ratios from
    ``bench.json``), or a note that there is none."""
    saved = results.committed("cpu", "flops")
    return "_No FLOP count yet._" if saved is None else flops_markdown_table(saved, results.committed("cpu", "bench"))


def training_hours(
    methods: dict[str, dict[str, Any]], record: dict[str, Any], *, n_train: int, batch: int, epochs: int, seeds: int = 1
) -> dict[str, float]:
    """Hours of training steps each method label of ``methods`` (an experiment's method configs) needs,
    estimated from one benchmark ``record`` (notebook 04): SGD's ms per step × the method's ratio to SGD
    (:func:`bench_costs`) × ``n_train // batch`` steps per epoch (as :func:`samlab.train.fit`)
    × ``epochs`` × ``seeds``. Evaluation and start-up are left out, so it is a lower bound. Labels whose
    method the benchmark did not time are left out."""
    if record["batch"] != batch:
        raise ValueError(f"batch must be the benchmark's batch ({record['batch']}) for its times to apply, got {batch}")
    if n_train < 1 or epochs < 1 or seeds < 1:
        raise ValueError(f"n_train, epochs and seeds must be >= 1, got {n_train}, {epochs}, {seeds}")
    costs = bench_costs({"config": {"methods": methods}}, record)
    steps = max(1, n_train // batch) * epochs * seeds
    return {label: ratio * record["ms_per_step"]["sgd"] * steps / 3.6e6 for label, ratio in costs.items()}


def eval_seconds(
    model_key: str, batch_sizes: Sequence[int], *, n_train: int = 4500, n_test: int = 1000, repeats: int = 3,
    device: torch.device | str = "cpu", seed: int = 0,
) -> dict[str, Any]:
    """Seconds of one :func:`samlab.train.evaluate` (the per-epoch evaluation of ``fit``) at each
    evaluation batch size, on synthetic CIFAR-shaped data of cifar10-mini's size (``n_train``
    training images, 10% of them as validation, ``n_test`` test images); the median of
    ``repeats``, the sizes taking turns. Also checks that every size gives the same figures."""
    device = torch.device(device)
    name, options = MODELS[model_key]
    model = build(name, INPUT_SHAPES.get(model_key, INPUT_SHAPE), NUM_CLASSES, seed=seed, **options).to(device)
    ds = data_mod.split_validation(fast.synthetic_images(n=n_train, n_test=n_test, seed=seed), 0.1, seed).to(device)
    times: dict[int, list[float]] = {b: [] for b in batch_sizes}
    figures: dict[int, dict[str, float]] = {}
    for _ in range(repeats):
        for b in batch_sizes:
            _sync(device)
            t0 = time.perf_counter()
            figures[b] = evaluate(model, ds, b)
            _sync(device)
            times[b].append(time.perf_counter() - t0)
    first = figures[batch_sizes[0]]
    agree = all(abs(f[k] - first[k]) <= 1e-5 for f in figures.values() for k in first
                if isinstance(first[k], float) and first[k] == first[k])
    seconds = {str(b): round(statistics.median(v), 3) for b, v in times.items()}
    return {"device": _where(device), "model": model_key, "images": n_train + n_test, "seconds": seconds,
            "same_figures": agree}


def _write_out(out: str, argv: Sequence[str] | None, device: str, records: list[dict[str, Any]]) -> None:
    """``--out``: the records with the command that made them and the machine's provenance."""
    env = {k: v for k, v in provenance.record(torch.device(device)).items() if k in ("hardware", "git_commit", "date", "torch")}
    cmd = "python -m samlab.bench " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    results.write(Path(out), {"command": cmd.strip(), **env, "records": records})


def throughput(
    model: nn.Module,
    method: Any,
    data: data_mod.Dataset,
    configs: dict[str, dict[str, Any]] | None = None,
    *,
    batch: int = 128,
    steps: int = 20,
    warmup: int = 3,
    augment: bool = True,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Training images per second of ``method`` on ``model`` under each configuration.

    ``configs``: label -> fast-path ``FitConfig`` fields (default: ``default`` = none,
    ``uint8``, ``uint8+channels_last`` and, where asked, ``+compile``). Each configuration
    trains a fresh copy of ``model`` for ``warmup`` untimed steps, then ``steps`` timed
    steps (CUDA synchronised at both ends), through the same batch pipeline as
    :func:`samlab.train.fit`. Returns label -> ``{"images_per_second", "ms_per_step"}``.
    No numbers are asserted anywhere: timings depend on the machine and its load.
    """
    if configs is None:
        configs = {"default": {}, "uint8": {"image_storage": "uint8"}, "uint8+channels_last": dict(fast.FAST)}
    device = data.x_train.device
    n = len(data.y_train)
    batch = min(batch, n)
    per_epoch = max(1, n // batch)
    out: dict[str, dict[str, float]] = {}
    for label, fields in configs.items():
        cfg = FitConfig(batch_size=batch, augment=augment, seed=seed, progress=False, **fields)
        images = fast.DeviceImages.from_dataset(data) if cfg.image_storage == "uint8" else None
        net = copy.deepcopy(model).to(device).train()
        if cfg.memory_format == "channels_last":
            net = net.to(memory_format=torch.channels_last)
        if cfg.compile:
            net.compile()
        m = copy.deepcopy(method)
        m.start_epoch(0, 1)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        done, epoch, t0 = 0, 0, time.perf_counter()
        while done < warmup + steps:
            torch.manual_seed(seed + epoch)
            gen = torch.Generator().manual_seed(seed + epoch)
            order = torch.randperm(n, generator=gen).to(device)
            for x, y in epoch_batches(data, cfg, order, gen, per_epoch, batch, images):
                if done == warmup:
                    _sync(device)
                    t0 = time.perf_counter()
                m.step(net, x, y, opt)
                done += 1
                if done == warmup + steps:
                    break
            epoch += 1
        _sync(device)
        seconds = time.perf_counter() - t0
        out[label] = {"images_per_second": steps * batch / seconds, "ms_per_step": 1000 * seconds / steps}
    return out


def throughput_table(measured: dict[str, dict[str, float]], names: Sequence[str] | None = None) -> str:
    """Plain-text table of :func:`throughput`'s result, with speed-ups over the first row."""
    names = list(names or measured)
    base = measured[names[0]]["images_per_second"]
    lines = [f"{'configuration':<28} {'images/s':>10} {'ms/step':>9} {'speed-up':>9}"]
    for k in names:
        r = measured[k]
        ips = r["images_per_second"]
        lines.append(f"{k:<28} {ips:>10.0f} {r['ms_per_step']:>9.1f} {ips / base:>8.2f}×")
    return "\n".join(lines)


def throughput_records(
    models: Sequence[str],
    labels: Sequence[str],
    *,
    batch: int,
    repeats: int,
    warmup: int,
    device: torch.device | str,
    seed: int = 0,
    compile: bool = False,
) -> list[dict[str, Any]]:
    """Images per second of the default and fast data paths (:func:`throughput`)."""
    device = torch.device(device)
    configs: dict[str, dict[str, Any]] = {
        "default": {},
        "uint8": {"image_storage": "uint8"},
        "uint8+channels_last": dict(fast.FAST),
    }
    if compile:
        configs["uint8+channels_last+compile"] = {**fast.FAST, "compile": True}
    data = fast.synthetic_images(n=batch * 8, n_test=batch, seed=seed).to(device)
    built, skipped = build_methods(list(labels), batch)
    where = _where(device)
    records = []
    for key in models:
        name, options = MODELS[key]
        model = build(name, INPUT_SHAPE, NUM_CLASSES, seed=seed, **options)
        for label, method in built.items():
            res = throughput(model, method, data, configs, batch=batch, steps=repeats, warmup=warmup, seed=seed)
            base = res["default"]["images_per_second"]
            records.append(
                {
                    "device": where,
                    "model": key,
                    "batch": batch,
                    "method": label,
                    "images_per_second": {k: round(v["images_per_second"], 1) for k, v in res.items()},
                    "speedup": {k: round(v["images_per_second"] / base, 3) for k, v in res.items()},
                    "table": throughput_table(res),
                    "skipped": skipped,
                }
            )
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samlab.bench", description=__doc__.split("\n\n")[0])
    default_models = ["small-cnn-gn", "small-cnn-bn"] + (["resnet18", "resnet18-gn"] if torch.cuda.is_available() else [])
    parser.add_argument("--models", default=",".join(default_models), help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per method (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    parser.add_argument("--methods", default=None, help="comma-separated labels (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--throughput", action="store_true", help="images/s of the fast data path of train.fit vs the default"
    )
    parser.add_argument("--compile", action="store_true", help="with --throughput: also time torch.compile")
    parser.add_argument("--eval", default=None, metavar="SIZES",
                        help="comma-separated evaluation batch sizes: time train.evaluate at each instead")
    parser.add_argument("--flops", action="store_true",
                        help="count the FLOPs of one step per method (torch's FlopCounterMode, CPU) instead of timing")
    parser.add_argument("--out", default=None, help="also write the JSON records (a list) to this file")
    parser.add_argument("--readme", default=None,
                        help="only rewrite the benchmark tables of this README from data/results/{cpu,gpu}/")
    args = parser.parse_args(argv)
    if args.readme:
        results.update_readme(Path(args.readme), committed_table(), README_MARKERS)
        results.update_readme(Path(args.readme), committed_gpu_tables(), README_GPU_MARKERS)
        results.update_readme(Path(args.readme), committed_flops_table(), README_FLOPS_MARKERS)
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        parser.error(f"--models must be from {list(MODELS)}, got {bad}")
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch and --repeats must be >= 1, --warmup >= 0")
    labels = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.eval:
        sizes = [int(v) for v in args.eval.split(",") if v.strip()]
        if not sizes or min(sizes) < 1:
            parser.error(f"--eval must list batch sizes >= 1, got {args.eval!r}")
        lines = [eval_seconds(m, sizes, repeats=args.repeats, device=args.device, seed=args.seed) for m in models]
        if args.out:
            _write_out(args.out, argv, args.device, lines)
        for line in lines:
            print(json.dumps(line), flush=True)
        return 0
    if args.throughput:
        records = throughput_records(
            models, labels or ["sgd", "sam"], batch=args.batch, repeats=args.repeats, warmup=args.warmup,
            device=args.device, seed=args.seed, compile=args.compile,
        )
        for rec in records:
            head = f"== {rec['method']} on {rec['model']}, {rec['device']}, batch {rec['batch']} =="
            print(f"{head}\n{rec['table']}\n", flush=True)
        lines = [{k: v for k, v in rec.items() if k != "table"} for rec in records]
        if args.out:
            _write_out(args.out, argv, args.device, lines)
        for line in lines:
            print(json.dumps(line), flush=True)
        return 0
    if labels is not None and "sgd" not in labels:
        labels = ["sgd", *labels]  # the ratios need SGD
    built, skipped = build_methods(labels, args.batch)
    if args.flops:
        counted = []
        for key in models:
            rec = count_flops(key, built, batch=args.batch, seed=args.seed)
            rec["skipped"] = {**skipped, **rec["skipped"]}
            print(f"== {key}, batch {args.batch}: GFLOPs per step (x SGD) ==")
            for label, f in rec["flops_per_step"].items():
                print(f"{label:<18} {f / 1e9:>10.3f} {rec['flop_ratio_to_sgd'].get(label, float('nan')):>7.2f}")
            for label, why in rec["skipped"].items():
                print(f"{label:<18} skipped: {why}")
            print(flush=True)
            counted.append(rec)
        if args.out:
            _write_out(args.out, argv, "cpu", counted)
        for rec in counted:
            print(json.dumps(rec), flush=True)
        return 0
    records = []
    for key in models:
        rec = bench_model(
            key, built, batch=args.batch, repeats=args.repeats, warmup=args.warmup, device=args.device, seed=args.seed
        )
        rec["skipped"] = {**skipped, **rec["skipped"]}
        print(_table(rec), flush=True)
        print(flush=True)
        records.append(rec)
    lines = [
        {k: rec[k] for k in ("device", "model", "batch", "ms_per_step", "ratio_to_sgd", "peak_mb", "targets",
                             "skipped")}
        for rec in records
    ]
    if args.out:
        _write_out(args.out, argv, args.device, lines)
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

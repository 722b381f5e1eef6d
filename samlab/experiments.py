"""Named experiments × profiles, and the runner that writes result files with provenance.

Taught in notebooks 03–07, which load the committed result of the active profile and
re-run on request. From a shell::

    python -m samlab.experiments list
    python -m samlab.experiments run memorisation --profile cpu
    python -m samlab.experiments table            # markdown table of every result file

A run writes ``data/results/<profile>/<name>.json`` with the configuration, samlab
version and git commit, hardware, and for every (method, seed) the full per-epoch
history, best and final test accuracy, seconds per epoch and realised noise rate. The
file is rewritten after every finished run, and every run checkpoints each epoch, so an
interrupted ``run`` continues where it stopped when called again.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from samlab import data as data_mod
from samlab import hardware, methods, models, profiles, provenance, train

__all__ = [
    "EXPERIMENTS",
    "REGULARISERS",
    "README_MARKERS",
    "committed_table",
    "confusion",
    "confusion_counts",
    "update_readme",
    "Experiment",
    "experiment",
    "get",
    "histories",
    "load_bench",
    "load_or_run",
    "load_result",
    "main",
    "result_path",
    "run",
    "summarise",
    "table_markdown",
]


@dataclass(frozen=True)
class Experiment:
    """Everything needed to reproduce a comparison of methods on one noisy dataset."""

    name: str
    description: str
    dataset: str
    noise: str
    rate: float
    model: str
    #: label -> method config, e.g. {"SAM": {"method": "sam", "rho": 0.05}}; an optional
    #: "fit" entry overrides FitConfig fields for that label only, e.g.
    #: {"WD×10": {"method": "sgd", "fit": {"weight_decay": 5e-3}}}
    methods: dict[str, dict[str, Any]]
    fit: dict[str, Any]  #: FitConfig fields (epochs, batch_size, lr, ...)
    seeds: tuple[int, ...] = (0,)
    noise_seed: int = 0
    model_options: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: name -> function(profile) -> Experiment
EXPERIMENTS: dict[str, Callable[[str], Experiment]] = {}


def experiment(fn: Callable[[str], Experiment]) -> Callable[[str], Experiment]:
    """Decorator registering an experiment builder under its function name (``_`` → ``-``)."""
    EXPERIMENTS[fn.__name__.replace("_", "-")] = fn
    return fn


def get(name: str, profile: str | None = None) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {tuple(sorted(EXPERIMENTS))}, got {name!r}")
    profile = profile or profiles.active()
    if profile not in profiles.PROFILES:
        raise ValueError(f"profile must be one of {profiles.PROFILES}, got {profile!r}")
    return EXPERIMENTS[name](profile)


# --------------------------------------------------------------------------- experiments


@experiment
def memorisation(profile: str) -> Experiment:
    """Notebook 00's run as an experiment: SGD memorising 40% symmetric noise."""
    return Experiment(
        name="memorisation",
        description="SGD on 40% symmetric-flip noise: early learning, then memorisation",
        dataset=profiles.pick(smoke="digits", cpu="cifar10-mini", profile=profile),
        noise="symmetric-flip",
        rate=0.4,
        model=profiles.pick(smoke="mlp", cpu="small-cnn", profile=profile),
        methods={"SGD": {"method": "sgd"}},
        fit=profiles.pick(
            smoke={"epochs": 60, "lr": 0.1, "batch_size": 128},
            cpu={"epochs": 30, "lr": 0.05, "batch_size": 128},
            gpu={"epochs": 60, "lr": 0.05, "batch_size": 128},
            profile=profile,
        ),
    )


def _logit_jacobian(profile: str, rate: float) -> Experiment:
    """Notebook 03: SGD vs SAM vs 1-SAM vs per-example L-SAM and J-SAM (Baek et al.'s ablation).

    GroupNorm CNN, so per-example perturbations are well defined. Per-example methods use
    ρ = 0.01 (batch SAM's usual 0.05 stops a per-example method from learning: see the
    calibration notes of cifar10-mini).
    """
    pick = lambda **kw: profiles.pick(profile=profile, **kw)  # noqa: E731
    return Experiment(
        name=f"logit-jacobian-{round(100 * rate)}",
        description=f"logit vs Jacobian ablation, {rate:.0%} symmetric-flip noise",
        dataset=pick(smoke="digits", cpu="cifar10-mini"),
        noise="symmetric-flip",
        rate=rate,
        model=pick(smoke="mlp", cpu="small-cnn"),
        model_options=pick(smoke={"hidden": 64, "depth": 1}, cpu={"norm": "gn"}),
        methods={
            "SGD": {"method": "sgd"},
            "SAM": {"method": "sam", "rho": 0.05},
            "1-SAM": {"method": "sam", "rho": 0.01, "m": 1},
            "L-SAM": {"method": "lsam", "rho": 0.01, "per_example": True},
            "J-SAM": {"method": "jsam", "rho": 0.01, "per_example": True},
        },
        fit=pick(
            smoke={"epochs": 12, "lr": 0.1, "batch_size": 128},
            cpu={"epochs": 40, "lr": 0.05, "batch_size": 128},
        ),
    )


@experiment
def logit_jacobian_30(profile: str) -> Experiment:
    return _logit_jacobian(profile, 0.3)


@experiment
def logit_jacobian_50(profile: str) -> Experiment:
    return _logit_jacobian(profile, 0.5)


@experiment
def logit_jacobian_30_long(profile: str) -> Experiment:
    """Notebook 03's tuning run: SGD, SAM and J-SAM trained twice as long.

    At 40 epochs batch SAM's test accuracy was still rising (the calibration notes of
    cifar10-mini warn that SAM-like methods peak later than SGD), so its *best* accuracy
    was not yet measured. Same data, noise, model and learning rate; 80 epochs.
    """
    base = _logit_jacobian(profile, 0.3)
    return dataclasses.replace(
        base,
        name="logit-jacobian-30-long",
        description="logit vs Jacobian ablation, 30% noise, twice the epochs (SGD, SAM, J-SAM)",
        methods={k: v for k, v in base.methods.items() if k in ("SGD", "SAM", "J-SAM")},
        fit={**base.fit, "epochs": 2 * base.fit["epochs"]},
    )


@experiment
def logit_jacobian_mnist_50(profile: str) -> Experiment:
    """Notebook 03's second dataset: the same five methods on mnist-mini, 50% noise.

    MNIST is easy enough that 30% noise barely dents a small network, so the rate is 50%.
    The model is a one-hidden-layer ReLU MLP (128 units: its hidden activations are the
    "features"), the smallest network that memorises the noisy labels here (SGD's test
    accuracy falls from about 86% after three epochs as it fits them), and it keeps the
    vectorised per-example methods affordable on a CPU. 30 epochs; everything else (ρ,
    learning rate, batch size, seeds) as on cifar10-mini.
    """
    base = _logit_jacobian(profile, 0.5)
    pick = lambda **kw: profiles.pick(profile=profile, **kw)  # noqa: E731
    return dataclasses.replace(
        base,
        name="logit-jacobian-mnist-50",
        description="logit vs Jacobian ablation on mnist-mini, 50% symmetric-flip noise, one-hidden-layer MLP",
        dataset=pick(smoke=base.dataset, cpu="mnist-mini"),
        model="mlp",
        model_options=pick(smoke=base.model_options, cpu={"hidden": 128, "depth": 1}),
        fit=pick(smoke=base.fit, cpu={**base.fit, "epochs": 30}),
    )


#: Notebook 05's regularisers: label -> method config (see samlab.methods.regsgd).
REGULARISERS: dict[str, dict[str, Any]] = {
    "WD×10": {"method": "sgd", "fit": {"weight_decay": 5e-3}},
    "reg W 1e-3": {"method": "regsgd", "gamma_w": 1e-3, "gamma_a": 0.0},
    "reg W 1e-2": {"method": "regsgd", "gamma_w": 1e-2, "gamma_a": 0.0},
    "reg A 1e-3": {"method": "regsgd", "gamma_w": 0.0, "gamma_a": 1e-3},
    "reg A 1e-2": {"method": "regsgd", "gamma_w": 0.0, "gamma_a": 1e-2},
    "reg W+A 3e-3": {"method": "regsgd", "gamma_w": 3e-3, "gamma_a": 3e-3},
    "reg weighted": {"method": "regsgd", "gamma_w": 0.5, "gamma_a": 0.5, "weighted": True, "rho": 0.05},
}


@experiment
def cheap_regularisers_30(profile: str) -> Experiment:
    """Notebook 05: SGD-cost regularisers against SGD and SAM on notebook 03's setting.

    Weight decay alone (10× the default), the last-layer weight-norm penalty γ_w, the
    feature-norm penalty γ_a (each at two strengths), both together, and the per-example
    weighted form of the two-layer derivation. Early stopping needs no run of its own: it
    is read off SGD's history. Three seeds (``cpu``, ``gpu``), one under ``smoke``.
    """
    base = _logit_jacobian(profile, 0.3)
    return dataclasses.replace(
        base,
        name="cheap-regularisers-30",
        description="SGD-cost regularisers vs SGD and SAM, 30% symmetric-flip noise",
        methods={"SGD": base.methods["SGD"], "SAM": base.methods["SAM"], **REGULARISERS},
        seeds=profiles.pick(profile=profile, smoke=(0,), cpu=(0, 1, 2), gpu=(0, 1, 2)),
    )


@experiment
def resnet18_cifar10_30(profile: str) -> Experiment:
    """Notebook 04, the GPU experiment: ResNet-18 on CIFAR-10 with 30% symmetric-flip noise.

    Baek et al.'s headline setting (their number: SAM's best test accuracy 17 points above
    SGD's). ``gpu``: full CIFAR-10, ResNet-18 (CIFAR stem), batch 128, lr 0.01, weight
    decay 5e-4, 200 epochs, cosine schedule, crop+flip augmentation (the setup in
    SCIENCE.md, marked unverified there), trained through the fast path of
    :mod:`samlab.fast` (uint8 images on the device, channels_last; bf16 autocast comes with
    CUDA). ``cpu``: ``cifar10-mini`` (the paper's 10% point), a ResNet-18 of width 16,
    15 epochs. ``smoke``: digits as 1×8×8 images, a ResNet-18 of width 4, 8 epochs, no
    augmentation (a 4-pixel crop of an 8×8 digit destroys it), still through the fast path
    so that CI runs it end to end on the CPU.

    Methods: SGD, SAM (ρ = 0.05), 1-SAM and per-example J-SAM (ρ = 0.01, Baek et al.'s ρ)
    and regularised SGD (γ_w = γ_a = 3e-3; coefficients unverified, see notebook 05).

    GroupNorm (``norm="gn"``), not BatchNorm, in every profile: with BatchNorm samlab's
    per-example gradient holds the batch statistics fixed and so drops the gradient through
    them; even at ρ = 0 it is then not SGD's gradient and trains far worse (measured on
    the smoke setting: SGD 0.91 test accuracy after 6 epochs, per-example ρ = 0 J-SAM 0.37
    and 1-SAM 0.27), which would confound 1-SAM and J-SAM with SGD. With GroupNorm each
    example is normalised on its own and per-example gradients are exact. On the GPU the
    per-example methods process 64 examples at a time (``chunk_size``) to bound memory.
    """
    pick = lambda **kw: profiles.pick(profile=profile, **kw)  # noqa: E731
    chunk = pick(smoke=None, cpu=None, gpu=64)
    fast_path = {"image_storage": "uint8", "memory_format": "channels_last"}
    return Experiment(
        name="resnet18-cifar10-30",
        description="ResNet-18 (GroupNorm), 30% symmetric-flip noise: SGD, SAM, 1-SAM, J-SAM, regularised SGD",
        dataset=pick(smoke="digits", cpu="cifar10-mini", gpu="cifar10"),
        noise="symmetric-flip",
        rate=0.3,
        model="resnet18",
        model_options=pick(smoke={"width": 4, "norm": "gn"}, cpu={"width": 16, "norm": "gn"}, gpu={"norm": "gn"}),
        data_options=pick(smoke={"images": True}, cpu={}, gpu={}),
        methods={
            "SGD": {"method": "sgd"},
            "SAM": {"method": "sam", "rho": 0.05},
            "1-SAM": {"method": "sam", "rho": 0.01, "m": 1, "chunk_size": chunk},
            "J-SAM": {"method": "jsam", "rho": 0.01, "per_example": True, "chunk_size": chunk},
            "reg SGD": {"method": "regsgd", "gamma_w": 3e-3, "gamma_a": 3e-3},
        },
        fit=pick(
            smoke={"epochs": 8, "lr": 0.05, "batch_size": 128, "schedule": "cosine", "augment": False, **fast_path},
            cpu={"epochs": 15, "lr": 0.05, "batch_size": 128, "schedule": "cosine", "augment": True},
            gpu={"epochs": 200, "lr": 0.01, "batch_size": 128, "schedule": "cosine", "augment": True, **fast_path},
        ),
    )


@experiment
def resnet18_cifar10_mini_30(profile: str) -> Experiment:
    """Notebook 04 on one GPU's budget: Baek et al.'s 10% point of the headline setting.

    ``gpu``: the ``gpu`` profile of :func:`resnet18_cifar10_30` (full-width GroupNorm
    ResNet-18, batch 128, lr 0.01, 200 epochs, cosine schedule, crop+flip, the fast path)
    on ``cifar10-mini`` instead of full CIFAR-10: the first 1,000 images of each training
    batch, 10% of the training set, the smallest of the three sizes the paper trains on.
    An epoch is 39 steps, so SGD's 200 epochs take about 2 minutes of steps on an H100, and
    1-SAM and J-SAM (about 21× SGD's step there) about 40 minutes each: some 1.4 hours a
    seed (:func:`samlab.bench.training_hours` on ``data/results/gpu/bench.json``, notebook
    04). Three seeds. ``cpu`` and ``smoke`` are those of
    :func:`resnet18_cifar10_30`, whose ``cpu`` profile already trains on cifar10-mini.
    """
    base = resnet18_cifar10_30(profile)
    name = "resnet18-cifar10-mini-30"
    if profile != "gpu":
        return dataclasses.replace(base, name=name)
    return dataclasses.replace(
        base,
        name=name,
        description="ResNet-18 (GroupNorm) on cifar10-mini (Baek et al.'s 10% point), 30% symmetric-flip noise, the gpu protocol",
        dataset="cifar10-mini",
        seeds=(0, 1, 2),
    )


def _structured(profile: str, rate: float, seeds: tuple[int, ...]) -> Experiment:
    """Notebook 07: class-conditional (asymmetric) noise with the standard CIFAR-10 mapping.

    Notebook 03's setting with the noise kind changed: SGD, SAM, per-example J-SAM, the
    regulariser of notebook 05 (last-layer weight and feature norms) and SANER over SAM.
    ``seeds`` apply under ``cpu`` and ``gpu``; ``smoke`` always has one seed.
    """
    base = _logit_jacobian(profile, rate)
    return dataclasses.replace(
        base,
        name=f"asymmetric-{round(100 * rate)}",
        description=f"structured noise: asymmetric (class-conditional) {rate:.0%}",
        noise="asymmetric",
        methods={
            "SGD": base.methods["SGD"],
            "SAM": base.methods["SAM"],
            "J-SAM": base.methods["J-SAM"],
            "reg W+A 3e-3": REGULARISERS["reg W+A 3e-3"],
            "SANER(SAM)": {"method": "saner", "inner": {"method": "sam", "rho": 0.05}, "alpha": 0.5, "k": 20},
        },
        seeds=profiles.pick(profile=profile, smoke=(0,), cpu=seeds, gpu=seeds),
    )


@experiment
def asymmetric_20(profile: str) -> Experiment:
    return _structured(profile, 0.2, seeds=(0, 1, 2))


@experiment
def asymmetric_40(profile: str) -> Experiment:
    return _structured(profile, 0.4, seeds=(0, 1, 2))


def confusion_counts(y_true: torch.Tensor, y_other: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Counts C[i][j] of examples with ``y_true == i`` and ``y_other == j``."""
    if y_true.shape != y_other.shape:
        raise ValueError(f"y_true and y_other must have the same shape, got {tuple(y_true.shape)} and {tuple(y_other.shape)}")
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    counts.index_put_((y_true.cpu().long(), y_other.cpu().long()), torch.ones(len(y_true), dtype=torch.int64), accumulate=True)
    return counts.tolist()


@torch.no_grad()
def confusion(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, batch_size: int = 2048) -> list[list[int]]:
    """Counts C[i][j] of examples of class ``i`` (rows: the labels ``y``) predicted as ``j``."""
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size])
        preds.append(out.argmax(-1) if out.ndim == 2 and out.shape[-1] > 1 else (out.reshape(-1) > 0).long())
    model.train(was_training)
    return confusion_counts(y, torch.cat(preds), num_classes)


def _beyond_sam(profile: str, rate: float) -> Experiment:
    """Notebook 06: newer SAM variants (F-SAM, OBF, SANER) against SGD and SAM on notebook 03's setting.

    Same data, noise, model and training as ``logit-jacobian-*``. Every perturbation has
    SAM's radius where the paper leaves room (F-SAM ρ = 0.05, not its 0.1–0.2, so that only
    the direction differs from SAM); F-SAM σ = 1, λ = 0.95 (its defaults); OBF with samlab's
    defaults (the paper's ResNet values: ρ = 0.04, γ = 1e-12, chunks of 64); SANER α = 0.5
    reached after half the epochs (k = 20 of 40 on the CPU; the paper's k = 50 is for 200
    epochs) over SAM and over F-SAM with their ρ. Three seeds (one under ``smoke``): the
    differences between these methods are expected to be small.
    """
    base = _logit_jacobian(profile, rate)
    k = base.fit["epochs"] // 2
    fsam = {"method": "fsam", "rho": 0.05, "sigma": 1.0, "lam": 0.95}
    sam = {"method": "sam", "rho": 0.05}
    return dataclasses.replace(
        base,
        name=f"beyond-sam-{round(100 * rate)}",
        description=f"beyond SAM: F-SAM, OBF, SANER vs SGD and SAM, {rate:.0%} symmetric-flip noise",
        methods={
            "SGD": {"method": "sgd"},
            "SAM": sam,
            "F-SAM": fsam,
            "OBF": {"method": "obf", "rho": 0.04, "gamma": 1e-12, "m": 64},
            "SANER(SAM)": {"method": "saner", "inner": sam, "alpha": 0.5, "k": k},
            "SANER(F-SAM)": {"method": "saner", "inner": fsam, "alpha": 0.5, "k": k},
        },
        seeds=profiles.pick(smoke=(0,), cpu=(0, 1, 2), profile=profile),
    )


@experiment
def beyond_sam_30(profile: str) -> Experiment:
    return _beyond_sam(profile, 0.3)


@experiment
def beyond_sam_50(profile: str) -> Experiment:
    return _beyond_sam(profile, 0.5)


# --------------------------------------------------------------------------- running


def result_path(name: str, profile: str, root: Path | None = None) -> Path:
    root = Path(root) if root is not None else data_mod.data_root() / "results"
    return root / profile / f"{name}.json"


def _checkpoint_path(exp: Experiment, profile: str, label: str, seed: int, root: Path | None) -> Path:
    root = Path(root) if root is not None else data_mod.data_root() / "checkpoints"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return root / profile / exp.name / f"{safe}-seed{seed}.ckpt"


def _finite(obj: Any) -> Any:
    """NaN/inf -> None so result files are strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_finite(result), indent=1))
    tmp.replace(path)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path.lock`` (several processes may share one result file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no locking, one process per file
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _finished(path: Path, config: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """Runs already in the result file at ``path``, if it was written for ``config`` up to its seeds.

    A run depends on its own seed only (model initialisation, batch order; the noise has its
    own ``noise_seed``), so an experiment whose seeds were extended keeps its finished runs,
    and one whose seeds were cut keeps those of the seeds left."""
    if not path.exists():
        return {}
    previous = json.loads(path.read_text())
    now = json.loads(json.dumps(config))
    old = previous.get("config") or {}
    if {k: v for k, v in old.items() if k != "seeds"} != {k: v for k, v in now.items() if k != "seeds"}:
        return {}
    return {(r["method"], r["seed"]): r for r in previous["runs"] if r["seed"] in now["seeds"]}


def run(
    name: str,
    profile: str | None = None,
    *,
    only: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    results_root: Path | None = None,
    checkpoint_root: Path | None = None,
    progress: bool = True,
    save: bool = True,
) -> dict[str, Any]:
    """Train every (method, seed) of experiment ``name`` and return (and save) the result.

    ``only`` restricts training to some method labels and ``seeds`` to some of the
    experiment's seeds. Finished runs found in the result
    file (same configuration) are not re-trained; an interrupted run resumes from its last
    epoch checkpoint. Several processes may run disjoint ``only``/``seeds`` sets of one experiment at
    once: each merges its runs into the file under a lock.
    """
    profile = profile or profiles.active()
    exp = get(name, profile)
    labels = list(exp.methods) if only is None else list(only)
    unknown = [lab for lab in labels if lab not in exp.methods]
    if unknown:
        raise ValueError(f"only must name methods of {name!r}: {tuple(exp.methods)}, got {unknown}")
    wanted_seeds = list(exp.seeds) if seeds is None else list(seeds)
    if not set(wanted_seeds) <= set(exp.seeds):
        raise ValueError(f"seeds must be among the seeds of {name!r}: {tuple(exp.seeds)}, got {tuple(wanted_seeds)}")
    device = torch.device(device) if device is not None else hardware.default_device()
    path = result_path(name, profile, results_root)
    config = exp.config()
    order = [(label, seed) for label in exp.methods for seed in exp.seeds]

    ds = data_mod.load(exp.dataset, noise=exp.noise, rate=exp.rate, noise_seed=exp.noise_seed, device=device, **exp.data_options)
    env = {k: v for k, v in provenance.record(device).items() if k != "profile"}
    result: dict[str, Any] = {
        "experiment": name,
        "description": exp.description,
        "profile": profile,
        "config": config,
        "dataset": ds.describe(),
        "realised_noise_rate": ds.noise.realised_rate if ds.noise else 0.0,
        #: counts N[i][j] of training examples of true class i given observed label j
        "noise_confusion": confusion_counts(ds.y_train_clean, ds.y_train, ds.num_classes),
        **env,
        "command": f"python -m samlab.experiments run {name} --profile {profile}",
        "runs": [],
    }
    mine: dict[tuple[str, int], dict[str, Any]] = {}

    def merged() -> dict[str, Any]:
        runs = {**(_finished(path, config) if save else {}), **mine}
        return {**result, "runs": [runs[key] for key in order if key in runs]}

    # Seed-major, so that an interrupted sweep has every method for its first seeds.
    for seed, label in ((seed, label) for seed in exp.seeds for label in exp.methods):
        if label not in labels or seed not in wanted_seeds or (save and (label, seed) in _finished(path, config)):
            continue
        method_cfg = {k: v for k, v in exp.methods[label].items() if k != "fit"}
        fit_overrides = exp.methods[label].get("fit", {})
        method = methods.get(method_cfg)
        model = models.build(exp.model, ds.input_shape, ds.num_classes, seed=seed, **exp.model_options).to(device)
        ckpt = _checkpoint_path(exp, profile, label, seed, checkpoint_root) if save else None
        t0 = time.perf_counter()
        fit_config = train.FitConfig(
            **{**exp.fit, **fit_overrides, "seed": seed, "checkpoint": str(ckpt) if ckpt else None, "progress": progress}
        )
        history = train.fit(model, method, ds, fit_config)
        mine[(label, seed)] = {
            "method": label,
            "method_config": method.config(),
            "fit_overrides": fit_overrides,
            "seed": seed,
            **history.summary(),
            "wall_seconds": time.perf_counter() - t0,
            "hardware": env["hardware"],
            "git_commit": env["git_commit"],
            "history": history.records,
            #: final model on the test set: C[i][j] = test images of class i predicted as j
            "test_confusion": confusion(model, ds.x_test, ds.y_test, ds.num_classes),
        }
        if save:
            with _locked(path):
                _write(path, merged())
    if not save:
        return merged()
    with _locked(path):
        final = merged()
        _write(path, final)
    return final


def load_result(name: str, profile: str | None = None, root: Path | None = None) -> dict[str, Any] | None:
    """The saved result of ``name`` for ``profile``, or ``None`` if there is none."""
    path = result_path(name, profile or profiles.active(), root)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def load_bench(profile: str | None = None, model: str = "small-cnn-gn", root: Path | None = None) -> dict[str, Any] | None:
    """The committed benchmark record of ``model`` for ``profile`` (``data/results/<profile>/bench.json``,
    written by ``python -m samlab.bench --out``), with the file's provenance; ``None`` if absent."""
    path = result_path("bench", profile or profiles.active(), root)
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    for rec in saved["records"]:
        if rec["model"] == model:
            return {**{k: v for k, v in saved.items() if k != "records"}, **rec}
    return None


def load_or_run(name: str, profile: str | None = None, *, rerun: bool = False, **run_kwargs: Any) -> dict[str, Any]:
    """What a notebook calls: the saved result of ``name`` for ``profile`` if there is one and
    ``rerun`` is false, otherwise a fresh :func:`run` (saved, except under ``smoke``)."""
    profile = profile or profiles.active()
    result = None if rerun else load_result(name, profile)
    if result is None:
        run_kwargs.setdefault("save", profile != "smoke")
        result = run(name, profile, **run_kwargs)
    return result


def histories(result: dict[str, Any], seed: int | None = None) -> dict[str, train.History]:
    """Method label -> History (of ``seed``, default: each method's first seed)."""
    out: dict[str, train.History] = {}
    for r in result["runs"]:
        if (seed is None and r["method"] not in out) or r["seed"] == seed:
            records = [{k: (float("nan") if v is None else v) for k, v in rec.items()} for rec in r["history"]]
            out[r["method"]] = train.History(records=records)
    return out


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: mean and std over seeds of best/final test accuracy, cost vs SGD."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in result["runs"]:
        by.setdefault(r["method"], []).append(r)
    sgd = by.get("SGD")
    sgd_time = statistics.mean(r["seconds_per_epoch"] for r in sgd) if sgd else None
    rows = []
    for label, runs in by.items():
        best = [r["best_test_acc"] for r in runs]
        final = [r["final_test_acc"] for r in runs]
        spe = statistics.mean(r["seconds_per_epoch"] for r in runs)
        rows.append(
            {
                "method": label,
                "seeds": len(runs),
                "best_mean": statistics.mean(best),
                "best_std": statistics.stdev(best) if len(best) > 1 else 0.0,
                "final_mean": statistics.mean(final),
                "final_std": statistics.stdev(final) if len(final) > 1 else 0.0,
                "seconds_per_epoch": spe,
                "cost_vs_sgd": spe / sgd_time if sgd_time else None,
            }
        )
    return rows


def table_markdown(results: Sequence[dict[str, Any]]) -> str:
    """A markdown table of several result files (the README's results table)."""
    lines = [
        "| experiment | profile | data | method | seeds | best test acc | final test acc | s/epoch (× SGD) | hardware |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        data_desc = f"{res['config']['dataset']}, {res['config']['noise']} {res['config']['rate']:.0%} (realised {res['realised_noise_rate']:.1%})"
        for row in summarise(res):
            pm = lambda m, s: f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if row["seeds"] > 1 else "")  # noqa: E731
            cost = f"{row['seconds_per_epoch']:.2f}" + (f" ({row['cost_vs_sgd']:.2f}×)" if row["cost_vs_sgd"] else "")
            lines.append(
                f"| {res['experiment']} | {res['profile']} | {data_desc} | {row['method']} | {row['seeds']} | "
                f"{pm(row['best_mean'], row['best_std'])} | {pm(row['final_mean'], row['final_std'])} | {cost} | "
                f"{res['hardware']}, {res['date'][:10]}, {res['git_commit']} |"
            )
    return "\n".join(lines)


def _distinct(names: Sequence[str], profile: str) -> tuple[list[str], dict[str, str]]:
    """``run all``: the names whose ``profile`` configuration differs from every earlier one's, and for each
    name left out, the earlier experiment that trains the same runs (e.g. ``resnet18-cifar10-mini-30`` outside
    ``gpu`` is ``resnet18-cifar10-30``)."""
    keep: list[str] = []
    same: dict[str, str] = {}
    configs: dict[str, Experiment] = {}
    for name in names:
        cfg = dataclasses.replace(get(name, profile), name="")
        twin = next((other for other, c in configs.items() if c == cfg), None)
        if twin is None:
            configs[name] = cfg
            keep.append(name)
        else:
            same[name] = twin
    return keep, same


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samlab.experiments", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list experiments")
    p_run = sub.add_parser("run", help="run an experiment (resumes if interrupted)")
    p_run.add_argument("name", help="experiment name, or 'all'")
    p_run.add_argument("--profile", default=None, choices=profiles.PROFILES)
    p_run.add_argument("--only", default=None, help="comma-separated method labels")
    p_run.add_argument("--seeds", default=None, help="comma-separated seeds (a subset of the experiment's)")
    p_run.add_argument("--device", default=None)
    p_table = sub.add_parser("table", help="markdown table of the saved results")
    p_table.add_argument("--profile", default=None, choices=profiles.PROFILES)
    p_table.add_argument("--readme", default=None, help="rewrite the table between the results markers of this file")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for name, fn in sorted(EXPERIMENTS.items()):
            print(f"{name:28s} {fn('cpu').description}")
        return 0
    if args.cmd == "run":
        names = sorted(EXPERIMENTS) if args.name == "all" else [args.name]
        if args.name == "all":
            names, same = _distinct(names, args.profile or profiles.active())
            for name, twin in same.items():
                print(f"{name}: skipped, its runs at this profile are those of {twin}")
        for name in names:
            res = run(
                name,
                args.profile,
                only=args.only.split(",") if args.only else None,
                seeds=[int(v) for v in args.seeds.split(",")] if args.seeds else None,
                device=args.device,
            )
            print(f"{name}: {result_path(name, res['profile'])}")
            for row in summarise(res):
                print(f"  {row['method']:16s} best {row['best_mean']:.3f}  final {row['final_mean']:.3f}  {row['seconds_per_epoch']:.2f} s/epoch")
        return 0
    table = committed_table(args.profile)
    if args.readme:
        update_readme(Path(args.readme), table)
    print(table)
    return 0


README_MARKERS = ("<!-- results-table:start -->", "<!-- results-table:end -->")


def committed_table(profile: str | None = None, root: Path | None = None) -> str:
    """The markdown table of every saved non-smoke result (or of one profile)."""
    found = []
    for prof in [profile] if profile else [p for p in profiles.PROFILES if p != "smoke"]:
        for name in sorted(EXPERIMENTS):
            res = load_result(name, prof, root)
            if res is not None:
                found.append(res)
    return table_markdown(found) if found else "_No result files yet._"


def update_readme(path: Path, table: str, markers: tuple[str, str] = README_MARKERS) -> None:
    """Replace the text between the ``markers`` (default: the results markers) of ``path`` by ``table``."""
    text = path.read_text()
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"{path} has no results markers {start} ... {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{table}\n{end}{tail}")


if __name__ == "__main__":
    raise SystemExit(main())

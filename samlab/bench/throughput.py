"""Images per second of the training data path, and seconds of the per-epoch evaluation.

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
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from samlab import data as data_mod
from samlab import fast
from samlab.bench.timing import INPUT_SHAPE, INPUT_SHAPES, MODELS, NUM_CLASSES, _sync, _where, build_methods
from samlab.models import build
from samlab.train import FitConfig, epoch_batches, evaluate

__all__ = ["eval_seconds", "throughput", "throughput_records", "throughput_table"]

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

"""Measurements taken during training: probes that :func:`samlab.train.fit` calls through ``on_epoch``.

Taught in notebook 01, which follows the clean/noisy ratio of per-example gradient norms
over full-batch training of a linear model (:func:`run_linear_grid`). A probe is a
function of the model returning a dict of numbers; :func:`scheduled` turns it into an
``on_epoch`` callback that measures every ``k`` epochs and at the last one, and ``fit``
merges what it returns into those epochs' records. :func:`probe_series`,
:func:`decay_step` and :func:`early_window` read the measurements back from a History.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from samlab import methods as _methods
from samlab.data import Dataset
from samlab.methods.base import Method
from samlab.models import LinearModel
from samlab.theory import clean_noisy_ratio, linear_grad_norms
from samlab.train import History, fit

__all__ = ["decay_step", "early_window", "linear_ratio_probe", "probe_series", "run_linear_grid", "scheduled"]


def scheduled(
    probe: Callable[[nn.Module], Mapping[str, float]], *, every: int = 1, last: int | None = None
) -> Callable[[int, nn.Module], Mapping[str, float] | None]:
    """An ``on_epoch`` callback for :func:`samlab.train.fit` that runs ``probe(model)`` at epochs 0,
    ``every``, 2·``every``, ... and at epoch ``last`` (the run's last epoch, if given)."""
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every must be an integer >= 1, got every={every!r}")

    def on_epoch(epoch: int, model: nn.Module) -> Mapping[str, float] | None:
        return probe(model) if epoch % every == 0 or epoch == last else None

    return on_epoch


def linear_ratio_probe(data: Dataset, rho: float = 0.0, per_example: bool = True) -> Callable[[nn.Module], dict[str, float]]:
    """A probe of a :class:`~samlab.models.LinearModel` (one logit, no bias), for :func:`scheduled`.

    Returns ``grad_ratio``: the clean/noisy ratio of the per-example gradients the method
    descends along (GD for ``rho=0``, else 1-SAM or batch SAM), and ``grad_ratio_at_w``:
    the same ratio of the plain gradients σ(−m_i)‖x_i‖ at w.
    """
    x, y, noisy = data.x_train, data.y_train, data.is_noisy

    def probe(model: nn.Module) -> dict[str, float]:
        if not isinstance(model, LinearModel) or model.head.bias is not None or model.head.out_features != 1:
            raise ValueError("linear_ratio_probe needs a LinearModel with one logit and no bias")
        w = model.head.weight.detach().reshape(-1).to(x.dtype)
        return {
            "grad_ratio": clean_noisy_ratio(linear_grad_norms(w, x, y, rho, per_example), noisy),
            "grad_ratio_at_w": clean_noisy_ratio(linear_grad_norms(w, x, y), noisy),
        }

    return probe


def probe_series(history: History, key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key`` over the records that hold it (the probed epochs)."""
    pts = [(r["epoch"], r[key]) for r in history.records if key in r]
    if not pts:
        raise KeyError(f"no record of this history holds {key!r}")
    return [p[0] for p in pts], [p[1] for p in pts]


def decay_step(history: History, key: str = "grad_ratio", threshold: float = 0.75) -> float:
    """First probed epoch at which ``key`` falls below ``threshold`` (an int; ``math.inf`` if never)."""
    for e, v in zip(*probe_series(history, key)):
        if v < threshold:
            return int(e)
    return math.inf


def early_window(history: History, within: float = 0.01) -> int:
    """How many epochs the test accuracy stays within ``within`` of its best (counted from the best)."""
    acc = history.column("test_acc")
    best = max(range(len(acc)), key=acc.__getitem__)
    n = 0
    for a in acc[best:]:
        if a < acc[best] - within:
            break
        n += 1
    return n


def run_linear_grid(
    data: Dataset,
    rhos: Sequence[float],
    *,
    epochs: int,
    lr: float,
    every: int = 1,
    batch_sam: bool = True,
    seed: int = 0,
) -> dict[str, History]:
    """Notebook 01's experiment: full-batch GD, 1-SAM and (optionally) batch SAM at each ρ.

    A :class:`~samlab.models.LinearModel` (one logit, no bias) from the same initial
    weights for every run, plain GD as the base optimiser (momentum 0, no weight decay),
    trained by :func:`samlab.train.fit` with :func:`linear_ratio_probe` every ``every`` epochs
    (:func:`scheduled`). Keys: ``"GD"``,
    ``"1-SAM ρ=…"``, ``"SAM ρ=… (batch)"``. Each History's ``info["final_weights"]`` holds
    the trained weight vector (a list of floats).
    """
    runs: list[tuple[str, Method, float, bool]] = [("GD", _methods.get("sgd"), 0.0, True)]
    for rho in rhos:
        runs.append((f"1-SAM ρ={rho:g}", _methods.get("sam", rho=rho, m=1), rho, True))
    if batch_sam:
        for rho in rhos:
            runs.append((f"SAM ρ={rho:g} (batch)", _methods.get("sam", rho=rho), rho, False))
    out: dict[str, History] = {}
    for label, method, rho, per_example in runs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LinearModel(int(np.prod(data.input_shape)), 1)
        model = model.to(data.x_train.device)
        h = fit(
            model, method, data, epochs=epochs, lr=lr, batch_size=None, momentum=0.0, weight_decay=0.0, seed=seed,
            progress=False, on_epoch=scheduled(linear_ratio_probe(data, rho, per_example), every=every, last=epochs),
        )
        h.info["final_weights"] = model.head.weight.detach().reshape(-1).cpu().tolist()
        out[label] = h
    return out

"""Measurements of a model's gradients that no training step needs: SANER's ratio groups.

Taught in notebook 06 (beyond SAM). Luong et al. (SANER) compare a SAM-like gradient g̃
with SGD's gradient g at the same weights, element by element: with r = g̃/(g + 1e-8)
(the constant of :mod:`samlab.methods.saner`) every parameter entry is

* **amplified** (r ≥ 1): the SAM-like method pushes further than SGD;
* **shrunk** (0 < r < 1): same sign, down-weighted — the entries SANER multiplies by α;
* **flipped** (r ≤ 0): the sign is reversed (or the entry zeroed).

:func:`ratio_groups` turns two gradients into the three fractions; :func:`gradient_groups`
measures them on one batch without changing the model; :func:`clean_noisy_groups` on one
batch of clean and one of mislabelled examples; :func:`groups_during_training` follows both
over a training run (through the ``on_epoch`` probe of :func:`samlab.train.fit`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from samlab.data import Dataset
from samlab.methods.base import Method, RngReplay, first_pass, perturbed, trainable
from samlab.methods.saner import RATIO_EPS
from samlab.train import FitConfig, History, fit

__all__ = ["GROUPS", "GroupTrace", "clean_noisy_groups", "gradient_groups", "groups_during_training", "ratio_groups"]

#: The three groups, in the order every result lists them.
GROUPS = ("amplified", "shrunk", "flipped")

Grads = torch.Tensor | Sequence[torch.Tensor | None]


def _as_list(grads: Grads) -> list[torch.Tensor | None]:
    return [grads] if isinstance(grads, torch.Tensor) else list(grads)


def ratio_groups(sgd_grads: Grads, sam_grads: Grads) -> dict[str, float]:
    """Fractions of entries with r = g̃/(g + 1e-8) ≥ 1 (amplified), in (0, 1) (shrunk), ≤ 0 (flipped).

    ``sgd_grads`` (g) and ``sam_grads`` (g̃): one tensor each, or lists with one tensor per
    parameter (pairs with a ``None`` are skipped). The fractions are over all entries and
    sum to 1; NaN when there are none. The same rule as :class:`samlab.methods.saner.SANER`.
    """
    gs, ts = _as_list(sgd_grads), _as_list(sam_grads)
    if len(gs) != len(ts):
        raise ValueError(f"sgd_grads and sam_grads must have as many tensors, got {len(gs)} and {len(ts)}")
    amplified = shrunk = total = 0
    for g, t in zip(gs, ts):
        if g is None or t is None:
            continue
        if g.shape != t.shape:
            raise ValueError(f"gradients must have the same shapes, got {tuple(g.shape)} and {tuple(t.shape)}")
        r = t / (g + RATIO_EPS)
        amplified += int((r >= 1).sum())
        shrunk += int(((r > 0) & (r < 1)).sum())
        total += r.numel()
    if total == 0:
        return dict.fromkeys(GROUPS, float("nan"))
    return {"amplified": amplified / total, "shrunk": shrunk / total, "flipped": (total - amplified - shrunk) / total}


def gradient_groups(model: nn.Module, method: Method, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """:func:`ratio_groups` of SGD's batch gradient and ``method``'s at the current weights.

    ``method`` is the SAM-like method whose gradient g̃ is compared (SAM, F-SAM, OBF, ...;
    not SANER, whose output is already re-weighted). Both are computed in training mode,
    with the same dropout mask; afterwards the weights, buffers, ``.grad``, mode, the RNG
    state and ``method``'s own state (e.g. F-SAM's EMA) are as they were.
    """
    params = trainable(model)
    grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    was_training = model.training
    state = method.state_dict()
    after = RngReplay(x.device)
    try:
        # perturbed(..., no ε) saves the weights and buffers and restores them exactly on exit
        with perturbed(model, [None] * len(params)):
            model.train()
            rng = RngReplay(x.device)
            first_pass(model, x, y)
            sgd = [None if p.grad is None else p.grad.detach().clone() for p in params]
            rng.replay()
            method.gradient(model, x, y)
            return ratio_groups(sgd, [p.grad for p in params])
    finally:
        for p, g in zip(model.parameters(), grads):
            p.grad = g
        model.train(was_training)
        method.load_state_dict(state)
        after.replay()


def _batch(indices: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    return indices[torch.randperm(len(indices), generator=gen)[:size]]


def clean_noisy_groups(
    model: nn.Module, method: Method, data: Dataset, batch_size: int = 128, seed: int = 0
) -> dict[str, dict[str, float]]:
    """:func:`gradient_groups` on a batch of clean examples and on a batch of mislabelled ones.

    Each batch has ``batch_size`` examples (or all of its group, if fewer), drawn without
    replacement from ``seed`` (the same seed draws the same batches). Returns
    ``{"clean": groups, "noisy": groups}``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got batch_size={batch_size}")
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, dict[str, float]] = {}
    mask = data.is_noisy.cpu()
    for name, group in (("clean", ~mask), ("noisy", mask)):
        idx = torch.nonzero(group).flatten()
        if len(idx) == 0:
            raise ValueError(f"the dataset has no {name} training examples (noise: {data.describe()})")
        batch = _batch(idx, batch_size, gen).to(data.x_train.device)
        out[name] = gradient_groups(model, method, data.x_train[batch], data.y_train[batch])
    return out


@dataclass
class GroupTrace:
    """What :func:`groups_during_training` measured: per probed epoch, clean and noisy fractions."""

    epochs: list[int] = field(default_factory=list)
    clean: dict[str, list[float]] = field(default_factory=lambda: {g: [] for g in GROUPS})
    noisy: dict[str, list[float]] = field(default_factory=lambda: {g: [] for g in GROUPS})
    history: History = field(default_factory=History)

    def at(self, epoch: int) -> dict[str, dict[str, float]]:
        """``{"clean": groups, "noisy": groups}`` at a probed ``epoch``."""
        i = self.epochs.index(epoch)
        return {"clean": {g: self.clean[g][i] for g in GROUPS}, "noisy": {g: self.noisy[g][i] for g in GROUPS}}

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "clean": self.clean, "noisy": self.noisy}


def groups_during_training(
    model: nn.Module,
    method_for_training: Method,
    probe_method: Method,
    data: Dataset,
    config: FitConfig | None = None,
    at_epochs: Iterable[int] | None = None,
    *,
    batch_size: int = 128,
    seed: int = 0,
    **overrides: Any,
) -> GroupTrace:
    """Train with :func:`samlab.train.fit` and measure :func:`clean_noisy_groups` at ``at_epochs``.

    ``method_for_training`` trains the model (SGD, SAM, SANER, ...); ``probe_method`` is the
    SAM-like method whose gradient is compared with SGD's at each probed epoch (a separate
    instance, so that probing never touches the training method's state; its own state is
    restored after every probe). ``at_epochs``: 0-based epochs, 0 = the initial model;
    default every epoch. The probe batches are the same at every epoch (``batch_size``,
    ``seed``). ``overrides`` replace fields of ``config`` as in ``fit``. Probing does not
    change training: the history is the one ``fit`` returns without the probe.
    """
    config = dataclasses.replace(config or FitConfig(), **overrides)
    wanted = set(range(config.epochs + 1)) if at_epochs is None else {int(e) for e in at_epochs}
    bad = sorted(e for e in wanted if not 0 <= e <= config.epochs)
    if bad:
        raise ValueError(f"at_epochs must lie in 0..{config.epochs} (the epochs of the run), got {bad}")
    if probe_method is method_for_training:
        raise ValueError("probe_method must be a separate instance from method_for_training")
    trace = GroupTrace()

    def probe(epoch: int, m: nn.Module) -> None:
        if epoch not in wanted:
            return
        groups = clean_noisy_groups(m, probe_method, data, batch_size=batch_size, seed=seed)
        trace.epochs.append(epoch)
        for g in GROUPS:
            trace.clean[g].append(groups["clean"][g])
            trace.noisy[g].append(groups["noisy"][g])

    trace.history = fit(model, method_for_training, data, config, on_epoch=probe)
    return trace

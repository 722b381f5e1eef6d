"""L-SAM and J-SAM (Baek, Kolter & Raghunathan, ICLR 2024): SAM's logit and Jacobian effects apart.

Taught in notebooks 01–03 (linear: L-SAM ≡ SAM, J-SAM ≡ SGD; two-layer linear: J-SAM is
an exact per-example penalty; deep networks: J-SAM ≈ SAM).

Per example, ∇ℓ = J(w, x)ᵀ s(w) with s = ∂ℓ/∂z (softmax(z) − e_y, or −ỹσ(−ỹz) for a
single logit) and J = ∂z/∂w. SAM evaluates both factors at w + ε:

* L-SAM (logit only):     J(w, x)ᵀ s(w + ε)
* J-SAM (Jacobian only):  J(w + ε, x)ᵀ s(w)

Cheap implementation (no Jacobian is ever formed), for the mean loss over B examples:
J-SAM is the backward at w + ε of Σ_i sg(s_i(w))·z_i(w + ε)/B; L-SAM is the backward at
w of Σ_i sg(s_i(w + ε))·z_i(w)/B. Both cost what SAM costs (two forward and two
backward passes; L-SAM's second forward has no graph).

``per_example=False``: one ε = ρ g/‖g‖ from the batch gradient, as SAM. The whole-batch
passes normalise BatchNorm with the batch's own statistics, as SAM's passes do.
``per_example=True``: ε_i = ρ g_i/‖g_i‖ from each example's own gradient, 1-SAM's ε, with
BatchNorm statistics held fixed (see :mod:`samlab.methods.perexample`), computed by the
engine the ``engine`` field selects, as for 1-SAM: ``"exact"`` (:mod:`samlab.methods.exact`,
no per-example weights), ``"vmap"`` (torch.func) or ``"auto"`` (exact where the model's
layers allow it, the default).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call, grad

from samlab.methods.base import (
    Method,
    RngReplay,
    StepInfo,
    autocast,
    check_chunk_size,
    check_engine,
    check_rho,
    descend_at,
    grad_norm,
)
from samlab.methods.exact import exact_step, select_engine
from samlab.methods.perexample import (
    FunctionalModel,
    add_grads,
    batch_first_pass,
    chunk_logit_grads,
    chunk_logits,
    fixed_statistics,
    logit_grad,
    perturbation,
    perturbed_chunks,
    write_grads,
)
from samlab.methods.registry import register

__all__ = ["JSAM", "LSAM"]

Params = dict[str, torch.Tensor]


def _jsam_second(fm: FunctionalModel, at: Params, xs: torch.Tensor, ys: torch.Tensor, z: torch.Tensor) -> Params:
    """J-SAM, vmap engine: Σ over the group of ∇_w s_i(w)·z_i(w + ε_i)."""
    g = chunk_logit_grads(fm, at, xs, logit_grad(z, ys), batched=True)
    return {k: v.sum(0) for k, v in g.items()}


def _jsam_combine(fm: FunctionalModel, x: torch.Tensor, parts: list[Params], rng: RngReplay) -> Params:
    return {k: v / x.shape[0] for k, v in functools.reduce(add_grads, parts, {}).items()}


def _lsam_second(fm: FunctionalModel, at: Params, xs: torch.Tensor, ys: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """L-SAM, vmap engine: s_i(w + ε_i) for the group (no graph)."""
    return logit_grad(chunk_logits(fm, at, xs, batched=True), ys)


def _lsam_combine(fm: FunctionalModel, x: torch.Tensor, parts: list[torch.Tensor], rng: RngReplay) -> Params:
    s_at = torch.cat(parts)
    s_at = s_at.reshape(x.shape[0], *s_at.shape[2:]) / x.shape[0]
    # Σ_i J_i(w)ᵀ s_i(w + ε_i) in one whole-batch backward: with the statistics fixed,
    # each example's logits depend on that example alone. ``vmap`` with
    # randomness="different" draws the whole-batch dropout mask (checked in the tests),
    # so this pass sees the masks of the two vectorised passes.
    rng.replay()
    return grad(lambda p: (fm.logits(p, x) * s_at).sum())(fm.params)


@dataclass
class _Decomposed(Method):
    """Fields shared by L-SAM and J-SAM: ``rho`` (≥ 0), ``per_example`` (1-SAM's ε_i),
    ``chunk_size`` (per-example form: how many examples are processed at once, to bound
    memory; None = all) and ``engine`` (per-example form: "auto", "exact" or "vmap")."""

    rho: float = 0.05
    per_example: bool = False
    chunk_size: int | None = None
    engine: str = "auto"

    def __post_init__(self) -> None:
        check_rho(self.rho)
        if not isinstance(self.per_example, bool):
            raise ValueError(f"per_example must be True or False, got per_example={self.per_example!r}")
        check_chunk_size(self.chunk_size)
        check_engine(self.engine)

    @property
    def first_pass_is_sgd(self) -> bool:
        """Whole-batch form: the first backward leaves ∇L_B(w) in ``p.grad`` (SANER reads it)."""
        return not self.per_example

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        if not self.per_example:
            rng = RngReplay(x.device)
            first = batch_first_pass(model, x, y, retain_graph=self.retain_first_graph)
            logits, losses, params, grads = first
            norm = grad_norm(grads)
            self._descend(model, x, y, first, perturbation(grads, params, self.rho), rng)
            return StepInfo(logits=logits.detach(), losses=losses, grad_norm=float(norm))
        if select_engine(model, self.engine) == "exact":
            r = exact_step(model, x, y, m=1, rho=self.rho, descent=self.name, chunk_size=self.chunk_size)
            return StepInfo(logits=r.logits, losses=r.losses, grad_norm=r.grad_norm, batch_grad=r.batch_grad)
        rng = RngReplay(x.device)
        with fixed_statistics(model, x) as fm:
            rng.replay()
            second, combine = self._vmap
            first, parts = perturbed_chunks(
                fm, x, y, 1, functools.partial(second, fm), rho=self.rho, chunk_size=self.chunk_size
            )
            write_grads(model, combine(fm, x, parts, rng))
        return StepInfo(logits=first.logits, losses=first.losses, grad_norm=first.grad_norm)

    #: The vmap engine's second pass ``second(fm, at, xs, ys, z)`` per group of examples,
    #: and ``combine(fm, x, parts, rng)``, the gradients from the groups' outputs.
    _vmap: ClassVar[tuple[Callable[..., Any], Callable[..., Params]]]
    #: Whole-batch form: whether the descent reuses the graph of the first pass.
    retain_first_graph: ClassVar[bool] = False

    def _descend(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, first: tuple, eps: list, rng: RngReplay
    ) -> None:
        """Whole-batch form: the descent direction into ``p.grad``, from the first pass's
        ``(logits, losses, params, grads)`` and ε."""
        raise NotImplementedError


@register
@dataclass
class JSAM(_Decomposed):
    """J-SAM: J(w + ε, x)ᵀ s(w) — SAM's Jacobian effect alone (see the module docstring)."""

    name = "jsam"

    _vmap = (_jsam_second, _jsam_combine)

    def _descend(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, first: tuple, eps: list, rng: RngReplay
    ) -> None:
        s = logit_grad(first[0], y) / x.shape[0]
        descend_at(model, x, y, eps, rng, objective=lambda z: (z * s).sum())


@register
@dataclass
class LSAM(_Decomposed):
    """L-SAM: J(w, x)ᵀ s(w + ε) — SAM's logit effect alone (see the module docstring)."""

    name = "lsam"

    retain_first_graph = True  # the final backward of Σ sg(s_i(w + ε))·z_i(w) reuses it
    _vmap = (_lsam_second, _lsam_combine)

    def _descend(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, first: tuple, eps: list, rng: RngReplay
    ) -> None:
        logits, _, params, _ = first
        # The perturbed forward goes through functional_call on w + ε (new tensors), so the
        # weights saved in the retained graph are never modified in place; BatchNorm
        # buffers are passed as copies so the running statistics stay as the first pass left them.
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        moved = {n: (p.detach() + e if e is not None else p.detach()) for n, p, e in zip(names, params, eps)}
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        rng.replay()
        with torch.no_grad(), autocast(x.device):
            z_at = functional_call(model, {**moved, **buffers}, (x,))
        s = logit_grad(z_at, y) / x.shape[0]
        for p in model.parameters():
            p.grad = None
        (logits * s).sum().backward()

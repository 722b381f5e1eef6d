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
``per_example=True``: ε_i = ρ g_i/‖g_i‖ from each example's own gradient, 1-SAM's ε,
vectorised with torch.func, with BatchNorm statistics held fixed (see
:mod:`samlab.methods.perexample`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad

from samlab.methods.base import Method, RngReplay, StepInfo, autocast, perturbed
from samlab.methods.perexample import (
    add_grads,
    batch_first_pass,
    chunk_logit_grads,
    chunk_logits,
    fixed_statistics,
    global_norm,
    logit_grad,
    perturbation,
    perturbed_chunks,
    upcast,
    write_grads,
)
from samlab.methods.registry import register
from samlab.methods.sam import check_chunk_size, check_rho

__all__ = ["JSAM", "LSAM"]


@dataclass
class _Decomposed(Method):
    """Fields shared by L-SAM and J-SAM: ``rho`` (≥ 0), ``per_example`` (1-SAM's ε_i) and
    ``chunk_size`` (per-example form: how many examples are processed at once, to bound
    memory; None = all)."""

    rho: float = 0.05
    per_example: bool = False
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        check_rho(self.rho)
        if not isinstance(self.per_example, bool):
            raise ValueError(f"per_example must be True or False, got per_example={self.per_example!r}")
        check_chunk_size(self.chunk_size)

    @property
    def first_pass_is_sgd(self) -> bool:
        """Whole-batch form: the first backward leaves ∇L_B(w) in ``p.grad`` (SANER reads it)."""
        return not self.per_example


@register
@dataclass
class JSAM(_Decomposed):
    """J-SAM: J(w + ε, x)ᵀ s(w) — SAM's Jacobian effect alone (see the module docstring)."""

    name = "jsam"

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        rng = RngReplay(x.device)
        if self.per_example:
            with fixed_statistics(model, x) as fm:

                def second(at: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor, z: torch.Tensor):
                    g = chunk_logit_grads(fm, at, xs, logit_grad(z, ys), batched=True)
                    return {k: v.sum(0) for k, v in g.items()}

                rng.replay()
                first, parts = perturbed_chunks(fm, x, y, 1, second, rho=self.rho, chunk_size=self.chunk_size)
            write_grads(model, {k: v / x.shape[0] for k, v in functools.reduce(add_grads, parts, {}).items()})
            return StepInfo(logits=first.logits, losses=first.losses, grad_norm=first.grad_norm)
        logits, losses, params, grads = batch_first_pass(model, x, y)
        norm = global_norm(grads)
        s = logit_grad(logits, y) / x.shape[0]
        with perturbed(model, perturbation(grads, params, self.rho)):
            rng.replay()
            for p in model.parameters():
                p.grad = None
            with autocast(x.device):
                z = model(x)
            (upcast(z) * s).sum().backward()
        return StepInfo(logits=logits.detach(), losses=losses, grad_norm=float(norm))


@register
@dataclass
class LSAM(_Decomposed):
    """L-SAM: J(w, x)ᵀ s(w + ε) — SAM's logit effect alone (see the module docstring)."""

    name = "lsam"

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        rng = RngReplay(x.device)
        if self.per_example:
            with fixed_statistics(model, x) as fm:

                def second(at: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor, _: torch.Tensor):
                    return logit_grad(chunk_logits(fm, at, xs, batched=True), ys)

                rng.replay()
                first, parts = perturbed_chunks(fm, x, y, 1, second, rho=self.rho, chunk_size=self.chunk_size)
                s_at = torch.cat(parts)
                s_at = s_at.reshape(x.shape[0], *s_at.shape[2:]) / x.shape[0]
                # Σ_i J_i(w)ᵀ s_i(w + ε_i) in one whole-batch backward: with the statistics
                # fixed, each example's logits depend on that example alone. ``vmap`` with
                # randomness="different" draws the whole-batch dropout mask (checked in the
                # tests), so this pass sees the masks of the two vectorised passes.
                rng.replay()
                g = grad(lambda p: (fm.logits(p, x) * s_at).sum())(fm.params)
            write_grads(model, g)
            return StepInfo(logits=first.logits, losses=first.losses, grad_norm=first.grad_norm)
        # keep the graph of z(w): the final backward of Σ sg(s_i(w + ε))·z_i(w) reuses it.
        logits, losses, params, grads = batch_first_pass(model, x, y, retain_graph=True)
        norm = global_norm(grads)
        eps = perturbation(grads, params, self.rho)
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
        return StepInfo(logits=logits.detach(), losses=losses, grad_norm=float(norm))

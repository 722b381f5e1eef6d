"""SAM (Foret et al., 2021) with its m-sharpness (m-SAM, 1-SAM) and adaptive (ASAM) forms.

Taught in notebooks 01 and 03.

* ``sam(rho)``: ε = ρ g/‖g‖ with g = ∇L_B(w); the base optimiser steps from w with
  ∇L_B(w + ε). The weights are moved in place for the second pass and restored by copy
  (:func:`samlab.methods.base.perturbed`), together with the BatchNorm running statistics.
* ``sam(rho, m=m)`` (m-SAM): the batch is split into B/m chunks of m examples; chunk c
  gets its own ε_c from its own gradient, and the descent direction is the mean over the
  chunks of ∇L_c(w + ε_c). ``m=1`` is 1-SAM (one ε_i per example), the form Baek et al.
  use. Two engines (field ``engine``): ``"exact"`` (:mod:`samlab.methods.exact`: two
  batched passes, the per-example perturbations added layer by layer, no per-example
  weights) and ``"vmap"`` (torch.func over per-example weights,
  :mod:`samlab.methods.perexample`, which also defines how BatchNorm is treated: the batch
  statistics held fixed); ``"auto"`` (the default) takes the exact engine whenever every
  parametrised layer of the model is supported, else vmap with a warning. Both give the
  same gradient (tested to 1e-10 in float64 against a Python loop over examples).
* ``sam(rho, adaptive=True, eta=...)`` (ASAM, Kwon et al., 2021): ε = ρ T² g/‖T g‖ with
  T = diag(|w| + η), for every trainable parameter (the official ASAM code leaves biases
  unscaled, T = 1 on parameters whose name lacks "weight"; samlab scales all of them).
  Combines with ``m``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from samlab.methods.base import (
    Method,
    RngReplay,
    StepInfo,
    check_chunk_size,
    check_engine,
    check_m,
    check_rho,
    descend_at,
    grad_norm,
)
from samlab.methods.exact import exact_step, select_engine
from samlab.methods.perexample import (
    add_grads,
    batch_first_pass,
    check_chunks,
    chunk_loss_grads,
    fixed_statistics,
    perturbation,
    perturbed_chunks,
    write_grads,
)
from samlab.methods.registry import register

__all__ = ["SAM"]


@register
@dataclass
class SAM(Method):
    """SAM: descend with the gradient at w + ε, ε = ρ g/‖g‖ (see the module docstring).

    Fields: ``rho`` (≥ 0), ``m`` (None = whole batch, else chunks of m examples; 1 = 1-SAM),
    ``adaptive`` and ``eta`` (> 0) for ASAM, ``chunk_size`` (when ``m`` is set, how many
    chunks are processed at once, to bound memory; None = all at once), ``engine`` (when
    ``m`` is set: "auto", "exact" or "vmap", see the module docstring).
    """

    name = "sam"
    rho: float = 0.05
    m: int | None = None
    adaptive: bool = False
    eta: float = 0.01
    chunk_size: int | None = None
    engine: str = "auto"

    def __post_init__(self) -> None:
        check_rho(self.rho)
        check_m(self.m)
        if not self.eta > 0:
            raise ValueError(f"eta must be > 0, got eta={self.eta}")
        check_chunk_size(self.chunk_size)
        check_engine(self.engine)

    @property
    def first_pass_is_sgd(self) -> bool:
        """Whole-batch form: the first backward leaves ∇L_B(w) in ``p.grad`` (SANER reads it)."""
        return self.m is None

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        if self.m is None:
            return self._whole_batch(model, x, y)
        return self._chunked(model, x, y, self.m)

    def _whole_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        rng = RngReplay(x.device)
        logits, losses, params, grads = batch_first_pass(model, x, y)
        norm = grad_norm(grads)
        descend_at(model, x, y, perturbation(grads, params, self.rho, adaptive=self.adaptive, eta=self.eta), rng)
        return StepInfo(logits=logits.detach(), losses=losses, grad_norm=float(norm))

    def _chunked(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, m: int) -> StepInfo:
        check_chunks(x.shape[0], m)
        if select_engine(model, self.engine) == "exact":
            r = exact_step(
                model, x, y, m=m, rho=self.rho, adaptive=self.adaptive, eta=self.eta, chunk_size=self.chunk_size
            )
            return StepInfo(logits=r.logits, losses=r.losses, grad_norm=r.grad_norm, batch_grad=r.batch_grad)
        rng = RngReplay(x.device)
        with fixed_statistics(model, x) as fm:

            def second(at: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor, _: torch.Tensor):
                return {k: v.sum(0) for k, v in chunk_loss_grads(fm, at, xs, ys, batched=True)[0].items()}

            rng.replay()
            first, parts = perturbed_chunks(
                fm, x, y, m, second, rho=self.rho, adaptive=self.adaptive, eta=self.eta, chunk_size=self.chunk_size
            )
        chunks = x.shape[0] // m
        write_grads(model, {k: v / chunks for k, v in functools.reduce(add_grads, parts, {}).items()})
        return StepInfo(logits=first.logits, losses=first.losses, grad_norm=first.grad_norm)

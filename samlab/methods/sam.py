"""SAM (Foret et al., 2021): descend with the gradient taken at w + ρ g/‖g‖.

Taught in notebooks 01 and 03.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samlab.methods.base import EPS, Method, RngReplay, StepInfo, descend_at, first_pass, grad_norm, trainable
from samlab.methods.registry import register

__all__ = ["SAM"]


@register
@dataclass
class SAM(Method):
    """ε = ρ g/‖g‖ with g = ∇L_B(w); the base optimiser steps from w with ∇L_B(w + ε)."""

    name = "sam"
    rho: float = 0.05

    def __post_init__(self) -> None:
        if not self.rho >= 0:
            raise ValueError(f"rho must be >= 0, got rho={self.rho}")

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        rng = RngReplay(x.device)
        logits, losses = first_pass(model, x, y)
        grads = [p.grad for p in trainable(model)]
        norm = grad_norm(grads)
        scale = self.rho / (norm + EPS)
        eps = [None if g is None else g * scale.to(g.device) for g in grads]
        descend_at(model, x, y, eps, rng)
        return StepInfo(logits=logits, losses=losses, grad_norm=float(norm))

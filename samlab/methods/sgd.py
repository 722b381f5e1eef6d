"""Plain SGD: the gradient of the mean loss at w (notebook 00)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samlab.methods.base import Method, StepInfo, first_pass, grad_norm
from samlab.methods.registry import register

__all__ = ["SGD"]


@register
@dataclass
class SGD(Method):
    """g = ∇L_B(w); the base optimiser steps with g."""

    name = "sgd"

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        logits, losses = first_pass(model, x, y)
        norm = grad_norm([p.grad for p in model.parameters()])
        return StepInfo(logits=logits, losses=losses, grad_norm=float(norm))

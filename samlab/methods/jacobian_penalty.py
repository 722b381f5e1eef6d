"""SGD plus the per-example penalty that per-example J-SAM is, exactly, on a two-layer linear network.

Taught in notebook 02. For f = vᵀWx (``samlab.models.DeepLinear(depth=2)``, one logit),
∇_v f = Wx and ∇_W f = v xᵀ, so N_i² = ‖∇_w f_i‖² = ‖Wx_i‖² + ‖v‖²‖x_i‖². Because f is
bilinear in (v, W), per-example J-SAM's descent direction is exactly the gradient of
ℓ_i + λ_i R_i with the penalty R_i = ½‖x_i‖²‖v‖² + ½‖Wx_i‖² and the per-example weight
λ_i = sg(ρ σ(−ỹ_i f_i)/N_i) held fixed (sg: stop-gradient). :class:`JacobianPenaltySGD`
trains with it by autograd; :func:`samlab.theory.two_layer_penalty_gradient` is its closed
form, and the tests check both against ``jsam(per_example=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samlab.losses import per_example_loss, signed_labels
from samlab.methods.base import Method, StepInfo, check_rho, grad_norm
from samlab.models import DeepLinear

__all__ = [
    "JacobianPenaltySGD",
    "two_layer_grad_norm_sq",
    "two_layer_jsam_weights",
    "two_layer_parts",
    "two_layer_penalty",
]


def two_layer_parts(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (h, d), v (h,)) of a two-layer linear network f = vᵀWx with one logit."""
    if not isinstance(model, DeepLinear) or len(model.body) != 1 or model.head.out_features != 1:
        raise ValueError("need samlab.models.DeepLinear(depth=2) with one logit (num_classes=1)")
    return model.body[0].weight, model.head.weight.reshape(-1)


def two_layer_grad_norm_sq(W: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """N_i² = ‖∇_w f(x_i)‖² = ‖Wx_i‖² + ‖v‖²‖x_i‖² (shape (N,))."""
    h = x @ W.T
    return h.square().sum(1) + v.square().sum() * x.square().sum(1)


def two_layer_jsam_weights(W: torch.Tensor, v: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """λ_i = ρ σ(−ỹ_i f_i)/N_i (detached), the per-example weight of J-SAM's penalty."""
    with torch.no_grad():
        f = (x @ W.T) @ v
        m = signed_labels(y).to(x.dtype) * f
        return rho * torch.sigmoid(-m) / two_layer_grad_norm_sq(W, v, x).sqrt().clamp_min(1e-30)


def two_layer_penalty(W: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """R_i = ½‖x_i‖²‖v‖² + ½‖Wx_i‖² (shape (N,), differentiable)."""
    return 0.5 * x.square().sum(1) * v.square().sum() + 0.5 * (x @ W.T).square().sum(1)


@dataclass
class JacobianPenaltySGD(Method):
    """SGD on ℓ_i + λ_i (½‖x_i‖²‖v‖² + ½‖Wx_i‖²), λ_i = sg(ρσ(−ỹ_i f_i)/N_i): notebook 02's
    "SGD + the derived regulariser" for a two-layer linear network (one logit).

    Not registered (it exists for notebook 02 only); pass an instance to
    :func:`samlab.train.fit`. For this model its gradient equals per-example J-SAM's.
    """

    name = "jsam-penalty"
    rho: float = 0.05

    def __post_init__(self) -> None:
        check_rho(self.rho)

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        W, v = two_layer_parts(model)
        x = x.flatten(1).to(W.dtype)
        for p in model.parameters():
            p.grad = None
        logits = model(x)
        losses = per_example_loss(logits, y)
        lam = two_layer_jsam_weights(W.detach(), v.detach(), x, y, self.rho)
        (losses + lam * two_layer_penalty(W, v, x)).mean().backward()
        norm = grad_norm([p.grad for p in model.parameters()])
        return StepInfo(logits=logits.detach(), losses=losses.detach(), grad_norm=float(norm))

"""Regularised SGD: the cheap alternative to SAM of Baek, Kolter & Raghunathan (ICLR 2024).

Taught in notebook 05.

Baek et al. trace SAM's label-noise robustness in deep networks to its Jacobian effect,
which in a two-layer linear network is exactly a penalty on the last-layer weight norm and
on the hidden-activation norm. Their cheaper alternative is plain SGD on the penalised
loss. samlab's form, per batch of B examples with features φ_i = ``model.features(x_i)``
(the input of the classifier layer) and last-layer weight W = ``model.head.weight``:

    L = mean_i [ CE_i + λ_i (γ_w ‖W‖² + γ_a ‖φ_i‖²) ]

* ``weighted=False`` (the paper's form, reconstructed; coefficients **[unverified]**,
  tune them): λ_i = 1, i.e. CE + γ_w ‖W‖² + γ_a mean_i ‖φ_i‖². The bias of the head is not
  penalised.
* ``weighted=True`` (**ours**, a generalisation of the two-layer derivation):
  λ_i = sg(ρ ‖s_i‖ / N_i) with s_i = ∂ℓ_i/∂z_i (softmax(z_i) − e_ỹ; −ỹσ(−ỹz) for a single
  logit, so ‖s_i‖ = σ(−ỹ z_i) there) and N_i² = ‖φ_i‖² + ‖W‖². For f = vᵀWx (scalar
  output) J-SAM is exactly the gradient of ℓ + λ_i(½‖x‖²‖v‖² + ½‖Wx‖²) with
  λ_i = sg(ρσ(−ỹf)/N), N² = ‖Wx‖² + ‖v‖²‖x‖² (derived in notebook 02). Our generalisation keeps
  the two ingredients the network exposes cheaply: ‖∂z/∂W‖² = ‖φ‖² per unit of s, and the
  gradient that reaches the features, ‖Wᵀs‖ ≤ ‖W‖‖s‖, with the Jacobian of the layers
  below the features taken to have unit gain (the ‖x‖² factor of the two-layer formula is
  replaced by 1); the first-order J-SAM penalty λ·½‖Jᵀs‖² then becomes
  sg(ρ‖s‖/N)·½(‖φ‖² + ‖W‖²). With γ_w = γ_a = ½ it reproduces the two-layer formula
  exactly when ‖x‖ = 1. It is a heuristic beyond that case, to be compared with J-SAM.

Cost ≈ SGD: one forward pass (features once, then the head) and one backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samlab.losses import per_example_loss, signed_labels
from samlab.methods.base import EPS, Method, StepInfo, autocast, check_rho, grad_norm, trainable, upcast
from samlab.methods.registry import register

__all__ = ["RegSGD", "example_weights"]


def example_weights(
    logits: torch.Tensor, y: torch.Tensor, feature_sq: torch.Tensor, head_sq: torch.Tensor, rho: float
) -> torch.Tensor:
    """λ_i = ρ ‖s_i‖ / N_i with N_i² = ‖φ_i‖² + ‖W‖² (no gradient; see the module docstring).

    ``logits``: ``(N, K)`` or ``(N,)`` for a single-logit model; ``feature_sq``: ‖φ_i‖²,
    shape ``(N,)``; ``head_sq``: ‖W‖² (a scalar tensor).
    """
    with torch.no_grad():
        z = logits.detach()
        if z.ndim == 1:
            ty = signed_labels(y).to(z.dtype)
            s_norm = torch.sigmoid(-ty * z)
        else:
            s = torch.softmax(z, dim=-1)
            s[torch.arange(len(y), device=z.device), y] -= 1
            s_norm = torch.linalg.vector_norm(s, dim=-1)
        n = (feature_sq.detach() + head_sq.detach()).sqrt()
        return rho * s_norm / (n + EPS)


@register
@dataclass
class RegSGD(Method):
    """SGD on CE + λ_i(γ_w ‖W_last‖² + γ_a ‖φ_i‖²), averaged over the batch (module docstring).

    Fields: ``gamma_w`` ≥ 0, ``gamma_a`` ≥ 0 (both 0: SGD exactly), ``weighted`` (per-example
    λ_i, ours) and ``rho`` ≥ 0 (only used when ``weighted``). The default coefficients are
    placeholders **[unverified]**: sweep them.
    """

    name = "regsgd"
    gamma_w: float = 1e-3
    gamma_a: float = 1e-3
    weighted: bool = False
    rho: float = 0.01

    def __post_init__(self) -> None:
        if not self.gamma_w >= 0:
            raise ValueError(f"gamma_w must be >= 0, got gamma_w={self.gamma_w}")
        if not self.gamma_a >= 0:
            raise ValueError(f"gamma_a must be >= 0, got gamma_a={self.gamma_a}")
        if not isinstance(self.weighted, bool):
            raise ValueError(f"weighted must be True or False, got weighted={self.weighted!r}")
        check_rho(self.rho)

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        head = getattr(model, "head", None)
        if not (callable(getattr(model, "features", None)) and isinstance(head, nn.Linear)):
            raise ValueError(
                f"regsgd needs a samlab classifier with features(x) and a linear head, got {type(model).__name__}"
            )
        for p in model.parameters():
            p.grad = None
        with autocast(x.device):
            feats = model.features(x)
            out = head(feats)
        logits = upcast(out.squeeze(-1) if head.out_features == 1 else out)
        losses = per_example_loss(logits, y)
        objective = losses.mean()
        extras: dict[str, float] = {}
        if self.gamma_w or self.gamma_a:
            head_sq = upcast(head.weight).square().sum()
            feature_sq = upcast(feats).flatten(1).square().sum(1)
            if self.weighted:
                lam = example_weights(logits, y, feature_sq, head_sq, self.rho)
                penalty = (lam * (self.gamma_w * head_sq + self.gamma_a * feature_sq)).mean()
                extras["lambda_mean"] = float(lam.mean())
            else:
                penalty = self.gamma_w * head_sq + self.gamma_a * feature_sq.mean()
            objective = objective + penalty
            extras.update(head_sq=float(head_sq.detach()), feature_sq=float(feature_sq.detach().mean()))
        objective.backward()
        norm = grad_norm([p.grad for p in trainable(model)])
        return StepInfo(logits=logits.detach(), losses=losses.detach(), grad_norm=float(norm), extras=extras)

"""OBF, output-bias forgetting (Vani et al., "Forget Sharpness", ICML 2024). Taught in notebook 06.

Vani et al. read SAM's perturbation as *perturbed forgetting*: the ascent step discards
model biases before the descent step. OBF aims the perturbation at biases visible in the
model's outputs: instead of ascending the training loss, the ascent step moves the
predictions towards the uniform distribution.

The rule, as in the official code (BorealisAI/perturbed-forgetting,
``perturbed_forgetting/loss/output_bias_forget.py``), per example with logits z ∈ R^K
(K ≥ 2), observed label ỹ, u = (1/K, …, 1/K), λ = 1/K:

    p = sg(sigmoid(z))                       (sic: element-wise sigmoid, not softmax)
    α = γ · max(0, (1 − λ/p_ỹ)/(1 − λ))     (held fixed: no gradient flows through α)
    v = u − α p − (1 − α) e_ỹ                (the logit-space ascent vector, :func:`ascent_logit_grad`)

The ascent direction is a = ∇_w mean_i v_i·z_i(w) — the vector v backpropagated through
the network — and ε = ρ a/‖a‖. The descent direction is ∇CE at w + ε.

**Which objective is this the gradient of?** (ours, checked numerically in
``tests/test_methods_variants.py``) With α held fixed, v is *exactly* the logit gradient of

    O(z) = (1 − α) BCE(z, e_ỹ) − BCE(z, u),    BCE(z, t) = Σ_k [softplus(z_k) − t_k z_k]
         = mean_k z_k − (1 − α) z_ỹ − α Σ_k softplus(z_k)

(BCE: the one-vs-rest binary cross-entropy summed over the K classes), because
∂softplus(z_k)/∂z_k = sigmoid(z_k). The paper writes the objective as
(1 − α) CE(z, ỹ) − CE(z, u) with softmax cross-entropy; that form has the logit gradient
u − α softmax(z) − (1 − α) e_ỹ, which the official code's ``sigmoid=False`` option
computes. samlab follows the code's default (sigmoid), so OBF here ascends O above. The
two agree in the limit γ → 0 used for ResNets (γ = 1e-12): α → 0, v → u − e_ỹ, the
gradient of mean_k z_k − z_ỹ, whichever normalisation is used.

m-sharpness: the batch is split into chunks of ``m`` consecutive examples (64 in the
paper); each chunk gets its own ε_c from its own ascent direction, and the descent
direction is the mean over chunks of ∇CE_c(w + ε_c) (= the batch-mean gradient when ε = 0).
``m`` must divide the batch size; ``m=None`` uses the whole batch as one chunk. Chunks are
processed in a Python loop, each with its own forward passes, as in the official code:
BatchNorm normalises each chunk with that chunk's statistics, and the running statistics
are updated by each chunk's pass at w (B/m updates per step, as in the official code) and
never by the perturbed passes.

Cost: two forward and two backward passes over the batch, as SAM (in B/m pieces).
``StepInfo.grad_norm`` is the norm of the descent direction (OBF computes no training-loss
gradient at w); ``extras`` has the mean ascent norm and the mean α.

Vani et al. report no label-noise experiments: samlab's label-noise results for OBF are new.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samlab.losses import per_example_loss
from samlab.methods.base import EPS, Method, RngReplay, StepInfo, autocast, descend_at, grad_norm, trainable
from samlab.methods.registry import register

__all__ = ["OBF", "ascent_logit_grad"]


def ascent_logit_grad(logits: torch.Tensor, y: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """OBF's logit-space ascent vector v = u − α p − (1 − α) e_ỹ and α, per example.

    ``logits``: ``(N, K)`` with K ≥ 2 (treated as constants); ``y``: ``(N,)``. Returns ``v``
    ``(N, K)`` and ``alpha`` ``(N, 1)``. See the module docstring for the objective.
    """
    z = logits.detach()
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"obf needs (N, K) logits with K >= 2 classes, got logits of shape {tuple(z.shape)}")
    k = z.shape[1]
    lam = 1.0 / k
    p = torch.sigmoid(z)
    p_y = p.gather(1, y.reshape(-1, 1))
    alpha = gamma * torch.clamp((1 - lam / p_y) / (1 - lam), min=0.0)
    onehot = F.one_hot(y, k).to(z.dtype)
    return 1.0 / k - alpha * p - (1 - alpha) * onehot, alpha


def _upcast(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


@register
@dataclass
class OBF(Method):
    """OBF: SAM whose ascent step ascends the output-bias-forgetting objective (module docstring).

    Fields: ``rho`` (≥ 0), ``gamma`` in [0, 1] (scale of α; 1e-12, the paper's ResNet
    value, makes the ascent that of mean_k z_k − z_ỹ), ``m`` (chunk size, an integer ≥ 1
    dividing the batch size, or None for the whole batch).
    """

    name = "obf"
    rho: float = 0.04
    gamma: float = 1e-12
    m: int | None = 64

    def __post_init__(self) -> None:
        if not self.rho >= 0:
            raise ValueError(f"rho must be >= 0, got rho={self.rho}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got gamma={self.gamma}")
        if self.m is not None and (isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1):
            raise ValueError(f"m must be None (whole batch) or an integer >= 1, got m={self.m!r}")

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        b = x.shape[0]
        m = b if self.m is None else self.m
        if b % m:
            raise ValueError(f"m={m} must divide the batch size, got a batch of {b} examples")
        chunks = b // m
        params = trainable(model)
        total: list[torch.Tensor | None] = [None] * len(params)
        logits_out, losses_out, ascent_norms, alphas = [], [], [], []
        for c in range(chunks):
            xc, yc = x[c * m : (c + 1) * m], y[c * m : (c + 1) * m]
            rng = RngReplay(x.device)
            for p in model.parameters():
                p.grad = None
            with autocast(x.device):
                z = model(xc)
            z = _upcast(z)
            v, alpha = ascent_logit_grad(z, yc, self.gamma)
            (v * z).sum().div(m).backward()  # a = ∇_w mean_i v_i·z_i
            ascent = [p.grad for p in params]
            a_norm = grad_norm(ascent)
            scale = self.rho / (a_norm + EPS)
            eps = [None if t is None else t * scale.to(t.device) for t in ascent]
            descend_at(model, xc, yc, eps, rng)
            for i, p in enumerate(params):
                if p.grad is not None:
                    total[i] = p.grad if total[i] is None else total[i].add_(p.grad)
            z = z.detach()
            logits_out.append(z)
            losses_out.append(per_example_loss(z, yc))
            ascent_norms.append(a_norm)
            alphas.append(alpha.mean())
        for p, t in zip(params, total):
            p.grad = None if t is None else (t if chunks == 1 else t.div_(chunks))
        return StepInfo(
            logits=torch.cat(logits_out),
            losses=torch.cat(losses_out),
            grad_norm=float(grad_norm(total)),
            extras={
                "ascent_norm": float(torch.stack(ascent_norms).mean()),
                "alpha_mean": float(torch.stack(alphas).float().mean()),
            },
        )

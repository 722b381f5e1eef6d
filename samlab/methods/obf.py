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
``m`` must divide the batch size; ``m=None`` uses the whole batch as one chunk.

Two engines (field ``engine``). ``"loop"``: chunks are processed in a Python loop, each
with its own forward passes, as in the official code: BatchNorm normalises each chunk with
that chunk's statistics, and the running statistics are updated by each chunk's pass at w
(B/m updates per step, as in the official code) and never by the perturbed passes.
``"exact"``: all chunks in two batched passes (:mod:`samlab.methods.exact`, the ascent
vector backpropagated instead of the loss); identical to the loop for models without
BatchNorm in training mode (tested to 1e-10 in float64), and refused for models with it
(BatchNorm's per-chunk statistics are not the engine's fixed whole-batch ones).
``"auto"`` (the default): the loop when the batch has at most :data:`AUTO_LOOP_CHUNKS`
chunks (a few ordinary passes beat the engine's per-chunk terms there: on the 2-core CPU,
GroupNorm CNN, batch 128, m = 64, the loop costs 2.0× SGD and the exact engine 2.9×,
``data/results/cpu/bench.json``), else exact where allowed, else the loop with a warning.

Cost: two forward and two backward passes over the batch, as SAM (in B/m pieces).
``StepInfo.grad_norm`` is the norm of the descent direction (OBF computes no training-loss
gradient at w); ``extras`` has the mean ascent norm and the mean α.

Vani et al. report no label-noise experiments: samlab's label-noise results for OBF are new.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from torch.nn.modules.batchnorm import _BatchNorm

from samlab.losses import per_example_loss
from samlab.methods.base import (
    Method,
    RngReplay,
    StepInfo,
    ascent,
    autocast,
    check_engine,
    check_m,
    check_rho,
    descend_at,
    grad_norm,
    trainable,
    upcast,
)
from samlab.methods.exact import exact_step, unsupported_layer
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


#: ``engine="auto"`` runs the loop for batches of at most this many chunks (see the module docstring).
AUTO_LOOP_CHUNKS = 4

#: OBF's engines: its own per-chunk loop stands where the others have vmap.
OBF_ENGINES = ("auto", "exact", "loop")


def _exact_refusal(model: nn.Module) -> str | None:
    """Why OBF's exact engine cannot run ``model`` (naming the layer), or None."""
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and module.training:
            return f"layer {name} ({type(module).__name__}) normalises each chunk with its own statistics in OBF"
    return unsupported_layer(model)


@register
@dataclass
class OBF(Method):
    """OBF: SAM whose ascent step ascends the output-bias-forgetting objective (module docstring).

    Fields: ``rho`` (≥ 0), ``gamma`` in [0, 1] (scale of α; 1e-12, the paper's ResNet
    value, makes the ascent that of mean_k z_k − z_ỹ), ``m`` (chunk size, an integer ≥ 1
    dividing the batch size, or None for the whole batch), ``engine`` ("auto", "exact" or
    "loop", see the module docstring).
    """

    name = "obf"
    rho: float = 0.04
    gamma: float = 1e-12
    m: int | None = 64
    engine: str = "auto"

    def __post_init__(self) -> None:
        check_rho(self.rho)
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got gamma={self.gamma}")
        check_m(self.m)
        check_engine(self.engine, OBF_ENGINES)

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        b = x.shape[0]
        m = b if self.m is None else self.m
        if b % m:
            raise ValueError(f"m={m} must divide the batch size, got a batch of {b} examples")
        if self.engine == "exact" or (self.engine == "auto" and b // m > AUTO_LOOP_CHUNKS):
            reason = _exact_refusal(model)
            if reason is None:
                return self._exact(model, x, y, m)
            if self.engine == "exact":
                raise ValueError(f"obf engine='exact' cannot run this model: {reason}; use engine='loop' or 'auto'")
            warnings.warn(f"obf engine='auto' falls back to the loop: {reason}", stacklevel=2)
        return self._loop(model, x, y, m)

    def _exact(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, m: int) -> StepInfo:
        def objective(z: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
            return (ascent_logit_grad(z, yc, self.gamma)[0] * z).sum(1)

        r = exact_step(model, x, y, m=m, rho=self.rho, ascent=objective)
        return StepInfo(
            logits=r.logits,
            losses=r.losses,
            grad_norm=float(grad_norm([p.grad for p in trainable(model)])),
            extras={
                "ascent_norm": float(r.chunk_norms.mean()) / m,
                "alpha_mean": float(ascent_logit_grad(r.logits, y, self.gamma)[1].mean()),
            },
        )

    def _loop(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, m: int) -> StepInfo:
        chunks = x.shape[0] // m
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
            z = upcast(z)
            v, alpha = ascent_logit_grad(z, yc, self.gamma)
            (v * z).sum().div(m).backward()
            eps, a_norm = ascent([p.grad for p in params], self.rho)  # a = ∇_w mean_i v_i·z_i
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
                "alpha_mean": float(torch.stack(alphas).mean()),
            },
        )

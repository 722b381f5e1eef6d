"""Closed forms for the linear notebooks, each checked against autograd in the tests.

Taught in notebook 01 (SAM in linear logistic regression) and notebook 02 (two-layer
linear networks, where the Jacobian term acts). Labels are {0, 1} as everywhere in
samlab; the formulas use the signed label ỹ = 2y − 1 and the margin m = ỹ wᵀx.

Linear logistic regression, ℓ = log(1 + e^{−m}):

* per-example gradient ∇ℓ_i = −σ(−m_i) ỹ_i x_i, so ‖∇ℓ_i‖ = σ(−m_i) ‖x_i‖;
* 1-SAM's perturbation ε_i = ρ ∇ℓ_i/‖∇ℓ_i‖ = −ρ ỹ_i x_i/‖x_i‖ lowers the margin by
  c_i = ρ‖x_i‖, so 1-SAM descends along −σ(−m_i + c_i) ỹ_i x_i: SAM multiplies each
  example's gradient by the up-weighting factor r(m) = σ(−m + c)/σ(−m), which rises
  from 1 (m → −∞) to e^c (m → +∞);
* batch SAM shares one ε = ρ g/‖g‖ (g the mean gradient) between all examples.

Two-layer linear network f = vᵀWx (``samlab.models.DeepLinear(depth=2)``, one logit):
∇_v f = Wx, ∇_W f = v xᵀ, N² = ‖∇_w f‖² = ‖Wx‖² + ‖v‖²‖x‖². Because f is bilinear in
(v, W), per-example J-SAM is exactly SGD on ℓ_i + λ_i R_i with
R_i = ½‖x_i‖²‖v‖² + ½‖Wx_i‖² and λ_i = sg(ρ σ(−ỹ_i f_i)/N_i)
(:func:`two_layer_penalty_gradient`; the method that trains with it,
:class:`samlab.methods.jacobian_penalty.JacobianPenaltySGD`). For any single-logit
model the same reasoning gives J-SAM to *first order* in ρ: SGD on
ℓ_i + λ_i ½‖∇_w f_i‖² (:func:`first_order_jsam_gradient`); for three linear layers the
error of that expansion is O(ρ²).

Only closed forms and the checks that compare them with samlab's methods live here;
following them over training is :mod:`samlab.probes`' job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from samlab import methods as _methods
from samlab.losses import per_example_loss, signed_labels
from samlab.methods.base import Method
from samlab.models import LinearModel
from samlab.methods.jacobian_penalty import (
    JacobianPenaltySGD,
    two_layer_grad_norm_sq,
    two_layer_jsam_weights,
    two_layer_parts,
    two_layer_penalty,
)

__all__ = [
    "clean_noisy_ratio",
    "example_grad_norms",
    "first_order_errors",
    "first_order_jsam_gradient",
    "jsam_equivalence_errors",
    "flat_grad",
    "linear_example_grads",
    "linear_grad_norms",
    "linear_identities",
    "linear_sam_gradient",
    "loglog_slope",
    "margins",
    "method_gradient",
    "sam_example_grads",
    "sklearn_logistic_weights",
    "two_layer_grad_norm_sq",
    "two_layer_jsam_weights",
    "two_layer_parts",
    "two_layer_penalty",
    "two_layer_penalty_gradient",
    "upweight",
]


# --------------------------------------------------------------------------- linear model


def _signed(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return signed_labels(y).to(like.dtype)


def margins(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """m_i = ỹ_i wᵀx_i for a weight vector ``w`` (d,), inputs ``x`` (N, d), labels {0, 1}."""
    w = w.reshape(-1)
    return _signed(y, x) * (x @ w)


def upweight(m: Any, c: Any) -> Any:
    """SAM's up-weighting factor r(m) = σ(−m + c)/σ(−m) for margin ``m`` and c = ρ‖x‖.

    Computed as exp(log σ(c − m) − log σ(−m)), stable for large |m|. Accepts numbers,
    numpy arrays or tensors (broadcast) and returns the same kind.
    """
    kind = "tensor" if isinstance(m, torch.Tensor) or isinstance(c, torch.Tensor) else (
        "array" if isinstance(m, np.ndarray) or isinstance(c, np.ndarray) else "number"
    )
    mt = torch.as_tensor(m, dtype=torch.float64) if not isinstance(m, torch.Tensor) else m
    ct = torch.as_tensor(c, dtype=mt.dtype, device=mt.device) if not isinstance(c, torch.Tensor) else c
    if not isinstance(m, torch.Tensor) and isinstance(c, torch.Tensor):
        mt = mt.to(ct.dtype)
    r = torch.exp(nn.functional.logsigmoid(ct - mt) - nn.functional.logsigmoid(-mt))
    if kind == "tensor":
        return r
    if kind == "array":
        return r.numpy()
    return float(r)


def linear_example_grads(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rho: float = 0.0) -> torch.Tensor:
    """Per-example gradients (N, d) that 1-SAM descends along: −σ(−m_i + ρ‖x_i‖) ỹ_i x_i.

    ``rho=0`` gives the ordinary per-example gradients −σ(−m_i) ỹ_i x_i.
    """
    ty = _signed(y, x)
    m = ty * (x @ w.reshape(-1))
    c = rho * torch.linalg.vector_norm(x, dim=1)
    return (-torch.sigmoid(-m + c) * ty).unsqueeze(1) * x


def _batch_eps(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    g = linear_example_grads(w, x, y).mean(0)
    return rho * g / (torch.linalg.vector_norm(g) + 1e-12)


def linear_sam_gradient(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rho: float, per_example: bool = True) -> torch.Tensor:
    """The mean gradient SAM descends along, in closed form (shape (d,)).

    ``per_example=True``: 1-SAM, mean_i −σ(−m_i + ρ‖x_i‖) ỹ_i x_i. ``per_example=False``:
    batch SAM, the mean gradient at w + ε with one shared ε = ρ g/‖g‖, g the mean gradient.
    """
    w = w.reshape(-1)
    if per_example:
        return linear_example_grads(w, x, y, rho).mean(0)
    return linear_example_grads(w + _batch_eps(w, x, y, rho), x, y).mean(0)


def linear_grad_norms(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rho: float = 0.0, per_example: bool = True) -> torch.Tensor:
    """Norms (N,) of the per-example gradients a method descends along.

    ``rho=0``: ‖∇ℓ_i(w)‖ = σ(−m_i)‖x_i‖ (GD). 1-SAM (``per_example=True``):
    ‖∇ℓ_i(w + ε_i)‖ = σ(−m_i + ρ‖x_i‖)‖x_i‖. Batch SAM (``per_example=False``):
    ‖∇ℓ_i(w + ε)‖ with the shared ε.
    """
    w = w.reshape(-1)
    nx = torch.linalg.vector_norm(x, dim=1)
    if per_example or rho == 0:
        return torch.sigmoid(-margins(w, x, y) + rho * nx) * nx
    return torch.sigmoid(-margins(w + _batch_eps(w, x, y, rho), x, y)) * nx


def clean_noisy_ratio(norms: torch.Tensor, is_noisy: torch.Tensor) -> float:
    """Mean per-example gradient norm of the clean examples over that of the noisy ones."""
    if not bool(is_noisy.any()) or bool(is_noisy.all()):
        raise ValueError("the ratio needs both clean and noisy examples")
    return float(norms[~is_noisy].mean() / norms[is_noisy].mean())


def _example_loss(model: nn.Module) -> tuple[list[str], dict[str, torch.Tensor], Callable[..., torch.Tensor]]:
    """The trainable parameter names and detached values of ``model``, and ℓ(p, x_i, y_i) for one
    example as a function of the parameters (torch.func), for per-example autograd."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b for n, b in model.named_buffers()}

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**p, **buffers}, (xi.unsqueeze(0),))
        return per_example_loss(out, yi.unsqueeze(0)).sum()

    return names, params, loss


def example_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example gradient norms ‖∇_w ℓ_i‖ by autograd (torch.func: vmap over grad), any model."""
    names, params, loss = _example_loss(model)

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.stack([g[n].flatten(1).square().sum(1) for n in names]).sum(0).sqrt()


def sam_example_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """1-SAM's per-example gradients ∇ℓ_i(w + ε_i), ε_i = ρ∇ℓ_i/‖∇ℓ_i‖, by autograd (torch.func),
    for any single-logit model; flattened, shape (N, P). ``rho=0``: the plain ∇ℓ_i(w)."""
    names, params, loss = _example_loss(model)

    def one(xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        g = grad(loss)(params, xi, yi)
        norm = torch.sqrt(sum(g[n].square().sum() for n in names))
        at = {n: params[n] + rho * g[n] / norm for n in names}
        ge = grad(loss)(at, xi, yi)
        return torch.cat([ge[n].reshape(-1) for n in names])

    return vmap(one)(x, y)


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| relative to max |b| (the scale of the reference)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def linear_identities(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float) -> dict[str, float]:
    """Notebook 01's checks of the closed forms, on ``model`` (a LinearModel, one logit, no bias).

    Each entry is a relative difference max|a − b|/max|b| between a closed form of this
    module (or a method of :mod:`samlab.methods`) and an independent autograd computation
    (or the method it should equal). Run it in float64: all entries are then ~1e-11 or
    below (samlab's SAM normalises ε by ‖g‖ + 1e-12).
    """
    if not isinstance(model, LinearModel) or model.head.bias is not None or model.head.out_features != 1:
        raise ValueError("linear_identities needs a LinearModel with one logit and no bias")
    w = model.head.weight.detach().reshape(-1)
    auto_sam = sam_example_grads(model, x, y, rho)
    auto_gd = sam_example_grads(model, x, y, 0.0)
    nx = torch.linalg.vector_norm(x, dim=1)
    auto_r = torch.linalg.vector_norm(auto_sam, dim=1) / torch.linalg.vector_norm(auto_gd, dim=1)

    def g(name: str, **kw: Any) -> torch.Tensor:
        return method_gradient(model, _methods.get(name, **kw), x, y)

    sam1, samb, sgd = g("sam", rho=rho, m=1), g("sam", rho=rho), g("sgd")
    return {
        "per-example 1-SAM gradients −σ(−m+ρ‖x‖)ỹx vs autograd": _rel_diff(linear_example_grads(w, x, y, rho), auto_sam),
        "r(m_i) vs autograd ‖∇ℓ_i(w+ε_i)‖/‖∇ℓ_i(w)‖": _rel_diff(upweight(margins(w, x, y), rho * nx), auto_r),
        "‖∇ℓ_i(w)‖ = σ(−m_i)‖x_i‖ vs autograd": _rel_diff(linear_grad_norms(w, x, y), torch.linalg.vector_norm(auto_gd, dim=1)),
        "1-SAM mean gradient: closed form vs samlab 'sam' (m=1)": _rel_diff(linear_sam_gradient(w, x, y, rho), sam1),
        "batch SAM: closed form vs samlab 'sam' (one ε)": _rel_diff(linear_sam_gradient(w, x, y, rho, per_example=False), samb),
        "L-SAM vs 1-SAM (per-example ε)": _rel_diff(g("lsam", rho=rho, per_example=True), sam1),
        "L-SAM vs SAM (batch ε)": _rel_diff(g("lsam", rho=rho, per_example=False), samb),
        "J-SAM vs GD (per-example ε)": _rel_diff(g("jsam", rho=rho, per_example=True), sgd),
        "J-SAM vs GD (batch ε)": _rel_diff(g("jsam", rho=rho, per_example=False), sgd),
    }


def sklearn_logistic_weights(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """scikit-learn's L2-regularised logistic regression without intercept, run to convergence.

    Minimises mean_i ℓ_i + (λ/2)‖w‖², i.e. ``LogisticRegression(C=1/(n·λ),
    fit_intercept=False)`` (scikit-learn minimises C Σ ℓ_i + ½‖w‖²). Returns w (d,) float64.
    """
    from sklearn.linear_model import LogisticRegression

    n = x.shape[0]
    clf = LogisticRegression(C=1.0 / (n * lam), fit_intercept=False, tol=1e-12, max_iter=100_000, solver="lbfgs")
    clf.fit(x.detach().cpu().double().numpy(), y.detach().cpu().numpy())
    return torch.from_numpy(clf.coef_.reshape(-1).copy())


def flat_grad(model: nn.Module) -> torch.Tensor:
    """All ``p.grad`` of ``model`` concatenated (zeros where a gradient is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in model.parameters()])


def method_gradient(model: nn.Module, method: Method, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The descent direction ``method`` computes at the current weights, flattened (no step)."""
    method.gradient(model, x, y)
    g = flat_grad(model).detach().clone()
    for p in model.parameters():
        p.grad = None
    return g


# --------------------------------------------------------------------------- two-layer linear network


def two_layer_penalty_gradient(
    W: torch.Tensor, v: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rho: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form gradient (∂/∂W, ∂/∂v) of mean_i [ℓ_i + λ_i R_i], λ_i held fixed.

    ∂/∂v = mean_i [s_i Wx_i + λ_i ‖x_i‖² v],  ∂/∂W = mean_i [s_i v x_iᵀ + λ_i (Wx_i) x_iᵀ],
    s_i = −ỹ_i σ(−ỹ_i f_i). This is per-example J-SAM's gradient exactly, for every ρ.
    """
    W, v = W.detach(), v.detach()
    ty = _signed(y, x)
    h = x @ W.T  # (N, h)
    f = h @ v
    s = -ty * torch.sigmoid(-ty * f)
    lam = two_layer_jsam_weights(W, v, x, y, rho)
    n = x.shape[0]
    gv = (s @ h) / n + (lam * x.square().sum(1)).mean() * v
    gW = (torch.outer(v, s @ x) + (h * lam.unsqueeze(1)).T @ x) / n
    return gW, gv


def first_order_jsam_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """J-SAM's gradient to first order in ρ, for any single-logit model, flattened.

    ∇f(w + ε_i) ≈ ∇f(w) + H_f ε_i with ε_i = −ρ ỹ_i ∇f_i/N_i (1-SAM's ε), so
    s_i ∇f(w + ε_i) ≈ ∇ℓ_i + λ_i ∇(½‖∇_w f_i‖²), λ_i = sg(ρσ(−ỹ_i f_i)/N_i). Returns the
    gradient of mean_i [ℓ_i + λ_i ½‖∇_w f_i‖²] (torch.func). Exact for a two-layer linear
    network; O(ρ²) off for three layers.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b for n, b in model.named_buffers()}

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**p, **buffers}, (xi.unsqueeze(0),)).reshape(())

    def sq_norm_grad_f(p: dict[str, torch.Tensor]) -> torch.Tensor:
        g = vmap(grad(f), in_dims=(None, 0))(p, x)
        return torch.stack([g[n].flatten(1).square().sum(1) for n in names]).sum(0)  # (N,)

    with torch.no_grad():
        z = functional_call(model, {**params, **buffers}, (x,)).reshape(-1)
        lam = rho * torch.sigmoid(-_signed(y, x) * z) / sq_norm_grad_f(params).sqrt().clamp_min(1e-30)

    def objective(p: dict[str, torch.Tensor]) -> torch.Tensor:
        zz = functional_call(model, {**p, **buffers}, (x,)).reshape(-1)
        return (per_example_loss(zz, y) + lam * 0.5 * sq_norm_grad_f(p)).mean()

    g = grad(objective)(params)
    return torch.cat([g[n].reshape(-1) for n in names])


def jsam_equivalence_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rhos: Sequence[float]) -> dict[str, list[float]]:
    """Notebook 02's exactness check on a two-layer linear network, for each ρ in ``rhos``.

    Returns the largest absolute difference between samlab's per-example J-SAM gradient
    (``methods.get("jsam", rho=ρ, per_example=True)``) and (a) the closed-form gradient of
    the per-example penalty (:func:`two_layer_penalty_gradient`), (b) the gradient of
    :class:`JacobianPenaltySGD` (autograd of ℓ + sg(λ)R). Run in float64.
    """
    W, v = two_layer_parts(model)
    out: dict[str, list[float]] = {"closed form": [], "penalty by autograd": []}
    for rho in rhos:
        jsam = method_gradient(model, _methods.get("jsam", rho=float(rho), per_example=True), x, y)
        gW, gv = two_layer_penalty_gradient(W, v, x, y, float(rho))
        closed = torch.cat([gW.reshape(-1), gv.reshape(-1)])
        out["closed form"].append(float((jsam - closed).abs().max()))
        auto = method_gradient(model, JacobianPenaltySGD(rho=float(rho)), x, y)
        out["penalty by autograd"].append(float((jsam - auto).abs().max()))
    return out


def first_order_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rhos: Sequence[float]) -> list[float]:
    """‖J-SAM(ρ) − first-order form(ρ)‖ for each ρ: samlab's per-example J-SAM against
    :func:`first_order_jsam_gradient`. Zero (to rounding) for two linear layers, O(ρ²) for three."""
    out = []
    for rho in rhos:
        jsam = method_gradient(model, _methods.get("jsam", rho=float(rho), per_example=True), x, y)
        out.append(float(torch.linalg.vector_norm(jsam - first_order_jsam_gradient(model, x, y, float(rho)))))
    return out


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if len(lx) < 2 or not np.all(np.isfinite(lx)) or not np.all(np.isfinite(ly)):
        raise ValueError("loglog_slope needs at least two positive, finite points")
    return float(np.polyfit(lx, ly, 1)[0])

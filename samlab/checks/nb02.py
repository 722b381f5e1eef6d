"""Exercise checks for notebook 02 (two-layer linear networks: the Jacobian term).

The network is f = vᵀWx with W of shape (h, d) and v of shape (h,); inputs x have shape
(N, d) and labels y are in {0, 1}. Each check runs the student's function on inputs of
its own, compares with :mod:`samlab.theory`, says in plain words what is off, and never
prints the expected values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from samlab import theory
from samlab.checks.common import call as _call
from samlab.checks.common import close as _close
from samlab.checks.common import diagnose, shape_ok

__all__ = ["check_grad_f_norm_sq", "check_grad_v_at_eps", "check_jsam_weights"]


def _problem(seed: int = 0, n: int = 6, d: int = 4, h: int = 3):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(h, d, generator=g, dtype=torch.float64)
    v = torch.randn(h, generator=g, dtype=torch.float64) * 1.7
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2.5, n, dtype=torch.float64).unsqueeze(1)
    y = torch.randint(0, 2, (n,), generator=g)
    y[0], y[1] = 0, 1
    return W, v, x, y


def check_grad_f_norm_sq(fn: Callable) -> bool:
    """Exercise 1: ``fn(W, v, x)`` returns N_i² = ‖∇_{(W,v)} f(x_i)‖² per example, shape (N,)."""
    W, v, x, _ = _problem()
    got = _call(fn, W, v, x)
    if got is None:
        return False
    want = theory.two_layer_grad_norm_sq(W, v, x)
    if got.shape != want.shape:
        print(f"✗ Wrong shape {tuple(got.shape)}: one squared norm per example, shape {tuple(want.shape)}.")
        return False
    if _close(got, want):
        print("✓ Right: the v-block contributes ‖Wx‖² and the W-block ‖v‖²‖x‖².")
        return True
    hx = (x @ W.T).square().sum(1)
    vx = v.square().sum() * x.square().sum(1)
    w_block = "✗ The W-block: ∇_W f = v xᵀ has squared Frobenius norm ‖v‖²‖x‖² (the factor is ‖x‖², squared)."
    half = "✗ Off by a factor of 2: a squared norm is a plain sum of squares, no ½."
    return diagnose(got, [
        (want.sqrt(), "✗ That is N_i, the norm; the exercise asks for its square N_i²."),
        (hx, "✗ You have the v-block ‖Wx‖² only; the gradient with respect to W contributes too."),
        (vx, "✗ You have the W-block ‖v‖²‖x‖² only; the gradient with respect to v (= Wx) contributes too."),
        (hx + v.square().sum(), w_block),
        (hx + v.square().sum() * x.norm(dim=1), w_block),
        (0.5 * want, half),
        (2 * want, half),
    ], "✗ Not quite. Write ∇_v f and ∇_W f, then add their squared norms.")


def check_grad_v_at_eps(fn: Callable) -> bool:
    """Exercise 2: ``fn(W, v, x, y, rho)`` returns ∇_v f(x_i) at w + ε_i (1-SAM's ε_i), shape (N, h)."""
    W, v, x, y = _problem(1)
    rho = 0.3
    got = _call(fn, W, v, x, y, rho)
    if got is None:
        return False
    ty = (2.0 * y.double() - 1.0).unsqueeze(1)
    nsq = theory.two_layer_grad_norm_sq(W, v, x).unsqueeze(1)
    xsq = x.square().sum(1, keepdim=True)
    h = x @ W.T
    want = h - rho * ty * xsq * v / nsq.sqrt()
    if not shape_ok(got, want, "gradient (length h)"):
        return False
    if _close(got, want):
        print("✓ Right: ∇_v f at w + ε_i is Wx_i plus a correction linear in ε_i, exactly (f is bilinear).")
        return True
    corr = rho * ty * xsq * v / nsq.sqrt()
    return diagnose(got, [
        (h, "✗ That is ∇_v f at w: the perturbation ε_W = −ρ ỹ v xᵀ/N moves W, so Wx changes too."),
        (h + corr, "✗ The correction has the wrong sign: ε_i ascends the loss, ε_i = −ρ ỹ ∇_w f/N."),
        (h - rho * ty * xsq * v / nsq, "✗ Divide by N (the norm of ∇_w f), not by N²: ε_i has length ρ."),
        (h - rho * ty * x.norm(dim=1, keepdim=True) * v / nsq.sqrt(), "✗ ε_W x = −ρ ỹ v (xᵀx)/N: the factor is ‖x‖², not ‖x‖."),
        (h - rho * ty * v / nsq.sqrt(), "✗ You lost the factor ‖x‖² that comes from ε_W x = −ρ ỹ v xᵀx/N."),
        (h - rho * xsq * v / nsq.sqrt(), "✗ The correction depends on the label through ỹ = 2y − 1: ε_i points against ỹ ∇f."),
    ], "✗ Not quite. Write ε_W for 1-SAM, then ∇_v f = (W + ε_W) x.")


def check_jsam_weights(fn: Callable) -> bool:
    """Exercise 3: ``fn(W, v, x, y, rho)`` returns J-SAM's penalty weights λ_i = ρσ(−ỹ_i f_i)/N_i, shape (N,)."""
    W, v, x, y = _problem(2)
    rho = 0.4
    got = _call(fn, W, v, x, y, rho)
    if got is None:
        return False
    want = theory.two_layer_jsam_weights(W, v, x, y, rho)
    if got.shape != want.shape:
        print(f"✗ Wrong shape {tuple(got.shape)}: one weight per example, shape {tuple(want.shape)}.")
        return False
    if _close(got, want):
        print("✓ Right: large for high-loss examples and for examples with a small ‖∇f‖.")
        return True
    ty = 2.0 * y.double() - 1.0
    f = (x @ W.T) @ v
    nsq = theory.two_layer_grad_norm_sq(W, v, x)
    if _close(got, rho * torch.sigmoid(ty * f) / nsq.sqrt()):
        print("✗ The sign inside σ: the logit-scale factor is σ(−ỹf), the probability of the *wrong* label.")
    elif _close(got, rho * torch.sigmoid(-ty * f) / nsq):
        print("✗ Divide by N, not N²: λ_i = ρ σ(−ỹf)/N.")
    elif _close(got, rho * torch.sigmoid(-ty * f)):
        print("✗ You forgot to divide by N = ‖∇_w f‖ (from normalising ε_i).")
    elif _close(got, rho / nsq.sqrt()):
        print("✗ You left out the logit-scale factor σ(−ỹf).")
    elif _close(got, rho * torch.sigmoid(-(y.double()) * f) / nsq.sqrt()):
        print("✗ Use signed labels ỹ = 2y − 1 in {−1, +1}, not y in {0, 1}.")
    else:
        print("✗ Not quite. Compare s(w) ∇f(w + ε) with ∇ℓ + λ ∇R and read off λ.")
    return False

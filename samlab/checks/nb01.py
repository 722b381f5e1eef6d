"""Exercise checks for notebook 01 (SAM in linear logistic regression).

Each check runs the student's answer on inputs of its own, compares it with
:mod:`samlab.theory`, prints in plain words whether it is right and, if not, what is off
(shape, sign, a missing factor), and returns ``True`` or ``False``. It never prints the
expected values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from samlab import theory
from samlab.checks.common import as_number
from samlab.checks.common import call as _call
from samlab.checks.common import close as _close
from samlab.checks.common import shape_ok
from samlab.data import Dataset

__all__ = ["check_upweight", "check_sam_example_grads", "check_grad_ratio"]


def check_upweight(fn: Callable) -> bool:
    """Exercise 1: ``fn(m, c)`` returns r(m) = σ(−m + c)/σ(−m) element-wise (tensors in, tensor out)."""
    m = torch.linspace(-6.0, 6.0, 25, dtype=torch.float64)
    c = torch.full_like(m, 1.5)
    got = _call(fn, m, c)
    if got is None:
        return False
    want = theory.upweight(m, c)
    if got.shape != want.shape:
        print(f"✗ For 25 margins your function returned shape {tuple(got.shape)}; it should work element-wise "
              f"and return one factor per margin, shape {tuple(want.shape)}.")
        return False
    if not torch.isfinite(got).all():
        print("✗ Your function returns inf or NaN for ordinary margins. Use torch.sigmoid rather than exp by hand.")
        return False
    if _close(got, want):
        big = _call(fn, torch.tensor([-60.0, 60.0], dtype=torch.float64), torch.tensor([1.5, 1.5], dtype=torch.float64))
        if big is None:
            return False
        if not torch.isfinite(big).all():
            print("✓ Right for moderate margins. (For |m| around 60 it gives inf or NaN: the ratio of two tiny "
                  "sigmoids underflows. Try writing it with logsigmoid to see both limits numerically.)")
        else:
            print("✓ Right: r rises from 1 for very negative margins to e^c for large positive ones.")
        return True
    if _close(got, 1.0 / want):
        print("✗ That is the reciprocal: r is SAM's weight divided by GD's weight, so it is ≥ 1.")
    elif _close(got, theory.upweight(-m, c)):
        print("✗ Your factor decreases with the margin: a sign is flipped. SAM *lowers* the margin by c, "
              "so the weight σ(−m) becomes σ(−(m − c)).")
    elif _close(got, torch.sigmoid(-m + c)):
        print("✗ That is SAM's weight σ(−m + c) alone; r is its ratio to GD's weight σ(−m).")
    elif _close(got, theory.upweight(m, -c)):
        print("✗ You moved the margin the wrong way: the perturbation lowers the margin (m − c), it does not raise it.")
    elif _close(got, torch.exp(c)):
        print("✗ e^c is only the limit for large margins; r depends on m.")
    else:
        print("✗ Not quite. Write SAM's per-example weight and GD's per-example weight, then take their ratio.")
    return False


def _problem(seed: int = 0, n: int = 7, d: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2.0, n, dtype=torch.float64).unsqueeze(1)
    y = torch.randint(0, 2, (n,), generator=g)
    y[0], y[1] = 0, 1
    w = torch.randn(d, generator=g, dtype=torch.float64)
    return w, x, y


def check_sam_example_grads(fn: Callable) -> bool:
    """Exercise 2: ``fn(w, x, y, rho)`` returns 1-SAM's per-example gradients, shape (N, d), labels y in {0, 1}."""
    w, x, y = _problem()
    rho = 0.7
    got = _call(fn, w, x, y, rho)
    if got is None:
        return False
    want = theory.linear_example_grads(w, x, y, rho)
    n, d = want.shape
    if got.shape == (d,):
        print(f"✗ You returned one vector of shape ({d},): that looks like the mean over examples. "
              f"Return one gradient per example, shape ({n}, {d}).")
        return False
    if not shape_ok(got, want, "row"):
        return False
    if _close(got, want):
        print("✓ Right: each example's gradient is GD's, with the margin lowered by ρ‖x_i‖.")
        return True
    ty = 2.0 * y.double() - 1.0
    m = ty * (x @ w)
    nx = x.norm(dim=1)
    wrong = {
        "sign": -want,
        "plain": theory.linear_example_grads(w, x, y, 0.0),
        "rho_only": (-torch.sigmoid(-m + rho) * ty).unsqueeze(1) * x,
        "raised": (-torch.sigmoid(-m - rho * nx) * ty).unsqueeze(1) * x,
        "labels01": (-torch.sigmoid(-(y.double()) * (x @ w) + rho * nx) * y.double()).unsqueeze(1) * x,
        "double": 2 * want,
        "half": 0.5 * want,
    }
    if _close(got, wrong["sign"]):
        print("✗ The sign is flipped: the gradient of log(1 + e^(−m)) points *against* ỹx.")
    elif _close(got, wrong["plain"]):
        print("✗ That is plain GD's per-example gradient: ρ has no effect. 1-SAM evaluates it at w + ε_i.")
    elif _close(got, wrong["rho_only"]):
        print("✗ Close: the margin drops by ρ‖x_i‖, not by ρ (ε_i has length ρ and points along x_i).")
    elif _close(got, wrong["raised"]):
        print("✗ The perturbation raises your margin; it should lower it (ε_i ascends the loss).")
    elif _close(got, wrong["labels01"]):
        print("✗ Use signed labels ỹ = 2y − 1 in {−1, +1}, not y in {0, 1}.")
    elif _close(got, wrong["double"]) or _close(got, wrong["half"]):
        print("✗ Off by a factor of 2. The logistic loss log(1 + e^(−m)) has derivative −σ(−m), with no extra factor.")
    else:
        print("✗ Not quite. Start from ∇ℓ_i = −σ(−m_i) ỹ_i x_i and work out the margin at w + ε_i.")
    return False


def check_grad_ratio(answer: object, w: torch.Tensor, ds: Dataset) -> bool:
    """Exercise 3: the clean/noisy ratio of mean per-example gradient norms ‖∇ℓ_i(w)‖ for weights ``w``."""
    value = as_number(answer, "The ratio")
    if value is None:
        return False
    w = w.detach().reshape(-1).to(ds.x_train.dtype)
    x, y, noisy = ds.x_train, ds.y_train, ds.is_noisy
    norms = theory.linear_grad_norms(w, x, y)
    truth = theory.clean_noisy_ratio(norms, noisy)
    close = lambda a, b: math.isclose(a, b, rel_tol=1e-4)  # noqa: E731
    if close(value, truth):
        print("✓ Right: the mean clean gradient norm over the mean noisy one, at these weights.")
        return True
    sig = torch.sigmoid(-theory.margins(w, x, y))
    loss = torch.nn.functional.softplus(-theory.margins(w, x, y))
    if close(value, 1.0 / truth):
        print("✗ That is noisy over clean; the question asks for clean over noisy.")
    elif close(value, theory.clean_noisy_ratio(sig, noisy)):
        print("✗ You left out ‖x_i‖: the norm of −σ(−m_i) ỹ_i x_i is σ(−m_i)‖x_i‖.")
    elif close(value, theory.clean_noisy_ratio(loss, noisy)):
        print("✗ That is a ratio of losses, not of gradient norms.")
    elif close(value, float(norms[~noisy].sum() / norms[noisy].sum())):
        print("✗ Use means, not sums: there are many more clean examples than noisy ones.")
    else:
        print("✗ Not quite. Compute σ(−m_i)‖x_i‖ for every example, then average over clean and over noisy ones.")
    return False

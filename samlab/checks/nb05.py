"""Exercise checks for notebook 05 (cheaper alternatives to SAM)."""

from __future__ import annotations

import math
from typing import Any

import torch

from samlab.checks.common import as_number, call, close, run_mean

__all__ = ["check_penalty_gradient", "check_recovered_fraction"]


def check_recovered_fraction(answer: object, result: dict[str, Any], method: str) -> bool:
    """Exercise 1: the fraction of SAM's gain over SGD in *final* test accuracy (each method's mean
    ``last5_test_acc``, the last-5 mean) that ``method`` recovers."""
    value = as_number(answer, "The fraction")
    if value is None:
        return False
    sgd, sam, m = (run_mean(result, label, "last5_test_acc") for label in ("SGD", "SAM", method))
    right = _fraction(result, method, "last5_test_acc")
    if math.isclose(value, right, rel_tol=1e-6, abs_tol=1e-9):
        what = (f"{method} recovers {right:.0%} of SAM's gain in final test accuracy" if right >= 0 else
                f"{method}'s final test accuracy is below SGD's: a negative fraction, {right:.0%} of SAM's gain")
        print(f"✓ Right: {what}.")
        return True
    if math.isclose(value, 100 * right, rel_tol=1e-6):
        print("✗ That is a percentage; give a fraction (1.0 = all of SAM's gain).")
    elif math.isclose(value, (sam - m) / (sam - sgd), rel_tol=1e-6):
        print("✗ That is the part of the gain that is *missing*; measure from SGD up, not from SAM down.")
    elif not math.isclose(sam, m) and math.isclose(value, (m - sgd) / (sam - m), rel_tol=1e-6):
        print("✗ Check the denominator: it is SAM's gain over SGD.")
    elif _ratio(result, method, "final_test_acc", value):
        print("✗ That uses final_test_acc, the last epoch alone, which swings from epoch to epoch: "
              "use last5_test_acc, the mean over the last 5 epochs.")
    elif _ratio(result, method, "test_at_val", value):
        print("✗ That is the fraction at the validation-chosen epoch; this exercise asks for the final accuracy "
              "(last5_test_acc).")
    else:
        print("✗ Not quite: (method − SGD) / (SAM − SGD), with each method's mean last5_test_acc.")
    return False


def _fraction(result: dict[str, Any], method: str, key: str) -> float | None:
    """(method − SGD) / (SAM − SGD) in the mean of ``key``; None where SAM has no gain or a run lacks ``key``."""
    try:
        sgd, sam, m = (run_mean(result, label, key) for label in ("SGD", "SAM", method))
    except (KeyError, TypeError):
        return None
    return (m - sgd) / (sam - sgd) if sam != sgd else None


def _ratio(result: dict[str, Any], method: str, key: str, value: float) -> bool:
    """Whether ``value`` is the recovered fraction computed with ``key`` instead of the last-5 mean."""
    other = _fraction(result, method, key)
    return other is not None and math.isclose(value, other, rel_tol=1e-6)


def check_penalty_gradient(fn: object) -> bool:
    """Exercise 2: ``fn(W, gamma_w)`` returns the gradient of γ_w ‖W‖² with respect to W."""
    gen = torch.Generator().manual_seed(5)
    W = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    gamma = 0.3
    out = call(fn, W.clone(), gamma)
    if out is None:
        return False
    right = 2 * gamma * W
    if close(out, right):
        print("✓ Right: the gradient of γ‖W‖² is 2γW — a pull of every weight towards 0, like weight decay on the head.")
        return True
    if out.shape != W.shape:
        print(f"✗ The gradient has the shape of W, {tuple(W.shape)}; yours is {tuple(out.shape)}.")
    elif close(out, gamma * W):
        print("✗ Off by a factor of 2: differentiate the square, d/dW ‖W‖² = 2W.")
    elif close(out, -right):
        print("✗ The sign is flipped: the gradient points *away* from 0 (the step goes towards it).")
    elif close(out, 2 * W):
        print("✗ You forgot the coefficient γ.")
    else:
        print("✗ Not quite. Write ‖W‖² = Σ_ij W_ij² and differentiate entry by entry.")
    return False

"""Exercise checks for notebook 03 (logit vs Jacobian in deep networks)."""

from __future__ import annotations

import math
from typing import Any

from samlab.checks.common import as_number

__all__ = ["check_gain", "check_noisy_fit_at_epoch"]


def _mean_best(result: dict[str, Any], label: str) -> float:
    runs = [r for r in result["runs"] if r["method"] == label]
    return sum(r["best_test_acc"] for r in runs) / len(runs)


def check_gain(answer: object, result: dict[str, Any], method: str = "1-SAM") -> bool:
    """Exercise 1: ``method``'s gain over SGD in best test accuracy, in percentage points."""
    value = as_number(answer, "The gain")
    if value is None:
        return False
    gain = 100 * (_mean_best(result, method) - _mean_best(result, "SGD"))
    if math.isclose(value, gain, abs_tol=1e-6):
        print(f"✓ Right: {method} beats SGD by {gain:.2f} points of best test accuracy." if gain > 0
              else f"✓ Right: at this scale {method} is {-gain:.2f} points *below* SGD.")
        return True
    if math.isclose(value, gain / 100, abs_tol=1e-8):
        print("✗ That is a difference of fractions; the question asks for percentage points (× 100).")
    elif math.isclose(value, -gain, abs_tol=1e-6):
        print(f"✗ The sign is flipped: compute {method} minus SGD.")
    else:
        finals = {r["method"]: r["final_test_acc"] for r in result["runs"]}
        if method in finals and math.isclose(value, 100 * (finals[method] - finals["SGD"]), abs_tol=1e-6):
            print("✗ That uses the *final* test accuracy; the question asks for the best (peak) one.")
        else:
            print("✗ Not quite. Take each method's 'best_test_acc' from result['runs'] and subtract.")
    return False


def check_noisy_fit_at_epoch(answer: object, result: dict[str, Any], method: str, epoch: int) -> bool:
    """Exercise 2: the fraction of noisy examples ``method`` fits (to the wrong label) at ``epoch``."""
    value = as_number(answer, "The noisy-fit fraction")
    if value is None:
        return False
    run = next(r for r in result["runs"] if r["method"] == method)
    record = next(h for h in run["history"] if h["epoch"] == epoch)
    if math.isclose(value, record["noisy_fit"], abs_tol=1e-9):
        print(f"✓ Right: {method} fits {value:.1%} of the noisy examples at epoch {epoch}.")
        return True
    if math.isclose(value, record["clean_fit"], abs_tol=1e-9):
        print("✗ That is the clean fit; the question asks for the noisy examples.")
    elif value > 1:
        print("✗ Give a fraction in [0, 1], not a percentage.")
    elif math.isclose(value, run["history"][-1]["noisy_fit"], abs_tol=1e-9):
        print("✗ That is the value at the last epoch; find the record whose 'epoch' is the one asked for.")
    else:
        print("✗ Not quite. Find the run of that method, then the history record of that epoch.")
    return False

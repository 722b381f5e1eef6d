"""Exercise checks for notebook 03 (logit vs Jacobian in deep networks)."""

from __future__ import annotations

import math
from typing import Any

from samlab.checks.common import as_number, run_mean

__all__ = ["check_gain", "check_noisy_fit_at_epoch"]


def check_gain(answer: object, result: dict[str, Any], method: str = "1-SAM") -> bool:
    """Exercise 1: ``method``'s gain over SGD in the reported accuracy (``test_at_val``, test accuracy at
    the validation-chosen epoch), mean over seeds, in percentage points."""
    value = as_number(answer, "The gain")
    if value is None:
        return False
    diff = lambda key: 100 * (run_mean(result, method, key) - run_mean(result, "SGD", key))  # noqa: E731
    gain = diff("test_at_val")
    if math.isclose(value, gain, abs_tol=1e-6):
        print(f"✓ Right: on average over the seeds {method} is {gain:+.2f} points from SGD at the validation-chosen "
              "epoch. Whether that is more than the noise of the seeds is section 6's question.")
        return True
    if math.isclose(value, gain / 100, abs_tol=1e-8):
        print("✗ That is a difference of fractions; the question asks for percentage points (× 100).")
    elif math.isclose(value, -gain, abs_tol=1e-6):
        print(f"✗ The sign is flipped: compute {method} minus SGD.")
    elif math.isclose(value, diff("oracle_test_acc"), abs_tol=1e-6):
        print("✗ That uses oracle_test_acc, the test-set maximum: choosing the epoch on the test set. "
              "Use test_at_val, the epoch chosen on the noisy validation set.")
    elif math.isclose(value, diff("last5_test_acc"), abs_tol=1e-6):
        print("✗ That is the gain in the last-5 mean (training to the end); the question asks for test_at_val.")
    else:
        print("✗ Not quite. Average each method's 'test_at_val' over its runs in result['runs'], then subtract.")
    return False


def check_noisy_fit_at_epoch(answer: object, result: dict[str, Any], method: str, epoch: int, seed: int = 0) -> bool:
    """Exercise 2: the fraction of noisy examples ``method``'s run of ``seed`` fits (to the wrong label) at ``epoch``."""
    value = as_number(answer, "The noisy-fit fraction")
    if value is None:
        return False
    run = next(r for r in result["runs"] if r["method"] == method and r["seed"] == seed)
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
        print(f"✗ Not quite. Find the run of that method with seed {seed}, then the history record of that epoch.")
    return False

"""Exercise checks for notebook 04 (the GPU experiment: ResNet-18 on CIFAR-10)."""

from __future__ import annotations

import math
from typing import Any

from samlab.checks.common import as_number, run_mean

__all__ = ["check_cost_ratio", "check_early_stopping_gain"]


def check_cost_ratio(answer: object, result: dict[str, Any], method: str = "SAM") -> bool:
    """Exercise 1: how many times longer an epoch of ``method`` takes than an epoch of SGD.

    Right: mean ``seconds_per_epoch`` of ``method`` over that of SGD, or equally SGD's
    ``images_per_second`` over ``method``'s (both measure the same thing).
    """
    value = as_number(answer, "The cost ratio")
    if value is None:
        return False
    mean = lambda label, key: run_mean(result, label, key)  # noqa: E731
    by_time = mean(method, "seconds_per_epoch") / mean("SGD", "seconds_per_epoch")
    right = [by_time]
    if all(r.get("images_per_second") for r in result["runs"] if r["method"] in (method, "SGD")):
        right.append(mean("SGD", "images_per_second") / mean(method, "images_per_second"))
    if any(math.isclose(value, r, rel_tol=1e-6) for r in right):
        print(f"✓ Right: an epoch of {method} costs {value:.2f}× an epoch of SGD"
              + (" (two gradient computations per step instead of one)." if method == "SAM" else "."))
        return True
    if any(math.isclose(value, 1 / r, rel_tol=1e-6) for r in right):
        print(f"✗ The ratio is upside down: divide {method}'s time per epoch by SGD's "
              f"(or SGD's images/s by {method}'s).")
    elif any(math.isclose(value, 100 * (r - 1), rel_tol=1e-6) for r in right):
        print("✗ That is the extra cost in percent; the question asks for the ratio (e.g. 2.0, not 100).")
    elif any(math.isclose(value, r * 100, rel_tol=1e-6) for r in right):
        print("✗ Give the ratio itself, not a percentage.")
    else:
        print(f"✗ Not quite. Take 'seconds_per_epoch' of the runs of {method} and of SGD in result['runs'] "
              "and divide.")
    return False


def check_early_stopping_gain(answer: object, result: dict[str, Any], method: str = "SGD") -> bool:
    """Exercise 2: how many percentage points of test accuracy stopping ``method`` at the epoch
    chosen on the noisy validation set gains over training to the end (test accuracy at the
    validation-chosen epoch minus the mean of the last 5 epochs, × 100; means over seeds)."""
    value = as_number(answer, "The gain of early stopping")
    if value is None:
        return False
    mean = lambda key: run_mean(result, method, key)  # noqa: E731
    at_val, last5 = mean("test_at_val"), mean("last5_test_acc")
    gain = 100 * (at_val - last5)
    if math.isclose(value, gain, abs_tol=1e-6):
        word = "gains" if gain > 0 else "loses"
        print(f"✓ Right: stopping {method} at its validation-chosen epoch {word} {abs(gain):.2f} points "
              "against the mean of its last 5 epochs.")
        return True
    oracle = mean("oracle_test_acc")
    if gain and math.isclose(value, gain / 100, abs_tol=1e-8):
        print("✗ That is a difference of fractions; the question asks for percentage points (× 100).")
    elif gain and math.isclose(value, -gain, abs_tol=1e-6):
        print("✗ The sign is flipped: the validation-chosen epoch minus the last 5.")
    elif any(math.isclose(value, 100 * (oracle - end), abs_tol=1e-6) for end in (last5, mean("final_test_acc"))):
        print("✗ That uses the test-set maximum: an oracle (its epoch was chosen on the test set). "
              "Use 'test_at_val', the test accuracy at the epoch chosen on validation.")
    elif math.isclose(value, 100 * (at_val - mean("final_test_acc")), abs_tol=1e-6):
        print("✗ That compares with the last epoch alone, one point of an oscillating curve; "
              "use the mean of the last 5 epochs, 'last5_test_acc'.")
    else:
        print(f"✗ Not quite. Use 'test_at_val' and 'last5_test_acc' of the runs of {method} in result['runs'].")
    return False

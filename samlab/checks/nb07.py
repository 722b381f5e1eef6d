"""Exercise checks for notebook 07 (structured label noise)."""

from __future__ import annotations

import math
from typing import Any

import torch

from samlab.checks.common import as_number, close
from samlab.claims import final_confusion
from samlab.noise import CIFAR10_ASYMMETRIC, transition_matrix

__all__ = ["check_confusion_fraction", "check_transition_matrix"]


def _as_matrix(answer: object) -> torch.Tensor | None:
    try:
        out = torch.as_tensor(answer.tolist() if hasattr(answer, "tolist") and not isinstance(answer, torch.Tensor) else answer)
        return out.detach().to("cpu", torch.float64)
    except Exception:
        print(f"✗ Give the matrix as a tensor (or a list of lists of numbers), not a {type(answer).__name__}.")
        return None


def _asymmetric(rate: float, mapping: dict[int, int], k: int = 10) -> torch.Tensor:
    t = torch.eye(k, dtype=torch.float64)
    for src, dst in mapping.items():
        t[src, src] = 1 - rate
        t[src, dst] += rate
    return t


def check_transition_matrix(answer: object, rate: float) -> bool:
    """Exercise 1: the 10×10 transition matrix T[i, j] = P(observed j | true i) of asymmetric
    noise at ``rate`` with the CIFAR-10 mapping (truck→automobile, bird→airplane,
    deer→horse, cat↔dog)."""
    T = _as_matrix(answer)
    if T is None:
        return False
    right = transition_matrix("asymmetric", rate, 10, "cifar10")
    if close(T, right):
        print(f"✓ Right: five rows (truck, bird, deer, cat, dog) keep {1 - rate:.0%} on the diagonal and send {rate:.0%} "
              "to one other class; the other five rows are rows of the identity. Every row sums to 1.")
        return True
    if T.shape != right.shape:
        print(f"✗ T has one row and one column per class: shape (10, 10); yours is {tuple(T.shape)}.")
        return False
    sums = T.sum(1)
    if close(T, right.T):
        print("✗ Transposed: row i is the *true* class and column j the *observed* label, so each row sums to 1.")
    elif close(T, _asymmetric(1 - rate, CIFAR10_ASYMMETRIC)):
        print(f"✗ The rate and its complement are swapped: a source class keeps its label with probability 1 − {rate:g}.")
    elif not close(sums, torch.ones(10, dtype=torch.float64)):
        bad = [i for i in range(10) if not math.isclose(float(sums[i]), 1.0, abs_tol=1e-6)]
        hint = (" You added the flip probability without taking it off the diagonal."
                if all(math.isclose(float(T[i, i]), 1.0) for i in bad) else "")
        print(f"✗ Each row is a probability distribution over observed labels and must sum to 1; rows {bad} do not.{hint}")
    elif close(T, _asymmetric(rate, {dst: src for src, dst in CIFAR10_ASYMMETRIC.items()})):
        print("✗ The mapping runs the wrong way: truck→automobile means the row of *truck* (9) puts mass on column 1, "
              "not the row of automobile on column 9.")
    elif close(T, transition_matrix("symmetric-flip", rate, 10)):
        print("✗ That is symmetric noise (the rate spread over all other classes); asymmetric noise sends it to one class.")
    elif any(close(T, _asymmetric(rate, {s: d for s, d in CIFAR10_ASYMMETRIC.items() if s != skip})) for skip in (3, 5)):
        print("✗ cat↔dog goes both ways: cats become dogs *and* dogs become cats.")
    else:
        wrong = sorted({i for i in range(10) if not close(T[i], right[i])})
        print(f"✗ Not quite: check rows {wrong}. The flips are 9→1, 2→0, 4→7, 3→5 and 5→3, each with probability {rate:g}.")
    return False


def check_confusion_fraction(answer: object, result: dict[str, Any], true_class: int, predicted: int, method: str = "SGD") -> bool:
    """Exercise 2: the fraction of test images of ``true_class`` that ``method``'s final model
    predicts as ``predicted``, read from ``test_confusion`` (summed over seeds)."""
    value = as_number(answer, "The fraction")
    if value is None:
        return False
    c = final_confusion(result, method)
    row = sum(c[true_class])
    right = c[true_class][predicted] / row
    col = sum(c[i][predicted] for i in range(len(c)))
    total = sum(map(sum, c))
    is_ = lambda x: math.isclose(value, x, rel_tol=1e-6, abs_tol=1e-9)  # noqa: E731
    if is_(right):
        print(f"✓ Right: {method} predicts {right:.1%} of the class-{true_class} test images as class {predicted}.")
        return True
    if right > 0 and is_(100 * right):
        print("✗ That is a percentage; give a fraction between 0 and 1.")
    elif is_(c[true_class][predicted]):
        print("✗ That is a count of images; divide it by the number of test images of the true class.")
    elif sum(c[predicted]) and is_(c[predicted][true_class] / sum(c[predicted])) and not is_(right):
        print("✗ Rows and columns swapped: that is the other direction. Rows of test_confusion are the true class.")
    elif col and is_(c[true_class][predicted] / col):
        print("✗ You divided by the images *predicted* as that class (a column sum); divide by the images that *are* of the true class (a row sum).")
    elif is_(c[true_class][predicted] / total):
        print("✗ You divided by the whole test set; divide by the test images of the true class only.")
    elif "noise_confusion" in result and sum(result["noise_confusion"][true_class]) and is_(
        result["noise_confusion"][true_class][predicted] / sum(result["noise_confusion"][true_class])
    ):
        print("✗ That is the *training-label* noise (noise_confusion); the question is about the model's test predictions.")
    else:
        print(f"✗ Not quite: take {method}'s test_confusion C and compute C[true][predicted] / sum of row C[true].")
    return False

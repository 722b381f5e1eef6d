"""Helpers shared by the exercise checks: read a student's answer, call a student's function, read a result."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["as_number", "call", "close", "diagnose", "run_mean", "shape_ok"]


def run_mean(result: dict[str, Any], method: str, key: str) -> float:
    """The mean over ``method``'s runs (its seeds) in ``result`` of the run field ``key`` (e.g. ``test_at_val``);
    a method with no runs is an error that lists the methods there are."""
    values = [r[key] for r in result["runs"] if r["method"] == method]
    if not values:
        known = sorted({r["method"] for r in result["runs"]})
        raise ValueError(f"the result has no runs of method {method!r}; methods: {known}")
    return sum(values) / len(values)


def as_number(answer: object, what: str) -> float | None:
    """``answer`` as a float, or ``None`` after telling the student why it is not one."""
    if isinstance(answer, torch.Tensor):
        if answer.numel() != 1:
            print(f"✗ {what} should be a single number, but you gave a tensor of shape {tuple(answer.shape)}.")
            return None
        answer = answer.item()
    if not isinstance(answer, (int, float)) or isinstance(answer, bool) or math.isnan(answer):
        print(f"✗ {what} should be a number (a float), but you gave {type(answer).__name__}.")
        return None
    return float(answer)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """Same shape and equal to tolerance."""
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def call(fn: object, *args) -> torch.Tensor | None:
    """Call the student's ``fn``; its result as a float64 tensor, or ``None`` after saying what went wrong."""
    if not callable(fn):
        print(f"✗ Pass a function (the one you defined), not a {type(fn).__name__}.")
        return None
    try:
        out = fn(*args)
    except Exception as exc:  # the student's code may fail in any way: say how
        print(f"✗ Your function raised {type(exc).__name__}: {exc}")
        return None
    if not isinstance(out, torch.Tensor):
        try:
            out = torch.as_tensor(out, dtype=torch.float64)
        except Exception:
            print(f"✗ Your function should return a tensor, but it returned {type(out).__name__}.")
            return None
    return out.detach().to(torch.float64)


def shape_ok(got: torch.Tensor, want: torch.Tensor, one: str) -> bool:
    """True if ``got`` has ``want``'s shape (N rows); otherwise say how it differs (transposed, or wrong)
    and return False. ``one`` names what each row holds, e.g. ``"gradient (length h)"``."""
    if got.shape == want.shape:
        return True
    if got.shape == want.shape[::-1]:
        print(f"✗ Shape {tuple(got.shape)} is transposed: one row per example, shape {tuple(want.shape)}.")
    else:
        print(f"✗ Wrong shape {tuple(got.shape)}: one {one} per example, shape {tuple(want.shape)}.")
    return False


def diagnose(got: torch.Tensor, mistakes: Sequence[tuple[torch.Tensor, str]], otherwise: str) -> bool:
    """Print the message of the first likely mistake whose value ``got`` equals (to tolerance), else
    ``otherwise``; always False (call it once the right answer has been ruled out)."""
    print(next((msg for value, msg in mistakes if close(got, value)), otherwise))
    return False

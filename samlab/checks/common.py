"""Helpers shared by the exercise checks: read a student's answer, call a student's function."""

from __future__ import annotations

import math

import torch

__all__ = ["as_number", "call", "close"]


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

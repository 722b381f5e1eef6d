"""Exercise checks for notebook 06 (beyond SAM: F-SAM, OBF, SANER)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from samlab.analysis import GROUPS, ratio_groups
from samlab.checks.common import call, close

__all__ = ["check_fsam_perturbation", "check_ratio_fractions"]


def _as_fractions(answer: object) -> tuple[float, float, float] | None:
    """``answer`` as (amplified, shrunk, flipped), or ``None`` after saying why it is not."""
    if isinstance(answer, Mapping):
        missing = [g for g in GROUPS if g not in answer]
        if missing:
            print(f"✗ Your dict needs the keys {list(GROUPS)}; missing: {missing}.")
            return None
        values = [answer[g] for g in GROUPS]
    elif isinstance(answer, (list, tuple, torch.Tensor)) and len(answer) == 3:
        values = list(answer)
    else:
        print("✗ Give a dict {'amplified': ..., 'shrunk': ..., 'flipped': ...} (or three numbers in that order).")
        return None
    out = []
    for g, v in zip(GROUPS, values):
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            print(f"✗ The {g} fraction should be a number, but you gave {type(v).__name__}.")
            return None
        out.append(float(v))
    return out[0], out[1], out[2]


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a, b))


def check_ratio_fractions(answer: object, g: torch.Tensor, g_tilde: torch.Tensor) -> bool:
    """Exercise 1: the fractions of entries of r = g̃/(g + 1e-8) that are amplified / shrunk / flipped."""
    values = _as_fractions(answer)
    if values is None:
        return False
    g, t = torch.as_tensor(g, dtype=torch.float64), torch.as_tensor(g_tilde, dtype=torch.float64)
    right = tuple(ratio_groups(g, t)[k] for k in GROUPS)
    if _same(values, right):
        print(f"✓ Right: amplified {right[0]:.2f}, shrunk {right[1]:.2f}, flipped {right[2]:.2f}. "
              "SANER would multiply the shrunk entries by α.")
        return True
    n = g.numel()
    r = t / (g + 1e-8)
    swapped = tuple(ratio_groups(t, g)[k] for k in GROUPS)
    zero_shrunk = tuple(float(m.sum()) / n for m in (r >= 1, (r >= 0) & (r < 1), r < 0))
    if _same(values, tuple(n * v for v in right)):
        print(f"✗ Those are counts; divide by the number of entries ({n}) to get fractions.")
    elif not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        print("✗ Every entry is in exactly one group, so the three fractions sum to 1; "
              f"yours sum to {sum(values):.3f}.")
    elif _same(values, swapped):
        print("✗ The ratio is upside down: r = g̃ / g (the SAM-like gradient over SGD's), not g / g̃.")
    elif _same(values, zero_shrunk):
        print("✗ Check r = 0 (g̃ is zero there): it is not 'same sign, smaller' — "
              "it belongs with the flipped entries.")
    else:
        print("✗ Not quite. Compute r = g̃/(g + 1e-8) entry by entry: "
              "r ≥ 1 amplified, 0 < r < 1 shrunk, r ≤ 0 flipped.")
    return False


def check_fsam_perturbation(fn: object) -> bool:
    """Exercise 2: ``fn(g, m, sigma, rho)`` returns F-SAM's ε = ρ d/‖d‖ with d = g − σ m."""
    gen = torch.Generator().manual_seed(6)
    g = torch.randn(7, generator=gen, dtype=torch.float64)
    m = g + 0.5 * torch.randn(7, generator=gen, dtype=torch.float64)
    sigma, rho = 0.8, 0.05
    out = call(fn, g.clone(), m.clone(), sigma, rho)
    if out is None:
        return False
    d = g - sigma * m
    right = rho * d / d.norm()
    if close(out, right):
        cos = float(right @ g / (right.norm() * g.norm()))
        print(f"✓ Right: ‖ε‖ = ρ = {rho}, along g − σm. Here cos(ε, g) = {cos:.2f}; SAM's ε has cos 1.")
        return True
    if out.shape != g.shape:
        print(f"✗ ε has the shape of g, {tuple(g.shape)}; yours is {tuple(out.shape)}.")
    elif close(out, d):
        print("✗ That is d itself: normalise it and scale by ρ, ε = ρ d/‖d‖.")
    elif close(out, rho * g / g.norm()):
        print("✗ That is SAM's ε = ρ g/‖g‖: remove σ times the EMA m from g first.")
    elif close(out, rho * d / g.norm()):
        print("✗ Divide by ‖d‖, not ‖g‖: the perturbation has length exactly ρ.")
    elif close(out, rho * (g + sigma * m) / (g + sigma * m).norm()):
        print("✗ The sign of the EMA term is flipped: F-SAM *removes* the full-gradient estimate, "
              "d = g − σm.")
    elif close(out, -right):
        print("✗ The sign is flipped: ε points along +d (an ascent step).")
    else:
        print("✗ Not quite: d = g − σ m, then ε = ρ d/‖d‖.")
    return False

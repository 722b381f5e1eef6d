"""The papers' claims, checked on result files of :mod:`samlab.experiments`.

Each function returns a list of ``{"claim", "holds", "evidence"}`` dicts, so that a
notebook can print every claim with the numbers it rests on and assert exactly what the
data shows. Taught in notebook 03 (Baek et al.'s logit/Jacobian ablation).
"""

from __future__ import annotations

from typing import Any

__all__ = ["logit_jacobian_claims"]


def _runs(result: dict[str, Any], label: str) -> list[dict[str, Any]]:
    runs = [r for r in result["runs"] if r["method"] == label]
    if not runs:
        raise ValueError(f"result of {result.get('experiment')!r} has no runs of method {label!r}")
    return runs


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _best(result: dict[str, Any], label: str) -> float:
    return _mean([r["best_test_acc"] for r in _runs(result, label)])


def _final(result: dict[str, Any], label: str, key: str) -> float:
    return _mean([r["history"][-1][key] for r in _runs(result, label)])


def logit_jacobian_claims(result: dict[str, Any], sam: str = "1-SAM", close: float = 0.5) -> list[dict[str, Any]]:
    """Baek et al.'s claims on a ``logit-jacobian-*`` result (means over seeds).

    "J-SAM close to SAM" is read as: J-SAM's best test accuracy is within ``close`` times
    SAM's gain over SGD of SAM's (and within at least one point).
    """
    sgd, s, lsam, jsam = (_best(result, k) for k in ("SGD", sam, "L-SAM", "J-SAM"))
    batch = _best(result, "SAM") if any(r["method"] == "SAM" for r in result["runs"]) else None
    gain = s - sgd
    tol = max(0.01, close * abs(gain))
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    claims = [
        {"claim": f"{sam}'s best test accuracy is above SGD's", "holds": s > sgd,
         "evidence": f"{sam} {pct(s)} vs SGD {pct(sgd)}"},
    ]
    if batch is not None:
        claims.append({"claim": "batch SAM's best test accuracy is above SGD's", "holds": batch > sgd,
                       "evidence": f"SAM {pct(batch)} vs SGD {pct(sgd)}"})
    claims += [
        {"claim": f"J-SAM is close to {sam}", "holds": abs(jsam - s) <= tol,
         "evidence": f"J-SAM {pct(jsam)} vs {sam} {pct(s)}, tolerance {pct(tol)}"},
        {"claim": "L-SAM is closer to SGD than J-SAM is", "holds": abs(lsam - sgd) < abs(jsam - sgd),
         "evidence": f"|L-SAM − SGD| = {pct(abs(lsam - sgd))}, |J-SAM − SGD| = {pct(abs(jsam - sgd))}"},
    ]
    for key, what in (("head_norm", "last-layer weight norm"), ("feature_norm", "mean feature norm")):
        a, b = _final(result, sam, key), _final(result, "SGD", key)
        claims.append({"claim": f"{sam}'s final {what} is below SGD's", "holds": a < b,
                       "evidence": f"{sam} {a:.3g} vs SGD {b:.3g}"})
    return claims

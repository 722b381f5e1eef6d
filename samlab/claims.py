"""The papers' claims, checked on result files of :mod:`samlab.experiments`.

Each function returns a list of ``{"claim", "holds", "evidence"}`` dicts, so that a
notebook can print every claim with the numbers it rests on and assert exactly what the
data shows. Taught in notebook 03 (Baek et al.'s logit/Jacobian ablation).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "accuracy_stderr",
    "early_stopping",
    "logit_jacobian_claims",
    "memorisation_claims",
    "recovery",
    "test_size",
]


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


def test_size(result: dict[str, Any]) -> int:
    """The number of test examples of a result, read from its dataset description."""
    match = re.search(r"(\d+) test", result.get("dataset", ""))
    if match is None:
        raise ValueError(f"result of {result.get('experiment')!r} does not say its test-set size in 'dataset'")
    return int(match.group(1))


def accuracy_stderr(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy ``acc`` measured on ``n`` examples."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    if not 0 <= acc <= 1:
        raise ValueError(f"acc must be in [0, 1], got acc={acc}")
    return math.sqrt(acc * (1 - acc) / n)


def memorisation_claims(result: dict[str, Any], sam: str = "SAM") -> list[dict[str, Any]]:
    """What a ``logit-jacobian-*`` result says about the memorisation phase (final epoch).

    The robustness the papers describe has two faces: a higher *peak* (checked by
    :func:`logit_jacobian_claims`) and less memorisation of the wrong labels late in
    training, read here from the final epoch: final test accuracy and the fraction of
    noisy examples fit to their wrong label (means over seeds).
    """
    acc = {k: _final(result, k, "test_acc") for k in ("SGD", sam, "L-SAM", "J-SAM")}
    noisy = {k: _final(result, k, "noisy_fit") for k in ("SGD", sam, "L-SAM", "J-SAM")}
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    return [
        {"claim": f"{sam}'s final test accuracy is above SGD's", "holds": acc[sam] > acc["SGD"],
         "evidence": f"{sam} {pct(acc[sam])} vs SGD {pct(acc['SGD'])}"},
        {"claim": f"{sam} has fit fewer noisy examples than SGD by the end", "holds": noisy[sam] < noisy["SGD"],
         "evidence": f"noisy fit {sam} {pct(noisy[sam])} vs SGD {pct(noisy['SGD'])}"},
        {"claim": "J-SAM has fit fewer noisy examples than SGD by the end", "holds": noisy["J-SAM"] < noisy["SGD"],
         "evidence": f"noisy fit J-SAM {pct(noisy['J-SAM'])} vs SGD {pct(noisy['SGD'])}"},
        {"claim": "L-SAM's final noisy fit is closer to SGD's than J-SAM's is",
         "holds": abs(noisy["L-SAM"] - noisy["SGD"]) < abs(noisy["J-SAM"] - noisy["SGD"]),
         "evidence": f"noisy fit SGD {pct(noisy['SGD'])}, L-SAM {pct(noisy['L-SAM'])}, J-SAM {pct(noisy['J-SAM'])}"},
    ]


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


def early_stopping(result: dict[str, Any], label: str = "SGD") -> dict[str, Any]:
    """Early stopping read off ``label``'s history: the epoch of best test accuracy.

    This is an *oracle* (it looks at the test set to choose the epoch), so it is an upper
    bound on what early stopping with a held-out noisy validation set can achieve.
    """
    runs = _runs(result, label)
    return {
        "method": f"{label} + early stopping (oracle)",
        "best": _mean([r["best_test_acc"] for r in runs]),
        "final": _mean([r["best_test_acc"] for r in runs]),  # stopped at its best epoch
        "epoch": _mean([r["best_epoch"] for r in runs]),
    }


def recovery(result: dict[str, Any], baseline: str = "SGD", target: str = "SAM", cost_limit: float = 1.15) -> list[dict[str, Any]]:
    """How much of ``target``'s gain over ``baseline`` each other method recovers (notebook 05).

    One row per method label with mean best and final test accuracy over seeds, cost per
    epoch relative to ``baseline`` (seconds per epoch measured in the same result file),
    the fractions ``(method − baseline) / (target − baseline)`` of the gain in best and in
    final accuracy (``None`` where the target has no gain), and ``cheap``: cost ≤ ``cost_limit``.
    """
    if cost_limit <= 0:
        raise ValueError(f"cost_limit must be > 0, got cost_limit={cost_limit}")
    labels = list(dict.fromkeys(r["method"] for r in result["runs"]))
    for needed in (baseline, target):
        _runs(result, needed)
    spe = {k: _mean([r["seconds_per_epoch"] for r in _runs(result, k)]) for k in labels}
    best = {k: _best(result, k) for k in labels}
    final = {k: _mean([r["final_test_acc"] for r in _runs(result, k)]) for k in labels}

    def fraction(metric: dict[str, float], k: str) -> float | None:
        gain = metric[target] - metric[baseline]
        return (metric[k] - metric[baseline]) / gain if gain > 0 else None

    return [
        {
            "method": k,
            "best": best[k],
            "final": final[k],
            "cost": spe[k] / spe[baseline],
            "recovered_best": fraction(best, k),
            "recovered_final": fraction(final, k),
            "cheap": spe[k] / spe[baseline] <= cost_limit,
        }
        for k in labels
    ]

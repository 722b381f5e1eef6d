"""Claim checks on hand-made result dicts."""

from __future__ import annotations

import pytest

from samlab.claims import logit_jacobian_claims


def _run(method: str, best: float, head: float = 1.0, feat: float = 1.0, seed: int = 0) -> dict:
    return {"method": method, "seed": seed, "best_test_acc": best, "history": [{"head_norm": head, "feature_norm": feat}]}


def test_claims_that_hold():
    result = {"runs": [_run("SGD", 0.40, 3.0, 5.0), _run("SAM", 0.45), _run("1-SAM", 0.50, 2.0, 4.0),
                       _run("L-SAM", 0.41), _run("J-SAM", 0.48)]}
    claims = {c["claim"]: c["holds"] for c in logit_jacobian_claims(result)}
    assert all(claims.values()), claims
    assert len(claims) == 6


def test_claims_that_fail_and_seed_means():
    result = {"runs": [_run("SGD", 0.50, 1.0, 1.0), _run("1-SAM", 0.44, 2.0, 2.0, seed=0), _run("1-SAM", 0.46, 2.0, 2.0, seed=1),
                       _run("L-SAM", 0.45), _run("J-SAM", 0.52)]}
    claims = {c["claim"]: c for c in logit_jacobian_claims(result)}
    assert not claims["1-SAM's best test accuracy is above SGD's"]["holds"]
    assert "45.0%" in claims["1-SAM's best test accuracy is above SGD's"]["evidence"]  # mean of 44 and 46
    # gain = -0.05 -> tolerance max(0.01, 0.025) = 0.025; |0.52 - 0.45| = 0.07 > 0.025
    assert not claims["J-SAM is close to 1-SAM"]["holds"]
    assert not claims["L-SAM is closer to SGD than J-SAM is"]["holds"]  # 0.05 vs 0.02
    assert not claims["1-SAM's final last-layer weight norm is below SGD's"]["holds"]


def test_missing_method_is_named():
    with pytest.raises(ValueError, match="J-SAM"):
        logit_jacobian_claims({"experiment": "x", "runs": [_run("SGD", 0.4), _run("1-SAM", 0.4), _run("L-SAM", 0.4)]})

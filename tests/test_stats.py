"""samlab.stats against scipy (paired t test, t quantiles) and hand-computed Holm corrections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from samlab import stats


@pytest.mark.parametrize("n, seed", [(2, 0), (3, 1), (5, 2), (10, 3)])
def test_paired_matches_scipy_ttest_rel_and_t_interval(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.5, 0.05, n)
    b = a - rng.normal(0.01, 0.02, n)
    p = stats.paired(a, b)
    ref = st.ttest_rel(a, b)
    d = a - b
    assert p.n == n and p.df == n - 1
    assert p.mean == pytest.approx(d.mean())
    assert p.sd == pytest.approx(d.std(ddof=1))
    assert p.se == pytest.approx(d.std(ddof=1) / math.sqrt(n))
    assert p.t == pytest.approx(ref.statistic)
    assert p.p == pytest.approx(ref.pvalue)
    half = st.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    assert p.ci == pytest.approx((d.mean() - half, d.mean() + half))
    lo, hi = ref.confidence_interval(0.95)
    assert p.ci == pytest.approx((lo, hi))


def test_paired_with_one_seed_or_no_spread():
    one = stats.paired([0.6], [0.5])
    assert one.n == 1 and math.isnan(one.p) and math.isinf(one.se) and one.mean == pytest.approx(0.1)
    same = stats.paired([0.5, 0.6], [0.4, 0.5])  # every difference 0.1: no spread
    assert same.p == 0.0 and same.t == math.inf
    zero = stats.paired([0.5, 0.6], [0.5, 0.6])
    assert math.isnan(zero.p)


def test_paired_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same length"):
        stats.paired([1, 2], [1])
    with pytest.raises(ValueError, match="same length"):
        stats.paired([], [])
    with pytest.raises(ValueError, match="confidence must be in"):
        stats.paired([1, 2], [1, 2], confidence=1.5)
    with pytest.raises(ValueError, match="a must not contain NaN"):
        stats.paired([1, math.nan], [1, 2])


def test_holm_hand_computed():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # by hand: sorted 0.001 (x3 = 0.003), 0.02 (x2 = 0.04), 0.6 (x1 = 0.6)
    assert stats.holm([0.6, 0.001, 0.02]) == pytest.approx([0.6, 0.003, 0.04])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.04]) == pytest.approx([0.04])
    assert stats.holm([]) == []
    assert stats.holm([math.nan, 0.01]) == pytest.approx([1.0, 0.02])  # NaN counts as 1 and stays in the family
    with pytest.raises(ValueError, match="pvalues must lie in"):
        stats.holm([1.5])


def test_holm_is_monotone_and_never_below_the_raw_p():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, rng.integers(1, 12))
        q = stats.holm(p)
        order = np.argsort(p)
        assert all(np.diff(np.asarray(q)[order]) >= -1e-15)
        assert all(qi >= pi - 1e-15 and qi <= 1 for pi, qi in zip(p, q))
        # Bonferroni bounds Holm from above
        assert all(qi <= min(1, len(p) * pi) + 1e-15 for pi, qi in zip(p, q))


def test_claims_family_verdicts_and_lines():
    a = [0.60, 0.62, 0.61, 0.63, 0.64]
    base = [0.50, 0.51, 0.52, 0.50, 0.53]
    family = {
        ("B", "SGD", "test_at_val", "greater"): (a, base),
        # the same data claimed the other way: p is tiny but the sign is wrong
        ("B", "SGD", "test_at_val", "less"): (a, base),
        ("C", "SGD", "test_at_val", "greater"): ([0.5], [0.4]),
    }
    out = stats.claims(family)
    assert list(out) == list(family)
    ref = st.ttest_rel(a, base).pvalue
    up = out["B", "SGD", "test_at_val", "greater"]
    down = out["B", "SGD", "test_at_val", "less"]
    assert up.test.p == pytest.approx(ref) and ref < 1e-3
    # by hand: sorted p = (ref, ref, 1 [no test]); the tie gets 3·ref and max(3·ref, 2·ref) = 3·ref
    assert up.p_holm == pytest.approx(3 * ref) and down.p_holm == pytest.approx(3 * ref)
    assert up.holds and up.verdict == "holds"
    assert not down.holds and down.verdict == "not established"
    one = out["C", "SGD", "test_at_val", "greater"]
    assert not one.holds and one.p_holm == 1.0
    line = up.line()
    for part in ("B > SGD in test_at_val", "paired t test", "n=5", "df=4", "Holm p=", "(m=3)", "95% CI", "-> holds"):
        assert part in line, part
    assert down.line().endswith("-> not established") and "n=1: no paired test" in one.line()


def test_claims_holm_turns_a_marginal_test_into_not_established():
    rng = np.random.default_rng(5)
    base = rng.normal(0.5, 0.02, 5)
    a = base + np.array([0.012, 0.004, 0.010, 0.001, 0.011])
    p = st.ttest_rel(a, base).pvalue
    assert 0.0125 < p < 0.05  # significant alone, not after four tests
    alone = stats.claims({("A", "S", "q", "greater"): (a, base)})
    assert alone["A", "S", "q", "greater"].holds
    noise = np.random.default_rng(1)
    others = {(f"X{i}", "S", "q", "greater"): (base + noise.normal(0, 0.01, 5), base) for i in range(3)}
    four = stats.claims({("A", "S", "q", "greater"): (a, base), **others})
    assert all(c.test.p > 0.2 for k, c in four.items() if k[0] != "A")
    # A has the smallest p of four: Holm multiplies it by 4
    assert four["A", "S", "q", "greater"].p_holm == pytest.approx(4 * p)
    assert not four["A", "S", "q", "greater"].holds


def test_claims_bad_inputs_are_named():
    with pytest.raises(ValueError, match="direction"):
        stats.claims({("A", "B", "q", "up"): ([1, 2], [1, 2])})
    with pytest.raises(ValueError, match="alpha must be in"):
        stats.claims({}, alpha=0)


def test_mean_interval_matches_scipy():
    v = [0.51, 0.55, 0.49, 0.53]
    m, h = stats.mean_interval(v)
    assert m == pytest.approx(np.mean(v))
    assert h == pytest.approx(st.t.ppf(0.975, 3) * np.std(v, ddof=1) / 2)
    assert stats.mean_interval([0.5])[1] == math.inf

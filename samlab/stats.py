"""Statistics for comparing methods over seeds: paired t tests, Holm's correction, claims with verdicts.

The one place where samlab decides whether a difference between two methods is evidence
(README, *Results*; taught in notebook 00, section 3):

* :func:`paired` — a paired comparison over seeds. Runs with the same seed share the
  initial weights, the batch order, the label noise and the validation split, so the
  per-seed differences ``d_i = a_i − b_i`` remove most of the seed-to-seed spread. It
  returns n, the mean difference d̄, the sample standard deviation s_d (n − 1 in the
  denominator), the standard error s_d/√n, t = d̄ / (s_d/√n) with n − 1 degrees of
  freedom, the two-sided p-value of the t distribution (``scipy.stats``) and the 95%
  t confidence interval d̄ ± t_{0.975, n−1} · s_d/√n.
* :func:`holm` — Holm–Bonferroni step-down adjusted p-values for a family of tests:
  sort the m p-values, multiply the i-th smallest by (m − i + 1), take the running
  maximum (so the adjusted values are monotone in the raw ones) and cap at 1.
* :func:`claims` — a family of claims, each keyed by ``(method, baseline, quantity,
  direction)`` (direction ``"greater"`` or ``"less"``: how ``method`` should differ from
  ``baseline``). A claim **holds** only when its Holm-corrected p-value is below ``alpha``
  (0.05) *and* the mean difference has the claimed sign; otherwise it is **not
  established** — it is kept and printed, never dropped. Every claim prints one line
  (:meth:`Claim.line`) with the test, n, t, df, the corrected p, the interval and the
  verdict.

A comparison with fewer than two pairs has no standard error: t and p are NaN, the
interval is unbounded, and the claim cannot hold. In Holm's correction a NaN p-value
counts as 1 (the test still belongs to the family, so it still costs the others).

Taught in notebooks 05–07 through :mod:`samlab.claims`, which computes the per-run
quantities from result files and calls this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ALPHA", "DIRECTIONS", "Claim", "Paired", "claims", "critical_t", "holm", "mean_interval", "paired"]

ALPHA = 0.05
DIRECTIONS = ("greater", "less")


@dataclass(frozen=True)
class Paired:
    """A paired comparison of ``a`` and ``b`` over n seeds (differences ``a − b``)."""

    n: int
    mean: float  #: mean difference d̄
    sd: float  #: sample standard deviation of the differences (NaN when n < 2)
    se: float  #: standard error sd/√n (inf when n < 2)
    t: float  #: d̄ / se (NaN when n < 2, or when every difference is 0)
    df: int  #: n − 1
    p: float  #: two-sided p-value of the t distribution with df degrees of freedom (NaN when undefined)
    ci: tuple[float, float]  #: the t confidence interval of the mean difference
    confidence: float = 0.95


def _numbers(name: str, values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    if any(math.isnan(v) for v in out):
        raise ValueError(f"{name} must not contain NaN, got {name}={out}")
    return out


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Paired:
    """The paired t comparison of ``a`` and ``b`` (same seeds, same order): see the module docstring."""
    from scipy import stats as st

    a, b = _numbers("a", a), _numbers("b", b)
    if len(a) != len(b) or not a:
        raise ValueError(f"a and b must have the same length >= 1 (one value per seed), got {len(a)} and {len(b)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got confidence={confidence}")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return Paired(n, mean, math.nan, math.inf, math.nan, 0, math.nan, (-math.inf, math.inf), confidence)
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
    se = sd / math.sqrt(n)
    df = n - 1
    if se == 0:
        t = math.nan if mean == 0 else math.copysign(math.inf, mean)
        p = math.nan if mean == 0 else 0.0
        return Paired(n, mean, sd, se, t, df, p, (mean, mean), confidence)
    t = mean / se
    p = float(2 * st.t.sf(abs(t), df))
    half = critical_t(1 - confidence, df) * se
    return Paired(n, mean, sd, se, t, df, p, (mean - half, mean + half), confidence)


def critical_t(level: float, df: int) -> float:
    """The two-sided critical |t| at ``level`` with ``df`` degrees of freedom: t_{1 − level/2, df}."""
    from scipy import stats as st

    return float(st.t.ppf(1 - level / 2, df))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean of ``values`` and the half-width of its t confidence interval (inf for one value)."""
    p = paired(values, [0.0] * len(values), confidence)
    return p.mean, (p.ci[1] - p.mean) if p.n > 1 else math.inf


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values, in the order given (NaN counts as 1)."""
    p = [1.0 if math.isnan(float(v)) else float(v) for v in pvalues]
    if any(not 0 <= v <= 1 for v in p):
        raise ValueError(f"pvalues must lie in [0, 1], got {list(pvalues)}")
    m = len(p)
    order = sorted(range(m), key=p.__getitem__)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


Key = tuple[str, str, str, str]  #: (method, baseline, quantity, direction)


@dataclass(frozen=True)
class Claim:
    """"``method`` is ``direction`` than ``baseline`` in ``quantity``", with its test and verdict."""

    method: str
    baseline: str
    quantity: str
    direction: str  #: "greater" or "less"
    test: Paired
    p_holm: float  #: Holm-adjusted p-value within the family it was tested in
    family_size: int
    alpha: float = ALPHA

    @property
    def key(self) -> Key:
        return (self.method, self.baseline, self.quantity, self.direction)

    @property
    def holds(self) -> bool:
        sign_ok = self.test.mean > 0 if self.direction == "greater" else self.test.mean < 0
        return self.test.n > 1 and self.p_holm < self.alpha and sign_ok

    @property
    def verdict(self) -> str:
        return "holds" if self.holds else "not established"

    def line(self, scale: float = 100.0, unit: str = " points") -> str:
        """One line: the claim, the test, n, t, df, Holm-corrected p, the interval, the verdict.

        Differences are multiplied by ``scale`` (accuracies in percentage points by default)."""
        t = self.test
        claim = f"{self.method} {'>' if self.direction == 'greater' else '<'} {self.baseline} in {self.quantity}"
        if t.n < 2:
            stats = f"n={t.n}: no paired test (needs 2 seeds); mean difference {scale * t.mean:+.2f}{unit}"
        else:
            stats = (
                f"paired t test, n={t.n}, t={t.t:.2f}, df={t.df}, Holm p={self.p_holm:.3g} (m={self.family_size}), "
                f"mean difference {scale * t.mean:+.2f}{unit}, {100 * t.confidence:.0f}% CI "
                f"[{scale * t.ci[0]:+.2f}, {scale * t.ci[1]:+.2f}]"
            )
        return f"{claim}: {stats} -> {self.verdict}"


def claims(
    family: Mapping[Key, tuple[Sequence[float], Sequence[float]]], alpha: float = ALPHA
) -> dict[Key, Claim]:
    """Test a family of claims ``{(method, baseline, quantity, direction): (a, b)}`` with Holm's correction.

    ``a`` and ``b`` are the per-seed values of ``method`` and ``baseline`` (same seeds, same
    order). Every claim of the family is returned, in the order given, whatever its verdict.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got alpha={alpha}")
    for key in family:
        if len(key) != 4 or key[3] not in DIRECTIONS:
            raise ValueError(f"a claim's key must be (method, baseline, quantity, direction) with direction in {DIRECTIONS}, got {key!r}")
    tests = {key: paired(a, b) for key, (a, b) in family.items()}
    adjusted = holm([t.p for t in tests.values()])
    return {
        key: Claim(*key, test=t, p_holm=q, family_size=len(tests), alpha=alpha)
        for (key, t), q in zip(tests.items(), adjusted)
    }

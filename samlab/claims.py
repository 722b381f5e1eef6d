"""The papers' claims, checked on result files of :mod:`samlab.experiments`.

Every claim is a dict with ``"claim"`` (its wording, for printing), ``"holds"``, ``"verdict"``
and ``"evidence"``, so that a notebook can print each claim with the numbers it rests on and
assert exactly what the data shows. The comparisons are paired over seeds and tested with
:mod:`samlab.stats` (paired t, Holm's correction over a family, a verdict per claim):
:func:`paired_family` for the pre-registered families of notebooks 03 and 05–07
(:mod:`samlab.preregistered`) and for notebook 04's GPU comparison, :func:`phase_claims` for
notebook 00's two phases. The per-run quantities a claim can compare are :data:`QUANTITIES`;
the confusion-matrix helpers (:func:`per_class_accuracy`, :func:`final_confusion`,
:func:`noise_source_classes`) serve notebook 07's descriptions, :func:`recovery` notebook 05's
table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Callable

from samlab import stats

__all__ = [
    "holm_bar",
    "last5_mean",
    "n_test",
    "final_confusion",
    "memorisation_epoch",
    "noise_source_classes",
    "QUANTITIES",
    "paired_differences",
    "paired_family",
    "per_class_accuracy",
    "phase_claims",
    "recovery",
    "report",
    "row_normalise",
    "table",
    "UNITS",
]


def _runs(result: dict[str, Any], label: str) -> list[dict[str, Any]]:
    runs = [r for r in result["runs"] if r["method"] == label]
    if not runs:
        raise ValueError(f"result of {result.get('experiment')!r} has no runs of method {label!r}")
    return runs


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def last5_mean(result: dict[str, Any], label: str, key: str) -> float:
    """Mean over ``label``'s seeds of each run's mean of ``key`` over its last 5 trained epochs
    (e.g. ``clean_fit``, ``noisy_fit``: what a run has fit by the end, not on one epoch)."""
    get = _last5(key)
    return _mean([get(r) for r in _runs(result, label)])


def n_test(result: dict[str, Any]) -> int:
    """The number of test examples of a result, read from its dataset description."""
    match = re.search(r"(\d+) test", result.get("dataset", ""))
    if match is None:
        raise ValueError(f"result of {result.get('experiment')!r} does not say its test-set size in 'dataset'")
    return int(match.group(1))


def report(claims: list[dict[str, Any]]) -> str:
    """One line per claim: its verdict (``✓ holds`` or ``✗ not established``), the claim, and its
    evidence in brackets."""

    def mark(c: dict[str, Any]) -> str:
        return "✓ holds             " if c["holds"] else "✗ not established   "

    return "\n".join(mark(c) + f"{c['claim']}  [{c['evidence']}]" for c in claims)


def memorisation_epoch(run: dict[str, Any], level: float = 0.5) -> int | None:
    """The first epoch at which a run fits at least ``level`` of its noisy examples to their
    wrong label (``None`` if it never does): how long a method holds off memorisation."""
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got level={level}")
    return next((int(h["epoch"]) for h in run["history"] if h["noisy_fit"] is not None and h["noisy_fit"] >= level), None)


def recovery(
    result: dict[str, Any],
    baseline: str = "SGD",
    target: str = "SAM",
    cost_limit: float = 1.15,
    costs: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """How much of ``target``'s gain over ``baseline`` each other method recovers (notebook 05).

    One row per method label: ``at_val`` (mean over seeds of the test accuracy at the
    validation-chosen epoch, a run's reported accuracy), ``last5`` (mean of the last-5 test
    accuracy: training run to the end, no stopping) and ``oracle`` (the mean test-set
    maximum, for a labelled column only); ``cost`` per epoch relative to ``baseline``
    (``costs[label]`` where given, e.g. from :func:`samlab.bench.bench_costs`, else the
    seconds per epoch measured in the same result file); the fractions ``(method −
    baseline) / (target − baseline)`` of the gain in ``at_val`` and in ``last5``
    (``recovered_at_val``, ``recovered_last5``; ``None`` where the target has no gain); and
    ``cheap``: cost ≤ ``cost_limit``. A fraction is a ratio of two noisy differences: read
    it beside the paired tests, never instead of them.
    """
    if cost_limit <= 0:
        raise ValueError(f"cost_limit must be > 0, got cost_limit={cost_limit}")
    labels = list(dict.fromkeys(r["method"] for r in result["runs"]))
    for needed in (baseline, target):
        _runs(result, needed)
    spe = {k: _mean([r["seconds_per_epoch"] for r in _runs(result, k)]) for k in labels}
    metric = {
        name: {k: _mean([get(r) for r in _runs(result, k)]) for k in labels}
        for name, get in (("at_val", _field(result, "test_at_val")), ("last5", _field(result, "last5_test_acc")),
                          ("oracle", _field(result, "oracle_test_acc")))
    }

    def fraction(values: dict[str, float], k: str) -> float | None:
        gain = values[target] - values[baseline]
        return (values[k] - values[baseline]) / gain if gain > 0 else None

    rows = []
    for k in labels:
        cost = (costs or {}).get(k, spe[k] / spe[baseline])
        rows.append({
            "method": k, "at_val": metric["at_val"][k], "last5": metric["last5"][k], "oracle": metric["oracle"][k],
            "cost": cost, "recovered_at_val": fraction(metric["at_val"], k),
            "recovered_last5": fraction(metric["last5"], k), "cheap": cost <= cost_limit,
        })
    return rows


# --------------------------------------------------------------------------- structured noise (notebook 07)


def _square(counts: Any) -> list[list[float]]:
    rows = [[float(v) for v in row] for row in (counts.tolist() if hasattr(counts, "tolist") else counts)]
    if not rows or any(len(row) != len(rows) for row in rows):
        raise ValueError(f"counts must be a non-empty square matrix, got {len(rows)} rows of lengths {sorted({len(r) for r in rows})}")
    return rows


def row_normalise(counts: Any) -> list[list[float]]:
    """Each row of a confusion (or transition) matrix divided by its sum.

    ``counts[i][j]``: examples of true class ``i`` with label or prediction ``j`` (a list of
    lists, a tensor or an array). A row without examples becomes NaNs: there is nothing
    to normalise.
    """
    rows = _square(counts)
    return [[v / sum(row) for v in row] if sum(row) > 0 else [math.nan] * len(row) for row in rows]


def per_class_accuracy(counts: Any) -> list[float]:
    """Per-class accuracy (recall) of a confusion matrix: diagonal / row sums (NaN for an empty row)."""
    return [row[i] for i, row in enumerate(row_normalise(counts))]


def final_confusion(result: dict[str, Any], label: str) -> list[list[int]]:
    """``label``'s final test confusion matrix, summed over its seeds: C[i][j] = images of class i predicted as j."""
    runs = _runs(result, label)
    if any("test_confusion" not in r for r in runs):
        raise ValueError(f"result of {result.get('experiment')!r} has no test_confusion for {label!r} (written before it was recorded)")
    k = len(runs[0]["test_confusion"])
    return [[sum(r["test_confusion"][i][j] for r in runs) for j in range(k)] for i in range(k)]


def noise_source_classes(result: dict[str, Any]) -> list[int]:
    """The classes that lose training labels to noise: rows of ``noise_confusion`` with off-diagonal counts.

    For asymmetric noise on CIFAR-10 these are the source classes of the mapping (truck,
    bird, deer, cat, dog); for the cyclic mapping of other datasets, every class.
    """
    if "noise_confusion" not in result:
        raise ValueError(f"result of {result.get('experiment')!r} has no noise_confusion (written before it was recorded)")
    rows = _square(result["noise_confusion"])
    return [i for i, row in enumerate(rows) if sum(row) - row[i] > 0]


#: quantity -> (the direction of an improvement, how the quantity reads in a claim, result -> (run -> value)).
#: ``test_at_val`` (test accuracy at the epoch chosen on the noisy validation set) is a run's reported
#: accuracy; ``oracle_test_acc`` chooses the epoch on the test set (an oracle: compare with it, never select by it).
QUANTITIES: dict[str, tuple[str, str, Callable[[dict[str, Any]], Callable[[dict[str, Any]], float]]]] = {
    "test_at_val": ("greater", "test accuracy at the validation-chosen epoch", lambda result: _field(result, "test_at_val")),
    "last5_test_acc": ("greater", "mean test accuracy over the last 5 epochs", lambda result: _field(result, "last5_test_acc")),
    "last5_noisy_fit": ("less", "mean noisy fit over the last 5 epochs", lambda result: _field(result, "last5_noisy_fit")),
    "oracle_test_acc": ("greater", "test-set maximum (oracle)", lambda result: _field(result, "oracle_test_acc")),
    "final_test_acc": ("greater", "final test accuracy", lambda result: _field(result, "final_test_acc")),
    "final_noisy_fit": ("less", "final noisy fit", lambda result: lambda run: run["history"][-1]["noisy_fit"]),
    "source_acc_at_val": ("greater", "test accuracy on the classes that lose labels, at the validation-chosen epoch",
                          lambda result: _at_val("test_source_acc")),
    "last5_head_norm": ("less", "mean last-layer weight norm over the last 5 epochs", lambda result: _last5("head_norm")),
    "last5_feature_norm": ("less", "mean feature norm over the last 5 epochs", lambda result: _last5("feature_norm")),
}


def _last5(key: str) -> Callable[[dict[str, Any]], float]:
    """Per run: the mean of ``key`` over the last 5 trained epochs of its history (as last5_test_acc)."""

    def get(run: dict[str, Any]) -> float:
        trained = [h[key] for h in run["history"] if h["epoch"] > 0] or [run["history"][-1][key]]
        window = trained[-5:]
        return float(sum(window) / len(window))

    return get

def _record_at_val(run: dict[str, Any]) -> dict[str, Any]:
    """A run's history record at its validation-chosen epoch."""
    if run.get("val_epoch") is None:
        raise ValueError(f"run ({run['method']}, seed {run['seed']}) has no val_epoch: it predates the validation split")
    return next(h for h in run["history"] if h["epoch"] == run["val_epoch"])


def _at_val(key: str) -> Callable[[dict[str, Any]], float]:
    """Per run: ``key`` in its history at its validation-chosen epoch (as test_at_val for test_acc)."""

    def get(run: dict[str, Any]) -> float:
        record = _record_at_val(run)
        if record.get(key) is None:
            raise ValueError(f"run ({run['method']}, seed {run['seed']}) has no {key} in its history (recorded since 2026-11-29)")
        return float(record[key])

    return get


_VALIDATION_KEYS = ("test_at_val", "last5_test_acc", "last5_noisy_fit", "oracle_test_acc")


def _field(result: dict[str, Any], key: str) -> Callable[[dict[str, Any]], float]:
    def get(run: dict[str, Any]) -> float:
        value = run.get(key)
        if value is None:
            why = " (the file predates the validation split: re-run the experiment)" if key in _VALIDATION_KEYS else ""
            raise ValueError(
                f"result of {result.get('experiment')!r} has no {key} for run ({run['method']}, seed {run['seed']}){why}"
            )
        return float(value)

    return get


def paired_differences(result: dict[str, Any], label: str, baseline: str, key: str = "test_at_val") -> list[float]:
    """``label``'s value minus ``baseline``'s, seed by seed, over the seeds both have run.

    Runs with the same seed share the initial weights, the batch order, the noisy labels
    and the validation split, so the per-seed difference removes most of the seed-to-seed
    spread (a *paired* comparison). ``key``: one of :data:`QUANTITIES` — ``test_at_val``
    (the reported accuracy), ``last5_test_acc``, ``last5_noisy_fit``, ``oracle_test_acc``,
    ``final_test_acc``, ``final_noisy_fit``, ``source_acc_at_val``, ... The
    numbers :func:`paired_family` tests (its ``t`` is their mean over their standard error).
    """
    a, b = _paired_values(_per_seed(result, key), result, label, baseline)
    return [x - y for x, y in zip(a, b)]


def _per_seed(result: dict[str, Any], key: str) -> dict[str, dict[int, float]]:
    """Method label -> seed -> the value of ``key`` for that run."""
    if key not in QUANTITIES:
        raise ValueError(f"key must be one of {tuple(QUANTITIES)}, got key={key!r}")
    get = QUANTITIES[key][2](result)
    out: dict[str, dict[int, float]] = {}
    for r in result["runs"]:
        out.setdefault(r["method"], {})[r["seed"]] = get(r)
    return out


def _by_seed(values: dict[str, dict[int, float]], result: dict[str, Any], label: str, baseline: str) -> dict[int, tuple[float, float]]:
    """Seed -> (``label``'s value, ``baseline``'s value), over the seeds both ran."""
    for k in (label, baseline):
        if k not in values:
            _runs(result, k)  # raises, naming the missing label
    a, b = values[label], values[baseline]
    return {s: (a[s], b[s]) for s in sorted(a.keys() & b.keys())}


def _paired_values(values: dict[str, dict[int, float]], result: dict[str, Any], label: str, baseline: str) -> tuple[list[float], list[float]]:
    pairs = _by_seed(values, result, label, baseline)
    if not pairs:
        raise ValueError(f"result of {result.get('experiment')!r}: {label!r} and {baseline!r} share no seed")
    return [a for a, _ in pairs.values()], [b for _, b in pairs.values()]


#: how a difference of each quantity is printed: (scale, unit); accuracies and fractions of the
#: training set in percentage points, norms as they are
UNITS: dict[str, tuple[float, str]] = {"last5_head_norm": (1.0, ""), "last5_feature_norm": (1.0, "")}
_POINTS = (100.0, " points")


def _claim_dict(c: stats.Claim, what: str, quantity: str | None = None) -> dict[str, Any]:
    """A tested claim as a notebook prints it: ``method``, ``baseline``, ``quantity``, ``direction``,
    ``key`` (``(method, quantity)``), ``claim`` (its wording), ``holds``, ``verdict``, ``evidence``
    (test, n, t, df, Holm p, 95% CI), the test's ``mean_difference`` (method − baseline),
    ``stderr``, ``seeds``, ``t``, ``df``, ``p``, ``p_holm``, ``ci``, ``family_size``, and the
    ``scale`` and ``unit`` its differences are printed in (:data:`UNITS`); :func:`paired_family`
    adds ``experiment``."""
    word = "above" if c.direction == "greater" else "below"
    t = c.test
    scale, unit = UNITS.get(quantity or "", _POINTS)
    return {
        "method": c.method,
        "baseline": c.baseline,
        "quantity": c.quantity,
        "direction": c.direction,
        "key": (c.method, c.quantity),
        "claim": f"{c.method}'s {what} is {word} {c.baseline}'s (paired over seeds)",
        "holds": c.holds,
        "verdict": c.verdict,
        "evidence": c.line(scale, unit),
        "scale": scale,
        "unit": unit,
        "mean_difference": t.mean,
        "stderr": t.se,
        "seeds": t.n,
        "t": t.t,
        "df": t.df,
        "p": t.p,
        "p_holm": c.p_holm,
        "ci": t.ci,
        "family_size": c.family_size,
    }


def paired_family(
    comparisons: Sequence[tuple],
    alpha: float = stats.ALPHA,
) -> dict[tuple[str, str, str, str, str], dict[str, Any]]:
    """One family of paired claims, Holm-corrected together (e.g. every claim of a notebook).

    ``comparisons``: ``(result, method, baseline, quantity[, direction[, control]])``; the
    direction defaults to the quantity's improvement (:data:`QUANTITIES`: higher accuracy,
    lower noisy fit). With ``control`` (another result with the same seeds) the claim is a
    *contrast*: per seed s, the gap d_s = (method − baseline) in ``result`` minus the same
    gap in ``control``, tested by a paired t test over the seeds both results have —
    "SAM's gain over SGD is smaller under asymmetric noise than under symmetric noise" is
    such a claim; comparing the two verdicts instead would not test it (a difference in
    significance is not a significant difference). Returns, in the order given,
    ``(experiment, method, baseline, quantity, direction) -> claim`` (a dict as
    :func:`_claim_dict` describes; for a contrast the experiment is ``"A vs B"``, the method
    ``"method − baseline"`` and the baseline ``"method − baseline in B"``), each with the
    verdict of :class:`samlab.stats.Claim`: "holds" only when the Holm-corrected p <
    ``alpha`` and the mean difference has the claimed sign. No claim is dropped.
    """
    family: dict[tuple[str, str, str, str], tuple[list[float], list[float]]] = {}
    keys: list[tuple[str, str, str, str, str]] = []
    for item in comparisons:
        if len(item) not in (4, 5, 6):
            raise ValueError(
                f"a comparison must be (result, method, baseline, quantity[, direction[, control]]), got {len(item)} items"
            )
        result, method, baseline, quantity = item[:4]
        if quantity not in QUANTITIES:
            raise ValueError(f"quantity must be one of {tuple(QUANTITIES)}, got quantity={quantity!r}")
        direction = item[4] if len(item) >= 5 and item[4] is not None else QUANTITIES[quantity][0]
        if direction not in stats.DIRECTIONS:
            raise ValueError(f"direction must be one of {stats.DIRECTIONS}, got direction={direction!r}")
        control = item[5] if len(item) == 6 else None
        experiment = str(result.get("experiment"))
        if control is None:
            key = (experiment, method, baseline, quantity, direction)
            pair = _paired_values(_per_seed(result, quantity), result, method, baseline)
        else:
            where = str(control.get("experiment"))
            key = (f"{experiment} vs {where}", f"{method} − {baseline}", f"{method} − {baseline} in {where}", quantity, direction)
            pair = _contrast_values(result, control, method, baseline, quantity)
        if key in keys:
            raise ValueError(f"comparison {key} appears twice in one family")
        keys.append(key)
        family[(key[1], key[2], f"{quantity} [{key[0]}]", direction)] = pair
    tested = stats.claims(family, alpha)
    out = {}
    for key, c in zip(keys, tested.values()):
        d = _claim_dict(c, QUANTITIES[key[3]][1], key[3])
        d["quantity"], d["key"], d["experiment"] = key[3], (key[1], key[3]), key[0]
        out[key] = d
    return out


def _contrast_values(
    result: dict[str, Any], control: dict[str, Any], method: str, baseline: str, quantity: str
) -> tuple[list[float], list[float]]:
    """Per seed (those both results have): the gap ``method − baseline`` in ``result`` and in ``control``."""
    gaps = [
        {s: a - b for s, (a, b) in _by_seed(_per_seed(res, quantity), res, method, baseline).items()}
        for res in (result, control)
    ]
    seeds = sorted(gaps[0].keys() & gaps[1].keys())
    if not seeds:
        raise ValueError(
            f"{result.get('experiment')!r} and {control.get('experiment')!r} share no seed at which both have "
            f"{method!r} and {baseline!r}"
        )
    return [gaps[0][s] for s in seeds], [gaps[1][s] for s in seeds]


def table(claims: Sequence[dict[str, Any]]) -> str:
    """A family of tested claims as a fixed-width table, one row per claim, in the given order.

    Columns: the experiment, the claim (method, direction, baseline, quantity), n (seeds), the
    mean paired difference with its 95% t interval (in points for accuracies and fractions),
    t with its degrees of freedom, Holm's corrected p (over the whole family, m claims) and
    the verdict. Claims as :func:`paired_family` (or :mod:`samlab.preregistered`) returns.
    """
    rows = [("experiment", "claim", "n", "mean diff. [95% CI]", "t (df)", "Holm p", "verdict")]
    for c in claims:
        sign = ">" if c["direction"] == "greater" else "<"
        scale = c.get("scale", _POINTS[0])
        if c["seeds"] >= 2:
            lo, hi = c["ci"]
            diff = f"{scale * c['mean_difference']:+.2f} [{scale * lo:+.2f}, {scale * hi:+.2f}]"
            t, p = f"{c['t']:.2f} ({c['df']})", f"{c['p_holm']:.2g}"
        else:
            diff, t, p = f"{scale * c['mean_difference']:+.2f}", "—", "—"
        rows.append((c.get("experiment", ""), f"{c['method']} {sign} {c['baseline']}: {c['quantity']}", str(c["seeds"]),
                     diff, t, p, c["verdict"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    m = claims[0]["family_size"] if claims else 0
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"(one family of m = {m} claims; accuracies and noisy fit in percentage points, norms as they are; "
                 f"a claim holds when Holm's p < {stats.ALPHA} and the difference has the claimed sign)")
    lines.append(holm_bar(m, {c["df"] for c in claims if c["seeds"] >= 2}))
    return "\n".join(lines)


def holm_bar(m: int, dfs: set[int], alpha: float = stats.ALPHA) -> str:
    """How high the bar of a family of ``m`` two-sided paired t tests stands under Holm's
    correction: the smallest p must be below α/m, the k-th smallest below α/(m − k + 1), the
    largest below α; with one number of degrees of freedom ``dfs``, the same in |t|. (The
    95% intervals of :func:`table` are not adjusted: a claim whose interval excludes 0 can
    still fail Holm's bar.)"""
    if m < 1:
        return "(an empty family)"
    text = f"(Holm's bar: the smallest p must be below {alpha}/{m} = {alpha / m:.2g}, the largest below {alpha}"
    if len(dfs) == 1:
        (df,) = dfs
        first, last = (stats.critical_t(a, df) for a in (alpha / m, alpha))
        text += f"; at {df} degrees of freedom |t| ≥ {first:.2f} for the first step, ≥ {last:.2f} for the last"
    return text + "; the 95% intervals above are not adjusted)"


#: the two phases of training on noisy labels, read per run (notebook 00): claim text,
#: the two per-run quantities compared, and what their difference measures
_PHASES = (
    ("stopping at the validation-chosen epoch gives higher test accuracy than the last 5 epochs",
     "test_at_val", "last5_test_acc", "test accuracy (at val. epoch − last 5)"),
    ("the noisy examples are fit to their wrong label more in the last 5 epochs than at the validation-chosen epoch",
     "last5_noisy_fit", "noisy_fit_at_val", "noisy fit (last 5 − at val. epoch)"),
    ("at the validation-chosen epoch more noisy examples are predicted as their true class than as their wrong label",
     "noisy_true_at_val", "noisy_fit_at_val", "noisy examples, true class − wrong label (at val. epoch)"),
)


def _phase_values(run: dict[str, Any]) -> dict[str, float]:
    at = _record_at_val(run)
    return {"test_at_val": run["test_at_val"], "last5_test_acc": run["last5_test_acc"],
            "last5_noisy_fit": run["last5_noisy_fit"], "noisy_fit_at_val": at["noisy_fit"],
            "noisy_true_at_val": at["noisy_true"]}


def phase_claims(result: dict[str, Any], label: str = "SGD", alpha: float = stats.ALPHA) -> list[dict[str, Any]]:
    """Early learning, then memorisation, in ``label``'s runs: three paired claims over seeds.

    Per run (seed), a quantity at the epoch chosen on noisy validation accuracy is compared
    with the same run's value over its last 5 epochs, or with another quantity at that
    epoch (:data:`_PHASES`): (1) test accuracy at the validation epoch above the last-5
    mean (early stopping pays); (2) the noisy fit, the fraction of mislabelled examples
    predicted as their wrong label, higher over the last 5 epochs than at the validation
    epoch (memorisation comes late); (3) at the validation epoch, more mislabelled examples
    predicted as their true class than as their wrong label (early learning). One family:
    paired t tests over the seeds, Holm-corrected together (:func:`samlab.stats.claims`);
    each claim "holds" or is "not established" (with one seed it cannot hold). Taught in
    notebook 00. Returns dicts as :func:`paired_family` does, ``claim`` worded per claim.
    """
    per_seed = {r["seed"]: _phase_values(r) for r in _runs(result, label)}
    seeds = sorted(per_seed)
    family = {
        (label, label, quantity, "greater"): ([per_seed[s][a] for s in seeds], [per_seed[s][b] for s in seeds])
        for _, a, b, quantity in _PHASES
    }
    out = []
    for (text, *_), c in zip(_PHASES, stats.claims(family, alpha).values()):
        d = _claim_dict(c, c.quantity)
        prefix = f"{c.method} > {c.baseline} in {c.quantity}: "
        d["claim"], d["evidence"] = f"{label}: {text}", c.line().removeprefix(prefix)
        out.append(d)
    return out

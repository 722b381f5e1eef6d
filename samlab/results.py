"""Result files: what they hold, how they are read, and what is printed from them.

A result file ``data/results/<profile>/<name>.json`` is written by :mod:`samlab.runner`
(an experiment's runs) or by ``python -m samlab.bench --out`` (a benchmark), through
:mod:`samlab.resultfiles` (its path, strict JSON written atomically, the lock shared by every
process that writes it; ``path``, ``write`` and ``locked`` are re-exported here). This module
reads them, resolving the runs stored in another experiment's file (:mod:`samlab.sharing`, whose
``shared_note`` is re-exported for the notebooks); it summarises a result (mean and spread over
seeds, cost relative to SGD), prints its provenance, writes the README's generated tables
between their markers, and picks hyperparameters on validation accuracy
(:func:`select_on_validation`).

Taught in notebooks 03–07, which load committed results with :func:`load` and print
:func:`describe` beside every figure.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from samlab import profiles, stats
from samlab.resultfiles import locked, path, write
from samlab.sharing import resolve_shared, shared_note
from samlab.train import LAST, History, smoothed

__all__ = [
    "README_MARKERS",
    "committed",
    "committed_table",
    "describe",
    "histories",
    "histories_by_seed",
    "load",
    "load_bench",
    "locked",
    "shared_note",
    "memorisation_contrast",
    "path",
    "select_on_validation",
    "short",
    "summarise",
    "summary_text",
    "table_markdown",
    "update_readme",
    "write",
]

#: the README's results table sits between these lines (``make results-table``)
README_MARKERS = ("<!-- results-table:start -->", "<!-- results-table:end -->")


def _read(file: Path) -> dict[str, Any] | None:
    """The result in ``file`` with its shared runs resolved (:func:`resolve_shared`), or ``None``."""
    return resolve_shared(json.loads(file.read_text()), file.parent) if file.exists() else None


def load(name: str, profile: str | None = None, root: Path | None = None) -> dict[str, Any] | None:
    """The saved result ``name`` of ``profile`` (default: the active one), or ``None`` if there is none."""
    return _read(path(name, profile or profiles.active(), root))


def committed(profile: str, name: str, root: Path | None = None) -> dict[str, Any] | None:
    """A saved file of an explicit profile (``committed("gpu", "bench")``), or ``None``."""
    return _read(path(name, profile, root))


def load_bench(
    profile: str | None = None, model: str = "small-cnn-gn", root: Path | None = None, file: str = "bench"
) -> dict[str, Any] | None:
    """The benchmark record of ``model`` in ``<profile>/<file>.json`` (written by ``python -m samlab.bench
    --out``: ``bench`` the times, ``flops`` the counted FLOPs of ``--flops``), with the file's provenance
    merged in; ``None`` if the file or the model is absent."""
    saved = load(file, profile, root)
    if saved is None:
        return None
    for rec in saved["records"]:
        if rec["model"] == model:
            return {**{k: v for k, v in saved.items() if k != "records"}, **rec}
    return None


def short(result: dict[str, Any]) -> str:
    """``"<hardware>, <day>, <commit>"``: where and when a result was made, for titles and tables."""
    return f"{result['hardware']}, {result['date'][:10]}, {result['git_commit']}"


def describe(result: dict[str, Any]) -> str:
    """What a notebook prints under a loaded result: its data, then date, hardware, samlab version and
    commit of the run that last wrote the file, then the command that makes it again (three lines). Where
    the file's own runs (those not marked ``shared_from``, which another file's commit stamps) were trained
    at another commit than that one, or at several (a sweep resumed or extended later), a line before the
    command names each commit and its number of runs, in the order the runs are stored (every run records
    its own ``git_commit``)."""
    commits = Counter(r["git_commit"] for r in result["runs"] if "shared_from" not in r and r.get("git_commit"))
    lines = [
        result["dataset"],
        f"run of {result['date']} on {result['hardware']}, samlab {result['samlab']} ({result['git_commit']})",
        f"command: {result['command']}",
    ]
    if commits and set(commits) != {result["git_commit"]}:
        counts = ", ".join(f"{c} ({n} run{'s' * (n != 1)})" for c, n in commits.items())
        lines.insert(2, f"its runs were trained at: {counts}")
    return "\n".join(lines)


def histories(result: dict[str, Any], seed: int | None = None) -> dict[str, History]:
    """Method label -> History (of ``seed``, default: each method's first seed)."""
    out: dict[str, History] = {}
    for r in result["runs"]:
        if (seed is None and r["method"] not in out) or r["seed"] == seed:
            out[r["method"]] = _history(r)
    return out


def _history(run: dict[str, Any]) -> History:
    """A run's saved history as a History (JSON nulls back to NaN)."""
    return History(records=[{k: (float("nan") if v is None else v) for k, v in rec.items()} for rec in run["history"]])


def histories_by_seed(result: dict[str, Any]) -> dict[str, list[History]]:
    """Method label -> the History of every seed it ran, in seed order (for
    :func:`samlab.plots.training.plot_over_seeds`)."""
    out: dict[str, list[History]] = {}
    for r in sorted(result["runs"], key=lambda run: run["seed"]):
        out.setdefault(r["method"], []).append(_history(r))
    return out


def _interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of the 95% t interval (``None`` for one value)."""
    mean, half = stats.mean_interval(values)
    return mean, (half if len(values) > 1 else None)


def _last5(run: dict[str, Any]) -> float:
    """A run's last-5 mean test accuracy; for files written before it was recorded, from the history
    (the same definition: :meth:`samlab.train.History.last_mean`)."""
    if run.get("last5_test_acc") is not None:
        return run["last5_test_acc"]
    records = [{k: (float("nan") if v is None else v) for k, v in rec.items()} for rec in run["history"]]
    return History(records=records).last_mean("test_acc")


def _oracle(run: dict[str, Any]) -> float:
    """A run's test-set maximum; for files written before it was recorded under that name, from the history."""
    if run.get("oracle_test_acc") is not None:
        return run["oracle_test_acc"]
    return max(rec["test_acc"] for rec in run["history"] if rec.get("test_acc") is not None)


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: mean and spread over seeds of its accuracies, cost vs SGD.

    ``final_mean``/``final_std``: mean and standard deviation of the last epoch's test
    accuracy. ``val_mean``/``val_half``: mean and 95% t-interval
    half-width of ``test_at_val`` (the test accuracy at the validation-chosen epoch; both
    ``None`` for a file that predates the validation split, ``validation`` false);
    ``last5_*``: the same for the last-5 mean test accuracy; ``oracle_*``: for the test-set
    maximum. A half-width is ``None`` with one seed.
    """
    by: dict[str, list[dict[str, Any]]] = {}
    for r in result["runs"]:
        by.setdefault(r["method"], []).append(r)
    sgd = by.get("SGD")
    sgd_time = statistics.mean(r["seconds_per_epoch"] for r in sgd) if sgd else None
    rows = []
    for label, runs in by.items():
        final = [r["final_test_acc"] for r in runs]
        spe = statistics.mean(r["seconds_per_epoch"] for r in runs)
        validation = all(r.get("test_at_val") is not None for r in runs)
        val_mean, val_half = _interval([r["test_at_val"] for r in runs]) if validation else (None, None)
        last5_mean, last5_half = _interval([_last5(r) for r in runs])
        oracle_mean, oracle_half = _interval([_oracle(r) for r in runs])
        rows.append(
            {
                "method": label,
                "seeds": len(runs),
                "final_mean": statistics.mean(final),
                "final_std": statistics.stdev(final) if len(final) > 1 else 0.0,
                "validation": validation,
                "val_mean": val_mean,
                "val_half": val_half,
                "last5_mean": last5_mean,
                "last5_half": last5_half,
                "oracle_mean": oracle_mean,
                "oracle_half": oracle_half,
                "seconds_per_epoch": spe,
                "cost_vs_sgd": spe / sgd_time if sgd_time else None,
            }
        )
    return rows


def summary_text(result: dict[str, Any], costs: dict[str, float] | None = None) -> str:
    """A notebook's table of one result: per method, the seeds, the test accuracy at the
    validation-chosen epoch and the last-5 mean (each mean ± half-width of the 95% t interval
    over seeds), the oracle test-set maximum in its own labelled column, the seconds per
    epoch measured in the sweep and the cost relative to SGD (``costs[label]`` where given,
    e.g. from :func:`samlab.bench.bench_costs`; else the sweep's own ratio)."""
    rows = summarise(result)
    pm = lambda m, h: f"{m:.3f}" + (f" ± {h:.3f}" if h is not None else "        ")  # noqa: E731
    lines = [f"{'method':14s} {'seeds':>5s} {'test at val. epoch':>18s} {'last-5 mean':>15s} {'oracle max':>10s} "
             f"{'s/epoch':>8s} {'× SGD':>6s}"]
    for r in rows:
        cost = (costs or {}).get(r["method"], r["cost_vs_sgd"])
        val = pm(r["val_mean"], r["val_half"]) if r["validation"] else "—"
        lines.append(f"{r['method']:14s} {r['seeds']:5d} {val:>18s} {pm(r['last5_mean'], r['last5_half']):>15s} "
                     f"{r['oracle_mean']:10.3f} {r['seconds_per_epoch']:8.2f} {'—' if cost is None else f'{cost:.2f}':>6s}")
    lines.append("± : half-width of the 95% t interval over seeds. oracle max: the test-set maximum over epochs (chosen "
                 "on the test set; for comparison only). s/epoch: measured in the sweep, with other runs on the machine; "
                 + ("× SGD: from the benchmark." if costs else "× SGD: the sweep's own ratio."))
    return "\n".join(lines)


def select_on_validation(
    result: dict[str, Any],
    family: Callable[[str], str] | None = None,
    score: Callable[[dict[str, Any]], float] | None = None,
    seeds: Sequence[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per method family, the label (hyperparameter value) with the best mean validation accuracy.

    A run's validation accuracy is ``val_acc``: its accuracy on the noisy validation set at
    its validation-chosen epoch (:meth:`samlab.train.History.summary`). Means are over the
    seeds that every label of the family has run; the first label wins a tie. Test accuracy
    is never read. ``family(label)`` names a label's family; default: the label's first
    word (``"SAM ρ=0.05"`` -> ``"SAM"``, ``"reg W+A 1e-3"`` -> ``"reg"``: :data:`samlab.experiments.TUNING`).
    ``score(run)``: another figure of the validation curve to maximise instead of
    ``val_acc`` (e.g. :func:`memorisation_contrast`); it must not read test accuracy.
    ``seeds``: choose on the runs of these seeds only (:func:`samlab.experiments.choice_seeds`);
    default every seed. Returns ``family -> {"label", "val_acc", "seeds", "candidates": {label: mean val_acc}}``
    (``val_acc``: the mean score when ``score`` is given).
    """
    family = family or (lambda label: label.split(" ")[0])
    values: dict[str, dict[str, dict[int, float]]] = {}
    runs = [r for r in result["runs"] if seeds is None or r["seed"] in seeds]
    if not runs:
        raise ValueError(f"seeds must include a seed of {result.get('experiment')!r}'s runs, got seeds={list(seeds or [])}")
    for r in runs:
        if r.get("val_acc") is None:
            raise ValueError(
                f"result of {result.get('experiment')!r} has no val_acc for run ({r['method']}, seed {r['seed']}): "
                f"it predates the validation split"
            )
        value = r["val_acc"] if score is None else score(r)
        values.setdefault(family(r["method"]), {}).setdefault(r["method"], {})[r["seed"]] = float(value)
    out = {}
    for fam, labels in values.items():
        seeds = sorted(set.intersection(*(set(v) for v in labels.values())))
        if not seeds:
            raise ValueError(f"the labels of family {fam!r} share no seed: {sorted(labels)}")
        means = {label: sum(v[s] for s in seeds) / len(seeds) for label, v in labels.items()}
        best = max(means, key=means.__getitem__)
        out[fam] = {"label": best, "val_acc": means[best], "seeds": seeds, "candidates": means}
    return out


def memorisation_contrast(run: dict[str, Any]) -> float:
    """How clearly a run's *validation* curve shows early learning then memorisation.

    With v the per-epoch noisy-validation accuracy and s its centred 3-epoch moving average
    (:func:`samlab.train.smoothed`): (max s − mean of v over the last 5 epochs) divided by
    the scatter of the curve around its smoothing, the standard deviation of v − s. A
    drop of 10 scatters reads clearly on a plot; 1 does not. Test accuracy is never read
    (what ``memorisation-pilot`` ranks notebook 00's settings by).
    """
    hist = [h for h in run["history"] if h.get("val_acc") is not None]
    if len(hist) < 3:
        raise ValueError(f"run ({run.get('method')}, seed {run.get('seed')}) has fewer than 3 epochs with val_acc")
    v = [float(h["val_acc"]) for h in hist]
    s = smoothed(v)
    scatter = statistics.stdev(a - b for a, b in zip(v, s))
    return (max(s) - History(records=hist).last_mean("val_acc", LAST)) / max(scatter, 1e-12)


#: the note under the results table when a file has no validation split
OLD_FILE_NOTE = (
    "† predates the validation split (one noise draw for every seed, no held-out set): "
    "no validation-selected accuracy; its last-5 mean is computed from the saved history."
)


def table_markdown(results: Sequence[dict[str, Any]]) -> str:
    """A markdown table of several result files (the README's results table).

    Per method: the test accuracy at the validation-chosen epoch (the reported accuracy)
    and the mean test accuracy of the last 5 epochs, each as mean ± half-width of the 95%
    t interval over seeds, and the oracle (test-set maximum, mean ± the same interval),
    labelled as such. Files written before the validation split show "—†" and a note.
    """
    lines = [
        "| experiment | profile | data | method | seeds | test acc at val. epoch | last-5 mean test acc | "
        "oracle: max test acc | s/epoch (× SGD) | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    old = False
    for res in results:
        data_desc = f"{res['config']['dataset']}, {res['config']['noise']} {res['config']['rate']:.0%} (realised {res['realised_noise_rate']:.1%})"
        for row in summarise(res):
            pm = lambda m, h: f"{100 * m:.1f}" + (f" ± {100 * h:.1f}" if h is not None else "")  # noqa: E731
            cost = f"{row['seconds_per_epoch']:.2f}" + (f" ({row['cost_vs_sgd']:.2f}×)" if row["cost_vs_sgd"] else "")
            val = pm(row["val_mean"], row["val_half"]) if row["validation"] else "—†"
            old = old or not row["validation"]
            lines.append(
                f"| {res['experiment']} | {res['profile']} | {data_desc} | {row['method']} | {row['seeds']} | "
                f"{val} | {pm(row['last5_mean'], row['last5_half'])} | {pm(row['oracle_mean'], row['oracle_half'])} | "
                f"{cost} | {short(res)} |"
            )
    if old:
        lines += ["", OLD_FILE_NOTE]
    return "\n".join(lines)


def _experiment_files(profile: str, root: Path | None) -> list[Path]:
    folder = path("x", profile, root).parent
    return sorted((p for p in folder.glob("*.json") if "experiment" in json.loads(p.read_text())), key=lambda p: p.stem)


def committed_table(profile: str | None = None, root: Path | None = None) -> str:
    """The markdown table of every saved experiment result (benchmarks excluded) of ``profile``,
    or of every profile but ``smoke``."""
    found = []
    for prof in [profile] if profile else [p for p in profiles.PROFILES if p != "smoke"]:
        found += [_read(p) for p in _experiment_files(prof, root)]
    return table_markdown(found) if found else "_No result files yet._"


def update_readme(file: Path, table: str, markers: tuple[str, str] = README_MARKERS) -> None:
    """Replace the text between the ``markers`` (default: the results markers) of ``file`` by ``table``."""
    file = Path(file)
    text = file.read_text()
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"{file} has no markers {start} ... {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    file.write_text(f"{head}{start}\n{table}\n{end}{tail}")

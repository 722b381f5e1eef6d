"""Figures and tables of notebooks 01 (linear logistic regression) and 02 (two-layer linear).

Every plotting function draws on a given Axes (or a new one), labels its axes and
returns it; the widget of notebook 01 (:mod:`samlab.widgets`) is a thin wrapper over
:func:`plot_linear_view`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from samlab.plots.training import METRIC_LABELS, metric_panels
from samlab.probes import probe_series
from samlab.theory import upweight
from samlab.train import History

__all__ = [
    "format_table",
    "plot_first_order_error",
    "plot_linear_view",
    "plot_ratio",
    "plot_ratio_panels",
    "plot_runs",
    "plot_upweight",
    "run_style",
    "summary_rows",
]

RATIO_LABELS = {
    "grad_ratio": "clean / noisy mean per-example\ngradient norm (in the update)",
    "grad_ratio_at_w": "clean / noisy mean per-example\ngradient norm at w",
}


def _ax(ax: Axes | None, size=(5, 3.5)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=size)[1]


def _rho(label: str) -> float | None:
    m = re.search(r"ρ=([0-9.eE+-]+)", label)
    return float(m.group(1)) if m else None


def run_style(label: str, labels: Sequence[str] = ()) -> dict:
    """A consistent style per run label: GD/SGD black; 1-SAM solid and batch SAM dashed,
    coloured by ρ (darker = larger ρ among ``labels``); other methods from a fixed palette."""
    if label in ("GD", "SGD"):
        return {"color": "black", "lw": 2.0}
    rho = _rho(label)
    if rho is not None and label.startswith(("1-SAM", "SAM")):
        rhos = sorted({r for r in (_rho(lb) for lb in labels) if r is not None} | {rho})
        k = rhos.index(rho)
        shade = 0.45 + 0.5 * (k + 1) / len(rhos)
        cmap = plt.get_cmap("Oranges" if "batch" in label else "Blues")
        return {"color": cmap(shade), "ls": "--" if "batch" in label else "-", "lw": 1.8}
    palette = {"SAM": "tab:blue", "1-SAM": "tab:blue", "L-SAM": "tab:orange", "J-SAM": "tab:green"}
    for name, color in palette.items():
        if label.startswith(name):
            return {"color": color, "lw": 1.8}
    if "reg" in label.lower() or "penalty" in label.lower():
        return {"color": "tab:red", "ls": ":", "lw": 2.6}
    return {}


def plot_upweight(rhos: Sequence[float], norm_x: float, ax: Axes | None = None, m_range: tuple[float, float] = (-8.0, 16.0)) -> Axes:
    """SAM's up-weighting factor r(m) = σ(−m + c)/σ(−m), c = ρ‖x‖, for each ρ (log scale),
    with its limits 1 (m → −∞) and e^c (m → +∞) as dotted lines."""
    ax = _ax(ax)
    m = np.linspace(*m_range, 400)
    for rho in rhos:
        c = rho * norm_x
        style = run_style(f"1-SAM ρ={rho:g}", [f"1-SAM ρ={r:g}" for r in rhos])
        ax.plot(m, upweight(m, c), label=f"ρ={rho:g} (c={c:.2g})", **style)
        ax.axhline(math.exp(c), color=style.get("color", "grey"), ls=":", lw=1)
    ax.axhline(1.0, color="black", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("margin m = ỹ wᵀx  (m < 0: misfit, typically mislabelled)")
    ax.set_ylabel("up-weighting r(m) = σ(c−m)/σ(−m)")
    ax.set_title("1-SAM's factor on each example's gradient", fontsize=10)
    ax.legend(fontsize=8, title="dotted: limits 1 and e^c", title_fontsize=8)
    return ax


def plot_ratio(
    histories: Mapping[str, History], ax: Axes | None = None, key: str = "grad_ratio", logy: bool = False, smooth: int = 1
) -> Axes:
    """The clean/noisy gradient-norm ratio (:func:`samlab.probes.linear_ratio_probe`) over training.

    ``smooth > 1`` draws the mean over ``smooth`` consecutive probes (thick) over the raw
    values (thin, faint): for runs whose ratio alternates from step to step.
    """
    ax = _ax(ax)
    labels = list(histories)
    for label, h in histories.items():
        epochs, values = probe_series(h, key)
        style = run_style(label, labels)
        if smooth > 1 and len(values) >= smooth:
            ax.plot(epochs, values, **{**style, "lw": 0.6, "alpha": 0.35, "ls": "-"})
            kernel = np.ones(smooth) / smooth
            values = list(np.convolve(values, kernel, mode="valid"))
            epochs = list(np.convolve(epochs, kernel, mode="valid"))
        ax.plot(epochs, values, label=label, **style)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("full-batch step")
    ax.set_ylabel(RATIO_LABELS.get(key, key))
    ax.legend(fontsize=7)
    return ax


def plot_ratio_panels(histories: Mapping[str, History], title: str | None = None, smooth: int = 1) -> Figure:
    """Notebook 01's figure (a): the in-update ratio for GD and 1-SAM (left), for GD and batch
    SAM (middle, ``smooth`` as in :func:`plot_ratio`), and the ratio of the plain gradients
    at w for every run (right)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    batch = {k: h for k, h in histories.items() if "batch" in k or k in ("GD", "SGD")}
    per_example = {k: h for k, h in histories.items() if "batch" not in k}
    plot_ratio(per_example, axes[0])
    axes[0].set_title("in the update: GD and 1-SAM (one ε_i per example)", fontsize=10)
    plot_ratio(batch, axes[1], smooth=smooth)
    axes[1].set_title("in the update: GD and batch SAM (one shared ε)" + (f"\nrunning mean over {smooth} probes; faint: raw" if smooth > 1 else ""), fontsize=10)
    plot_ratio(histories, axes[2], key="grad_ratio_at_w")
    axes[2].set_title("at w: plain per-example gradient norms, all runs", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def plot_runs(
    histories: Mapping[str, History],
    keys: Sequence[str] = ("clean_fit", "noisy_fit", "test_acc"),
    title: str | None = None,
    xlabel: str = "full-batch step",
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """One panel per metric of the History, one line per run (styles from :func:`run_style`).

    ``labels`` overrides the y-axis label and title of a metric (default: ``METRIC_LABELS``).
    """
    names = {**METRIC_LABELS, **(labels or {})}
    runs = list(histories)

    def draw(ax: Axes, key: str) -> None:
        for label, h in histories.items():
            ax.plot(h.column("epoch"), h.column(key), label=label, **run_style(label, runs))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(names.get(key, key))
        ax.set_title(names.get(key, key), fontsize=10)

    return metric_panels(keys, draw, title=title, width=4.3, legend_size=7, title_size=9)


def plot_first_order_error(
    rhos: Sequence[float], errors: Mapping[str, Sequence[float]], ax: Axes | None = None, floor: float = 1e-17
) -> Axes:
    """Log-log: error of the first-order (regulariser) form of J-SAM against ρ, per model,
    with a slope-2 reference line through the last curve's first point. Errors below
    ``floor`` (exact zeros) are drawn at ``floor``."""
    ax = _ax(ax)
    rhos = np.asarray(rhos, dtype=float)
    last = None
    for label, err in errors.items():
        e = np.maximum(np.asarray(err, dtype=float), floor)
        ax.plot(rhos, e, "o-", label=label, ms=4)
        last = e
    if last is not None:
        ref = last[0] * (rhos / rhos[0]) ** 2
        ax.plot(rhos, ref, "k--", lw=1, label="slope 2 (reference)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ρ (per-example perturbation radius)")
    ax.set_ylabel("‖J-SAM gradient − first-order form‖")
    ax.legend(fontsize=8)
    return ax


def plot_linear_view(runs: Mapping[str, History], rho: float, norm_x: float, title: str | None = None) -> Figure:
    """Notebook 01's widget figure: r(m) at ρ (left) and the clean/noisy ratio of ``runs`` (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_upweight([rho], norm_x, left)
    plot_ratio(runs, right)
    right.set_title("who drives the update: clean vs noisy examples", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def summary_rows(histories: Mapping[str, History], extra: Mapping[str, Mapping[str, float]] | None = None) -> list[dict]:
    """One dict per run: the test-set maximum and its step (named *oracle*: no validation split
    chooses it), the final test accuracy, final clean/noisy fit, plus any ``extra[label]`` columns."""
    rows = []
    for label, h in histories.items():
        last = h.records[-1]
        row = {
            "run": label,
            "oracle max test": h.oracle_test_acc,
            "oracle step": h.oracle_epoch,
            "final test": h.final_test_acc,
            "clean fit": last["clean_fit"],
            "noisy fit": last["noisy_fit"],
        }
        row.update((extra or {}).get(label, {}))
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, object]], digits: int = 3) -> str:
    """A fixed-width text table (floats to ``digits`` decimals; integers and text as they are)."""
    if not rows:
        return ""
    cols = list(rows[0])

    def fmt(v: object) -> str:
        if isinstance(v, float):
            if math.isinf(v):
                return "never"
            return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)])

"""Training curves from :class:`samlab.train.History` (notebooks 00, 03–07).

Every function draws on a given Axes (or a new one), labels its axes and returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from samlab.train import LAST, History, smoothed

__all__ = [
    "METRIC_LABELS", "plot_comparison", "plot_cost_accuracy", "plot_fit", "plot_memorisation", "plot_metric",
    "plot_over_seeds", "plot_phase_seeds", "plot_smoothed",
]

METRIC_LABELS = {
    "test_acc": "test accuracy",
    "val_acc": "validation accuracy (noisy labels)",
    "clean_fit": "clean training examples fit",
    "noisy_fit": "noisy examples fit (to their wrong label)",
    "noisy_true": "noisy examples predicted as their true class",
    "train_loss": "training loss (observed labels)",
    "clean_loss": "mean loss of clean examples",
    "noisy_loss": "mean loss of noisy examples",
    "head_norm": "last-layer weight norm",
    "feature_norm": "mean feature norm",
    "test_loss": "test loss",
}


def _ax(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=(5, 3.5))[1]


def plot_metric(history: History, key: str, ax: Axes | None = None, label: str | None = None, mark_val: bool = False, **style) -> Axes:
    """One metric over epochs; ``mark_val`` marks its value at the validation-chosen epoch
    (:attr:`samlab.train.History.val_epoch`) with a dot (nothing without a validation split:
    the epoch is never chosen on the test set)."""
    ax = _ax(ax)
    epochs, values = history.column("epoch"), history.column(key)
    (line,) = ax.plot(epochs, values, label=label, **style)
    if mark_val and history.val_epoch is not None:
        i = epochs.index(history.val_epoch)
        ax.plot([epochs[i]], [values[i]], "o", color=line.get_color(), ms=6)
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRIC_LABELS.get(key, key))
    return ax


def plot_fit(history: History, ax: Axes | None = None) -> Axes:
    """Clean-fit and noisy-fit accuracy (and noisy examples' true-class accuracy)."""
    ax = _ax(ax)
    plot_metric(history, "clean_fit", ax, label="clean examples: fit")
    plot_metric(history, "noisy_fit", ax, label="noisy examples: fit to the wrong label")
    plot_metric(history, "noisy_true", ax, label="noisy examples: true class predicted", ls="--")
    ax.set_ylabel("fraction of training examples")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return ax


def plot_smoothed(history: History, key: str, ax: Axes | None = None, label: str | None = None, **style) -> Axes:
    """``key`` raw (thin, faint) and as its centred 3-epoch moving average (thick, :func:`samlab.train.smoothed`)."""
    ax = _ax(ax)
    epochs, values = history.column("epoch"), history.column(key)
    (line,) = ax.plot(epochs, values, lw=0.8, alpha=0.35, **style)
    ax.plot(epochs, smoothed(values), lw=2, color=line.get_color(), label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRIC_LABELS.get(key, key))
    return ax


def plot_memorisation(history: History, title: str | None = None) -> Figure:
    """Notebook 00's figure: training-set fit (left), noisy validation and clean test accuracy
    (right, raw and smoothed), the two phases shaded at the *validation-chosen* epoch.

    Early learning runs up to the epoch of best smoothed noisy-validation accuracy
    (:attr:`samlab.train.History.val_epoch`), memorisation after it. The test-set maximum
    is marked only as the oracle it is (it chose its epoch on the test set).
    """
    if not history.has_validation:
        raise ValueError("plot_memorisation needs a history with validation accuracy (data.load(..., val_fraction > 0))")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    chosen, last = history.val_epoch, history.records[-1]["epoch"]
    for ax in (left, right):
        ax.axvspan(0, chosen, color="tab:green", alpha=0.08, lw=0)
        ax.axvspan(chosen, last, color="tab:red", alpha=0.08, lw=0)
        ax.axvline(chosen, color="grey", ls=":", lw=1)
    plot_fit(history, left)
    left.set_title("training set")
    plot_smoothed(history, "val_acc", right, label="validation accuracy (noisy labels)", color="tab:blue")
    plot_smoothed(history, "test_acc", right, label="test accuracy (clean labels)", color="black")
    at_val, last5 = history.at_epoch(chosen)["test_acc"], history.last_mean("test_acc")
    right.plot([history.oracle_epoch], [history.oracle_test_acc], "x", color="grey", ms=7,
               label="oracle: test-set maximum (not a valid choice)")
    right.text(
        0.98, 0.03, f"test accuracy at the validation epoch ({chosen}): {at_val:.3f}\n"
        f"mean test accuracy of the last {LAST} epochs: {last5:.3f}",
        transform=right.transAxes, ha="right", va="bottom", fontsize=8,
        bbox={"facecolor": "white", "edgecolor": "lightgrey", "alpha": 0.9},
    )
    right.set_ylabel("accuracy")
    right.set_title("held-out data: thin raw, thick 3-epoch moving average")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    right.text(0.02, 0.97, "early learning", transform=right.transAxes, va="top", color="tab:green", fontsize=9)
    right.text(0.98, 0.97, "memorisation", transform=right.transAxes, va="top", ha="right", color="tab:red", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_phase_seeds(histories: Mapping[str, History], title: str | None = None) -> Figure:
    """One line per run (e.g. per seed) of the smoothed noisy fit, validation and test accuracy,
    each run's validation-chosen epoch marked with a dot: do the two phases repeat across seeds?"""

    def draw(ax: Axes, key: str) -> None:
        for name, h in histories.items():
            epochs, values = h.column("epoch"), smoothed(h.column(key))
            (line,) = ax.plot(epochs, values, lw=1.5, label=name)
            if h.val_epoch is not None:
                i = epochs.index(h.val_epoch)
                ax.plot([epochs[i]], [values[i]], "o", color=line.get_color(), ms=5)
        ax.set_xlabel("epoch")
        ax.set_title(METRIC_LABELS.get(key, key) + " (3-epoch moving average)", fontsize=9)

    return metric_panels(("noisy_fit", "val_acc", "test_acc"), draw, title=title)


def metric_panels(
    keys: Sequence[str], draw: Callable[[Axes, str], None], *, title: str | None = None,
    width: float = 4.2, legend_size: int = 8, title_size: int = 10,
) -> Figure:
    """A row of panels, one per metric key: ``draw(ax, key)`` fills each; legend on the first, then the title."""
    fig, axes = plt.subplots(1, len(keys), figsize=(width * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        draw(ax, key)
    axes[0][0].legend(fontsize=legend_size)
    if title:
        fig.suptitle(title, fontsize=title_size)
    fig.tight_layout()
    return fig


def plot_comparison(histories: Mapping[str, History], keys=("test_acc", "clean_fit", "noisy_fit"), title: str | None = None) -> Figure:
    """One panel per metric, one line per method; a dot marks each method's value at its
    validation-chosen epoch (histories with a validation split)."""

    def draw(ax: Axes, key: str) -> None:
        for name, h in histories.items():
            plot_metric(h, key, ax, label=name, mark_val=True)
        ax.set_title(METRIC_LABELS.get(key, key), fontsize=10)

    return metric_panels(keys, draw, title=title)


def plot_over_seeds(
    runs: Mapping[str, Sequence[History]], keys=("test_acc", "clean_fit", "noisy_fit"), title: str | None = None
) -> Figure:
    """One panel per metric, one line per method: the mean over its runs (seeds) at each epoch,
    shaded from the lowest to the highest run, so that one seed's swing is not read as a
    method's. Epochs that some run lacks are left out; nothing is smoothed."""

    def draw(ax: Axes, key: str) -> None:
        for name, hs in runs.items():
            columns = [dict(zip(h.column("epoch"), h.column(key))) for h in hs]
            epochs = sorted(set.intersection(*(set(c) for c in columns))) if columns else []
            values = np.array([[c[e] for c in columns] for e in epochs], dtype=float).reshape(len(epochs), -1)
            (line,) = ax.plot(epochs, values.mean(1), label=f"{name} (n = {len(hs)})")   # NaN where a run has none
            ax.fill_between(epochs, values.min(1), values.max(1), color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xlabel("epoch")
        ax.set_title(METRIC_LABELS.get(key, key), fontsize=9)

    note = "lines: mean over seeds; shading: lowest to highest seed"
    return metric_panels(keys, draw, title=f"{title}\n{note}" if title else note)


_COST_KEYS = {"at_val": ("o", "test accuracy at the validation-chosen epoch"),
              "last5": ("s", "mean test accuracy over the last 5 epochs")}


def plot_cost_accuracy(rows: list[Mapping], keys=("at_val", "last5"), ax: Axes | None = None, title: str | None = None) -> Axes:
    """Test accuracy against cost per epoch (× SGD), one point per method and metric.

    ``rows`` as returned by :func:`samlab.claims.recovery` (keys ``method``, ``cost`` and
    the accuracy ``keys``: by default the reported accuracy, at the validation-chosen epoch,
    and the last-5 mean; the oracle is not drawn). Taught in notebook 05.
    """
    ax = _ax(ax)
    for key in keys:
        marker, label = _COST_KEYS.get(key, ("^", key))
        ax.scatter([r["cost"] for r in rows], [r[key] for r in rows], marker=marker, label=label, alpha=0.8)
    for r in rows:
        ax.annotate(r["method"], (r["cost"], max(r[k] for k in keys)), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.axvline(1.15, color="grey", ls=":", lw=1, label="1.15 × SGD")
    ax.set_xlabel("cost per epoch (× SGD, measured)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return ax

"""Training curves from :class:`samlab.train.History` (notebooks 00, 03–07).

Every function draws on a given Axes (or a new one), labels its axes and returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from samlab.train import History

__all__ = ["METRIC_LABELS", "plot_comparison", "plot_cost_accuracy", "plot_fit", "plot_memorisation", "plot_metric"]

METRIC_LABELS = {
    "test_acc": "test accuracy",
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


def plot_metric(history: History, key: str, ax: Axes | None = None, label: str | None = None, mark_best: bool = False, **style) -> Axes:
    """One metric over epochs; ``mark_best`` marks the maximum with a dot."""
    ax = _ax(ax)
    epochs, values = history.column("epoch"), history.column(key)
    (line,) = ax.plot(epochs, values, label=label, **style)
    if mark_best:
        best = max(range(len(values)), key=values.__getitem__)
        ax.plot([epochs[best]], [values[best]], "o", color=line.get_color(), ms=6)
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


def plot_memorisation(history: History, title: str | None = None) -> Figure:
    """Notebook 00's figure: training-set fit (left) and test accuracy (right), two phases shaded.

    The early-learning phase runs up to the epoch of best test accuracy; after it, the
    memorisation phase.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    best = history.best_epoch
    last = history.records[-1]["epoch"]
    for ax in (left, right):
        ax.axvspan(0, best, color="tab:green", alpha=0.08, lw=0)
        ax.axvspan(best, last, color="tab:red", alpha=0.08, lw=0)
        ax.axvline(best, color="grey", ls=":", lw=1)
    plot_fit(history, left)
    left.set_title("training set")
    plot_metric(history, "test_acc", right, label="test accuracy", mark_best=True, color="black")
    right.annotate(
        f"best {history.best_test_acc:.3f} (epoch {best})\nfinal {history.final_test_acc:.3f}",
        xy=(best, history.best_test_acc), xytext=(0.55, 0.15), textcoords="axes fraction", fontsize=9,
        arrowprops={"arrowstyle": "->", "color": "grey"},
    )
    right.set_title("test set")
    right.text(0.02, 0.97, "early learning", transform=right.transAxes, va="top", color="tab:green", fontsize=9)
    right.text(0.98, 0.97, "memorisation", transform=right.transAxes, va="top", ha="right", color="tab:red", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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
    """One panel per metric, one line per method (best test accuracy marked)."""

    def draw(ax: Axes, key: str) -> None:
        for name, h in histories.items():
            plot_metric(h, key, ax, label=name, mark_best=key == "test_acc")
        ax.set_title(METRIC_LABELS.get(key, key), fontsize=10)

    return metric_panels(keys, draw, title=title)


def plot_cost_accuracy(rows: list[Mapping], keys=("best", "final"), ax: Axes | None = None, title: str | None = None) -> Axes:
    """Test accuracy against cost per epoch (× SGD), one point per method and metric.

    ``rows`` as returned by :func:`samlab.claims.recovery` (keys ``method``, ``cost`` and
    the accuracy ``keys``). Taught in notebook 05.
    """
    ax = _ax(ax)
    markers = {"best": "o", "final": "s"}
    for key in keys:
        ax.scatter([r["cost"] for r in rows], [r[key] for r in rows], marker=markers.get(key, "^"),
                   label=f"{key} test accuracy", alpha=0.8)
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

"""Structured label noise as pictures: confusion matrices and per-class accuracy (notebook 07).

A confusion matrix ``counts[i][j]`` counts examples of true class ``i`` given label (or
predicted as) ``j``; row-normalised, row ``i`` is an estimate of the noise transition
row T[i, ·] = P(observed · | true i), or of a model's per-class error pattern. Every
function draws on a given Axes (or a new one), labels its axes and returns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from samlab.claims import row_normalise
from samlab.data import CIFAR10_CLASSES

__all__ = ["NORMALISE", "class_names", "plot_confusion", "plot_per_class"]

NORMALISE = ("row", "none")


def _matrix(counts: Any) -> list[list[float]]:
    return [[float(v) for v in row] for row in (counts.tolist() if hasattr(counts, "tolist") else counts)]


def _class_ticks(ax: Axes, names: list[str]) -> None:
    """Class names along the x axis, slanted when they are words."""
    long = max(map(len, names)) > 2
    ax.set_xticks(range(len(names)), names, rotation=45 if long else 0, ha="right" if long else "center")


def class_names(dataset: str, num_classes: int) -> list[str]:
    """Names for the classes of ``dataset``: CIFAR-10's for ``cifar10*`` with 10 classes, else ``"0"`` … ``"K-1"``."""
    if dataset.startswith("cifar10") and not dataset.startswith("cifar100") and num_classes == len(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return [str(i) for i in range(num_classes)]


def plot_confusion(
    counts: Any,
    class_names: Sequence[str] | None = None,
    normalise: str | None = "row",
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str = "predicted class",
    ylabel: str = "true class",
) -> Axes:
    """A confusion matrix as an image, one row per true class, with every cell's value written in it.

    ``normalise="row"`` divides each row by its sum (cells in [0, 1], rows sum to 1);
    ``"none"`` (or ``None``) draws the counts. ``counts`` may also be a transition matrix
    (already normalised). For the noise of a training set, pass
    ``xlabel="observed label"``.
    """
    normalise = "none" if normalise is None else normalise
    if normalise not in NORMALISE:
        raise ValueError(f"normalise must be one of {NORMALISE} or None, got normalise={normalise!r}")
    values = row_normalise(counts) if normalise == "row" else _matrix(counts)
    k = len(values)
    if any(len(row) != k for row in values):
        raise ValueError(f"counts must be a square matrix, got {k} rows of lengths {sorted({len(r) for r in values})}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"class_names must name the {k} classes, got {len(names)} names")
    ax = ax if ax is not None else plt.subplots(figsize=(5.5, 4.8))[1]
    finite = [v for row in values for v in row if not math.isnan(v)]
    vmax = 1.0 if normalise == "row" else max(finite, default=1.0) or 1.0
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    label = "fraction of the row" if normalise == "row" else "count"
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    size = 7 if k <= 10 else 5
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if math.isnan(v):
                text = ""
            elif v == 0:
                text = "0"
            else:
                text = f"{v:.2f}" if normalise == "row" or not v.is_integer() else f"{int(v)}"
            colour = "white" if v > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=size, color=colour)
    _class_ticks(ax, names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_per_class(
    results_by_method: Mapping[str, Sequence[float]],
    class_names: Sequence[str],
    ax: Axes | None = None,
    title: str | None = None,
    highlight: Sequence[int] = (),
) -> Axes:
    """Grouped bars of per-class test accuracy: one group per class, one bar per method.

    ``results_by_method``: method label -> accuracy of each class (e.g. from
    :func:`samlab.claims.per_class_accuracy`). Classes in ``highlight`` (those that lose
    labels to noise, say) get their tick label in red and bold.
    """
    names = list(class_names)
    for label, accs in results_by_method.items():
        if len(accs) != len(names):
            raise ValueError(f"{label!r} has {len(accs)} accuracies for {len(names)} classes")
    ax = ax if ax is not None else plt.subplots(figsize=(9, 3.8))[1]
    n = max(len(results_by_method), 1)
    width = 0.8 / n
    for m, (label, accs) in enumerate(results_by_method.items()):
        offsets = [c - 0.4 + width * (m + 0.5) for c in range(len(names))]
        ax.bar(offsets, list(accs), width=width, label=label)
    _class_ticks(ax, names)
    for i in highlight:
        tick = ax.get_xticklabels()[i]
        tick.set_color("tab:red")
        tick.set_fontweight("bold")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("true class")
    ax.set_ylabel("test accuracy (final model)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if title:
        ax.set_title(title, fontsize=9)
    return ax

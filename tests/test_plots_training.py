"""Training plots draw what they are given (checked on the matplotlib artists)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from samlab.plots.training import plot_comparison, plot_cost_accuracy  # noqa: E402
from samlab.train import History  # noqa: E402


def test_cost_accuracy_points_are_the_rows():
    rows = [{"method": "SGD", "cost": 1.0, "best": 0.5, "final": 0.4},
            {"method": "SAM", "cost": 2.0, "best": 0.6, "final": 0.55}]
    ax = plot_cost_accuracy(rows)
    best, final = (np.asarray(c.get_offsets()) for c in ax.collections[:2])
    np.testing.assert_allclose(best, [[1.0, 0.5], [2.0, 0.6]])
    np.testing.assert_allclose(final, [[1.0, 0.4], [2.0, 0.55]])
    assert [t.get_text() for t in ax.texts] == ["SGD", "SAM"]


def test_comparison_draws_one_line_per_method_and_marks_the_best():
    h = {"A": History(records=[{"epoch": 0, "test_acc": 0.1}, {"epoch": 1, "test_acc": 0.3}, {"epoch": 2, "test_acc": 0.2}]),
         "B": History(records=[{"epoch": 0, "test_acc": 0.1}, {"epoch": 1, "test_acc": 0.2}, {"epoch": 2, "test_acc": 0.4}])}
    fig = plot_comparison(h, keys=("test_acc",))
    ax = fig.axes[0]
    xy = [tuple(line.get_xydata()[0]) for line in ax.lines if len(line.get_xdata()) == 1]  # the best-dots
    assert xy == [(1.0, 0.3), (2.0, 0.4)]

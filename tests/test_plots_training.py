"""Training plots draw what they are given (checked on the matplotlib artists)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import pytest  # noqa: E402

from samlab.plots.training import plot_comparison, plot_cost_accuracy, plot_memorisation, plot_over_seeds, plot_phase_seeds  # noqa: E402
from samlab.train import History  # noqa: E402


def test_cost_accuracy_points_are_the_rows():
    rows = [{"method": "SGD", "cost": 1.0, "at_val": 0.5, "last5": 0.4, "oracle": 0.7},
            {"method": "SAM", "cost": 2.0, "at_val": 0.6, "last5": 0.55, "oracle": 0.7}]
    ax = plot_cost_accuracy(rows)
    assert len(ax.collections) == 2  # the oracle is not drawn
    at_val, last5 = (np.asarray(c.get_offsets()) for c in ax.collections[:2])
    np.testing.assert_allclose(at_val, [[1.0, 0.5], [2.0, 0.6]])
    np.testing.assert_allclose(last5, [[1.0, 0.4], [2.0, 0.55]])
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == [
        "test accuracy at the validation-chosen epoch", "mean test accuracy over the last 5 epochs"]
    assert [t.get_text() for t in ax.texts] == ["SGD", "SAM"]


def test_comparison_draws_one_line_per_method_and_marks_the_validation_epoch():
    rec = lambda e, t, v: {"epoch": e, "test_acc": t, "val_acc": v}  # noqa: E731
    # A: validation peaks (smoothed) at epoch 1, the test maximum is at epoch 3; B: both at epoch 3
    h = {"A": History(records=[rec(e, t, v) for e, (t, v) in enumerate(
             [(0.1, 0.1), (0.3, 0.6), (0.2, 0.5), (0.5, 0.0), (0.2, 0.0), (0.2, 0.0)])]),
         "B": History(records=[rec(e, t, v) for e, (t, v) in enumerate(
             [(0.1, 0.1), (0.2, 0.2), (0.3, 0.5), (0.4, 0.6), (0.3, 0.5), (0.2, 0.1)])])}
    assert (h["A"].val_epoch, h["B"].val_epoch) == (1, 3)
    fig = plot_comparison(h, keys=("test_acc",))
    ax = fig.axes[0]
    xy = [tuple(line.get_xydata()[0]) for line in ax.lines if len(line.get_xdata()) == 1]  # the dots
    assert xy == [(1.0, 0.3), (3.0, 0.4)]  # never A's test maximum (epoch 3, 0.5)
    # without a validation split nothing is marked
    bare = {"C": History(records=[{"epoch": 0, "test_acc": 0.1}, {"epoch": 1, "test_acc": 0.3}])}
    assert [line for line in plot_comparison(bare, keys=("test_acc",)).axes[0].lines if len(line.get_xdata()) == 1] == []


def _noisy_history(val, test, fit):
    return History(records=[{"epoch": e, "val_acc": v, "test_acc": t, "clean_fit": f, "noisy_fit": f / 2,
                             "noisy_true": 1 - f} for e, (v, t, f) in enumerate(zip(val, test, fit))])


def test_memorisation_figure_splits_the_phases_at_the_validation_epoch_and_smooths():
    val = [0.1, 0.2, 0.5, 0.6, 0.5, 0.3, 0.3, 0.2]
    test = [0.1, 0.3, 0.4, 0.45, 0.9, 0.35, 0.3, 0.3]  # its maximum (epoch 4) is not the validation epoch
    h = _noisy_history(val, test, [0.1 * e for e in range(8)])
    fig = plot_memorisation(h)
    left, right = fig.axes
    # smoothed validation by hand: epoch 3 = (0.5 + 0.6 + 0.5) / 3 is the peak -> phases split at 3, not at 4
    assert h.val_epoch == 3
    assert [tuple(line.get_xdata()) for line in right.lines if line.get_linestyle() == ":"] == [(3, 3)]
    want = np.array([np.mean(val[max(0, i - 1):i + 2]) for i in range(8)])
    thick = [line for line in right.lines if line.get_linewidth() == 2]
    np.testing.assert_allclose(thick[0].get_ydata(), want)
    oracle = [line for line in right.lines if line.get_marker() == "x"]
    assert [tuple(line.get_xydata()[0]) for line in oracle] == [(4.0, 0.9)] and "oracle" in oracle[0].get_label()
    with pytest.raises(ValueError, match="validation accuracy"):
        plot_memorisation(History(records=[{"epoch": 0, "test_acc": 0.1, "val_acc": None}]))


def test_phase_seeds_marks_each_runs_validation_epoch():
    a = _noisy_history([0.1, 0.5, 0.4, 0.2], [0.1, 0.4, 0.3, 0.2], [0.0, 0.2, 0.4, 0.6])
    b = _noisy_history([0.1, 0.2, 0.3, 0.6], [0.1, 0.2, 0.3, 0.5], [0.0, 0.1, 0.2, 0.3])
    fig = plot_phase_seeds({"seed 0": a, "seed 1": b})
    assert len(fig.axes) == 3
    dots = [tuple(line.get_xydata()[0]) for line in fig.axes[1].lines if len(line.get_xdata()) == 1]
    assert [d[0] for d in dots] == [a.val_epoch, b.val_epoch] == [2, 3]  # (0.5 + 0.4 + 0.2)/3 > (0.1 + 0.5 + 0.4)/3


def test_over_seeds_draws_the_mean_and_shades_the_range_of_the_runs():
    from samlab import results

    rec = lambda e, t: {"epoch": e, "test_acc": t}  # noqa: E731
    runs = [{"method": "SAM", "seed": s, "history": [rec(e, t) for e, t in enumerate(ts)]}
            for s, ts in [(1, [0.2, 0.4, 0.3]), (0, [0.1, 0.5, None])]]   # seed 0 listed second, with a missing value
    runs.append({"method": "SGD", "seed": 0, "history": [rec(0, 0.3), rec(1, 0.1)]})   # a shorter run
    by_seed = results.histories_by_seed({"runs": runs})
    assert [h.column("test_acc")[0] for h in by_seed["SAM"]] == [0.1, 0.2]   # in seed order
    ax = plot_over_seeds(by_seed, keys=("test_acc",)).axes[0]
    sam, sgd = ax.lines
    np.testing.assert_allclose(sam.get_xydata()[:2], [[0, 0.15], [1, 0.45]])
    assert np.isnan(sam.get_ydata()[2])                    # a missing value is not averaged away
    np.testing.assert_allclose(sgd.get_xydata(), [[0, 0.3], [1, 0.1]])
    assert sam.get_label() == "SAM (n = 2)" and sgd.get_label() == "SGD (n = 1)"
    band = ax.collections[0].get_paths()[0].vertices        # SAM's shading: from the lowest run to the highest
    at_1 = sorted(y for x, y in band if x == 1)
    assert at_1[0] == pytest.approx(0.4) and at_1[-1] == pytest.approx(0.5)
    assert not any(x == 2 for x, _ in band)                 # nor shaded where one run has no value

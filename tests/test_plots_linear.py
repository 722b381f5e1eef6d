"""samlab.plots.linear and samlab.widgets draw headless (Agg) and label their axes."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from samlab import widgets  # noqa: E402
from samlab.plots import linear  # noqa: E402
from samlab.train import History  # noqa: E402


def _history(scale: float = 1.0) -> History:
    recs = []
    for e in range(6):
        r = {"epoch": e, "test_acc": 0.5 + 0.05 * e * scale, "clean_fit": 0.6, "noisy_fit": 0.1 * e, "head_norm": 1.0 + e, "feature_norm": 2.0}
        if e % 2 == 0:
            r["grad_ratio"] = 1.0 / (1 + e * scale)
            r["grad_ratio_at_w"] = 0.9 / (1 + e)
        recs.append(r)
    return History(records=recs)


RUNS = {"GD": _history(), "1-SAM ρ=0.1": _history(0.5), "1-SAM ρ=1": _history(0.2), "SAM ρ=1 (batch)": _history(0.9)}


def _labelled(ax) -> None:
    assert ax.get_xlabel() and ax.get_ylabel()


def test_plot_upweight():
    ax = linear.plot_upweight([0.1, 1.0], norm_x=3.0)
    _labelled(ax)
    assert ax.get_yscale() == "log"
    assert len(ax.get_legend().get_texts()) == 2
    plt.close("all")


@pytest.mark.parametrize("key", ["grad_ratio", "grad_ratio_at_w"])
def test_plot_ratio(key):
    ax = linear.plot_ratio(RUNS, key=key)
    _labelled(ax)
    assert len(ax.get_lines()) >= len(RUNS)
    xs = ax.get_lines()[0].get_xdata()
    assert list(xs) == [0, 2, 4], "only the probed epochs are drawn"
    ax = linear.plot_ratio({"GD": RUNS["GD"]}, key=key, smooth=2)
    raw, mean = ax.get_lines()[:2]
    assert list(mean.get_xdata()) == [1, 3] and len(raw.get_xdata()) == 3
    plt.close("all")


def test_plot_ratio_panels():
    fig = linear.plot_ratio_panels(RUNS, title="t", smooth=2)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        _labelled(ax)
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert "SAM ρ=1 (batch)" not in labels[0] and "SAM ρ=1 (batch)" in labels[1] and "1-SAM ρ=1" not in labels[1]
    plt.close("all")


def test_plot_runs_and_first_order_error():
    fig = linear.plot_runs(RUNS, keys=("clean_fit", "noisy_fit", "test_acc", "head_norm"), title="t", labels={"head_norm": "‖v‖"})
    assert len(fig.axes) == 4
    assert fig.axes[3].get_ylabel() == "‖v‖"
    for ax in fig.axes:
        _labelled(ax)
    ax = linear.plot_first_order_error([0.01, 0.02, 0.04], {"2 layers": [0.0, 1e-17, 0.0], "3 layers": [1e-4, 4e-4, 1.6e-3]})
    _labelled(ax)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert any("slope 2" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close("all")


def test_run_style_is_consistent():
    labels = list(RUNS)
    assert linear.run_style("GD", labels)["color"] == "black"
    small, big = linear.run_style("1-SAM ρ=0.1", labels), linear.run_style("1-SAM ρ=1", labels)
    assert small["color"] != big["color"] and small.get("ls", "-") == "-"
    assert linear.run_style("SAM ρ=1 (batch)", labels)["ls"] == "--"
    assert linear.run_style("J-SAM ρ=0.1")["color"] == "tab:green"
    assert linear.run_style("SGD + regulariser")["color"] == "tab:red"


def test_summary_table():
    rows = linear.summary_rows(RUNS, extra={"GD": {"decay step": math.inf}})
    assert rows[0]["run"] == "GD" and rows[0]["oracle max test"] == pytest.approx(0.75)
    text = linear.format_table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("run") and "never" in lines[2] and len(lines) == 2 + len(RUNS)
    assert linear.format_table([]) == ""


def test_linear_view_and_explorer():
    sizes = dict(n=40, d=6, epochs=4, every=2)
    fig = widgets.linear_view(rho=0.3, rate=0.3, **sizes)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        _labelled(ax)
    runs, _ = widgets.linear_runs(0.3, 0.3, **sizes)
    assert list(runs) == ["GD", "1-SAM ρ=0.3"]
    ui = widgets.linear_explorer(rho=0.3, rate=0.3, **sizes)
    names = {c.description for c in ui.children if hasattr(c, "description")}
    assert {"ρ", "noise rate"} <= names
    plt.close("all")

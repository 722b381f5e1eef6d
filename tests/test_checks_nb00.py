"""The notebook-00 exercise checks accept right answers and explain wrong ones."""

from __future__ import annotations

from samlab import data, train
from samlab.checks import nb00


def _history() -> train.History:
    rec = lambda e, t, c, n: {"epoch": e, "test_acc": t, "clean_fit": c, "noisy_fit": n}  # noqa: E731
    return train.History(records=[rec(0, 0.1, 0.1, 0.1), rec(1, 0.8, 0.9, 0.05), rec(2, 0.6, 0.99, 0.7)])


def test_realised_rate(capsys):
    ds = data.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=2)
    n = len(ds.y_train)
    changed = int((ds.y_train != ds.y_train_clean).sum())
    assert nb00.check_realised_rate(changed / n, ds)
    assert not nb00.check_realised_rate(float(changed), ds)
    assert "count" in capsys.readouterr().out
    assert not nb00.check_realised_rate(0.3, ds)
    assert "requested" in capsys.readouterr().out
    assert not nb00.check_realised_rate(1 - changed / n, ds)
    assert "still correct" in capsys.readouterr().out
    assert not nb00.check_realised_rate("0.3", ds)
    assert "number" in capsys.readouterr().out


def test_noisy_fit_at_best(capsys):
    h = _history()
    assert nb00.check_noisy_fit_at_best(0.05, h)
    assert not nb00.check_noisy_fit_at_best(0.7, h)
    assert "last" in capsys.readouterr().out
    assert not nb00.check_noisy_fit_at_best(0.9, h)
    assert "clean" in capsys.readouterr().out
    assert not nb00.check_noisy_fit_at_best(5.0, h)
    assert "percent" in capsys.readouterr().out

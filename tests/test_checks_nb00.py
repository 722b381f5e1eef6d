"""The notebook-00 exercise checks accept right answers and explain wrong ones."""

from __future__ import annotations

from samlab import data, train
from samlab.checks import nb00


def _history() -> train.History:
    rec = lambda e, t, v, c, n, tr: {"epoch": e, "test_acc": t, "val_acc": v, "clean_fit": c, "noisy_fit": n,  # noqa: E731
                                     "noisy_true": tr}
    # smoothed validation peaks at epoch 2 ((0.5 + 0.6 + 0.5)/3); the test maximum (the oracle) is at epoch 1
    return train.History(records=[rec(0, 0.1, 0.1, 0.1, 0.11, 0.3), rec(1, 0.8, 0.5, 0.9, 0.05, 0.6),
                                  rec(2, 0.6, 0.6, 0.95, 0.2, 0.4), rec(3, 0.5, 0.5, 0.99, 0.7, 0.2),
                                  rec(4, 0.45, 0.2, 0.99, 0.8, 0.1)])


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


def test_noisy_fit_at_val(capsys):
    h = _history()
    assert h.val_epoch == 2 and h.oracle_epoch == 1
    assert nb00.check_noisy_fit_at_val(0.2, h)
    assert not nb00.check_noisy_fit_at_val(0.05, h)
    assert "oracle" in capsys.readouterr().out
    assert not nb00.check_noisy_fit_at_val(0.8, h)
    assert "last" in capsys.readouterr().out
    assert not nb00.check_noisy_fit_at_val(0.95, h)
    assert "clean" in capsys.readouterr().out
    assert not nb00.check_noisy_fit_at_val(0.4, h)
    assert "true" in capsys.readouterr().out
    assert not nb00.check_noisy_fit_at_val(5.0, h)
    assert "percent" in capsys.readouterr().out
    assert not nb00.check_noisy_fit_at_val(0.33, h)
    assert "val_epoch" in capsys.readouterr().out

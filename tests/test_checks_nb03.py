"""Notebook-03 exercise checks on a hand-made result."""

from __future__ import annotations

from samlab.checks import nb03


def _result() -> dict:
    def run(method, best, final, noisy):
        history = [{"epoch": 0, "noisy_fit": 0.1, "clean_fit": 0.1}, {"epoch": 1, "noisy_fit": noisy, "clean_fit": 0.8},
                   {"epoch": 2, "noisy_fit": 0.9, "clean_fit": 0.95}]
        return {"method": method, "seed": 0, "best_test_acc": best, "final_test_acc": final, "history": history}
    return {"runs": [run("SGD", 0.50, 0.40, 0.2), run("1-SAM", 0.56, 0.52, 0.05)]}


def test_check_gain(capsys):
    r = _result()
    assert nb03.check_gain(6.0, r)
    assert not nb03.check_gain(0.06, r) and "percentage points" in capsys.readouterr().out
    assert not nb03.check_gain(-6.0, r) and "sign" in capsys.readouterr().out
    assert not nb03.check_gain(12.0, r) and "final" in capsys.readouterr().out
    assert not nb03.check_gain("six", r) and "number" in capsys.readouterr().out


def test_check_noisy_fit_at_epoch(capsys):
    r = _result()
    assert nb03.check_noisy_fit_at_epoch(0.05, r, "1-SAM", 1)
    assert not nb03.check_noisy_fit_at_epoch(0.8, r, "1-SAM", 1) and "clean" in capsys.readouterr().out
    assert not nb03.check_noisy_fit_at_epoch(0.9, r, "1-SAM", 1) and "last epoch" in capsys.readouterr().out
    assert not nb03.check_noisy_fit_at_epoch(5, r, "1-SAM", 1) and "percentage" in capsys.readouterr().out

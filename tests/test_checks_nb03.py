"""Notebook-03 exercise checks on a hand-made result."""

from __future__ import annotations

from samlab.checks import nb03


def _result() -> dict:
    def run(method, at_val, oracle, last5, noisy, seed=0):
        history = [{"epoch": 0, "noisy_fit": 0.1, "clean_fit": 0.1}, {"epoch": 1, "noisy_fit": noisy, "clean_fit": 0.8},
                   {"epoch": 2, "noisy_fit": 0.9, "clean_fit": 0.95}]
        return {"method": method, "seed": seed, "test_at_val": at_val, "oracle_test_acc": oracle, "last5_test_acc": last5,
                "history": history}
    # two seeds: means 0.50 (SGD) and 0.56 (1-SAM) at the validation epoch; oracle gain 12 points, last-5 gain 3
    return {"runs": [run("SGD", 0.49, 0.50, 0.40, 0.2), run("SGD", 0.51, 0.50, 0.40, 0.3, seed=1),
                     run("1-SAM", 0.55, 0.62, 0.43, 0.05), run("1-SAM", 0.57, 0.62, 0.43, 0.07, seed=1)]}


def test_check_gain(capsys):
    r = _result()
    assert nb03.check_gain(6.0, r)
    assert not nb03.check_gain(0.06, r) and "percentage points" in capsys.readouterr().out
    assert not nb03.check_gain(-6.0, r) and "sign" in capsys.readouterr().out
    assert not nb03.check_gain(12.0, r) and "oracle" in capsys.readouterr().out
    assert not nb03.check_gain(3.0, r) and "last-5" in capsys.readouterr().out
    assert not nb03.check_gain("six", r) and "number" in capsys.readouterr().out


def test_check_noisy_fit_at_epoch(capsys):
    r = _result()
    assert nb03.check_noisy_fit_at_epoch(0.05, r, "1-SAM", 1)
    assert not nb03.check_noisy_fit_at_epoch(0.8, r, "1-SAM", 1) and "clean" in capsys.readouterr().out
    assert not nb03.check_noisy_fit_at_epoch(0.9, r, "1-SAM", 1) and "last epoch" in capsys.readouterr().out
    assert not nb03.check_noisy_fit_at_epoch(5, r, "1-SAM", 1) and "percentage" in capsys.readouterr().out
    assert nb03.check_noisy_fit_at_epoch(0.07, r, "1-SAM", 1, seed=1)
    assert not nb03.check_noisy_fit_at_epoch(0.06, r, "1-SAM", 1) and "seed 0" in capsys.readouterr().out

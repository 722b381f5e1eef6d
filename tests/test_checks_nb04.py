"""Notebook-04 exercise checks on a hand-made result."""

from __future__ import annotations

import pytest

from samlab.checks import nb04


def _result() -> dict:
    def run(method, best, final, spe, ips, at_val=None, last5=None):
        at_val = best if at_val is None else at_val
        last5 = final if last5 is None else last5
        return {"method": method, "seed": 0, "oracle_test_acc": best, "final_test_acc": final,
                "test_at_val": at_val, "last5_test_acc": last5,
                "seconds_per_epoch": spe, "images_per_second": ips, "history": []}
    # SAM: 2.5× the time per epoch; images/s (a median) gives 2.4×: both are accepted.
    # SGD: oracle 0.60, last epoch 0.45; at its validation epoch 0.58, last-5 mean 0.43 -> gains 15 points
    return {"runs": [run("SGD", 0.60, 0.45, 4.0, 12000.0, at_val=0.58, last5=0.43), run("SAM", 0.70, 0.66, 10.0, 5000.0),
                     run("J-SAM", 0.68, 0.68, 12.0, None)]}


def test_check_cost_ratio(capsys):
    r = _result()
    assert nb04.check_cost_ratio(2.5, r) and "2.50×" in capsys.readouterr().out
    assert nb04.check_cost_ratio(2.4, r)  # from images per second
    assert nb04.check_cost_ratio(3.0, r, method="J-SAM")  # no images/s recorded: time only
    assert not nb04.check_cost_ratio(0.4, r) and "upside down" in capsys.readouterr().out
    assert not nb04.check_cost_ratio(150.0, r) and "percent" in capsys.readouterr().out
    assert not nb04.check_cost_ratio(250.0, r) and "percentage" in capsys.readouterr().out
    assert not nb04.check_cost_ratio(1.7, r) and "seconds_per_epoch" in capsys.readouterr().out
    assert not nb04.check_cost_ratio("2.5", r) and "number" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no runs of method"):
        nb04.check_cost_ratio(2.5, r, method="ASAM")


def test_check_early_stopping_gain(capsys):
    r = _result()
    assert nb04.check_early_stopping_gain(15.0, r) and "gains 15.00 points" in capsys.readouterr().out
    assert not nb04.check_early_stopping_gain(0.15, r) and "percentage points" in capsys.readouterr().out
    assert not nb04.check_early_stopping_gain(-15.0, r) and "sign" in capsys.readouterr().out
    assert not nb04.check_early_stopping_gain(17.0, r) and "oracle" in capsys.readouterr().out  # 0.60 − 0.43
    assert not nb04.check_early_stopping_gain(13.0, r)  # 0.58 − 0.45: the last epoch, not the last 5
    assert "last epoch alone" in capsys.readouterr().out
    assert not nb04.check_early_stopping_gain(4.0, r) and "test_at_val" in capsys.readouterr().out
    assert not nb04.check_early_stopping_gain(None, r) and "number" in capsys.readouterr().out
    assert nb04.check_early_stopping_gain(0.0, r, method="J-SAM") and "0.00 points" in capsys.readouterr().out

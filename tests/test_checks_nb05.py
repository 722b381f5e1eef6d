"""Notebook-05 exercise checks with right and wrong answers."""

from __future__ import annotations

import torch

from samlab.checks import nb05


def _result() -> dict:
    # last-5 means, last epochs and accuracies at the validation epoch that give different fractions
    run = lambda m, f, last, v: {"method": m, "seed": 0, "last5_test_acc": f, "final_test_acc": last,  # noqa: E731
                                 "test_at_val": v}
    return {"runs": [run("SGD", 0.40, 0.38, 0.50), run("SAM", 0.60, 0.62, 0.55), run("reg", 0.45, 0.50, 0.54)]}


def test_check_recovered_fraction(capsys):
    r = _result()
    assert nb05.check_recovered_fraction(0.25, r, "reg")  # (0.45 − 0.40) / (0.60 − 0.40), by hand
    assert not nb05.check_recovered_fraction(25.0, r, "reg") and "percentage" in capsys.readouterr().out
    assert not nb05.check_recovered_fraction(0.75, r, "reg") and "missing" in capsys.readouterr().out
    assert not nb05.check_recovered_fraction(1 / 3, r, "reg") and "denominator" in capsys.readouterr().out
    assert not nb05.check_recovered_fraction("a lot", r, "reg") and "number" in capsys.readouterr().out
    # (0.50 − 0.38) / (0.62 − 0.38) = 0.5: the last epoch alone
    assert not nb05.check_recovered_fraction(0.5, r, "reg") and "last epoch alone" in capsys.readouterr().out
    # (0.54 − 0.50) / (0.55 − 0.50) = 0.8: at the validation epoch
    assert not nb05.check_recovered_fraction(0.8, r, "reg") and "validation-chosen" in capsys.readouterr().out


def test_check_penalty_gradient(capsys):
    assert nb05.check_penalty_gradient(lambda W, g: 2 * g * W)
    # the same answer by autograd, as a student might write it
    def by_autograd(W, g):
        W = W.clone().requires_grad_(True)
        (g * W.square().sum()).backward()
        return W.grad
    assert nb05.check_penalty_gradient(by_autograd)
    assert not nb05.check_penalty_gradient(lambda W, g: g * W) and "factor of 2" in capsys.readouterr().out
    assert not nb05.check_penalty_gradient(lambda W, g: -2 * g * W) and "sign" in capsys.readouterr().out
    assert not nb05.check_penalty_gradient(lambda W, g: 2 * W) and "coefficient" in capsys.readouterr().out
    assert not nb05.check_penalty_gradient(lambda W, g: W.sum()) and "shape" in capsys.readouterr().out
    assert not nb05.check_penalty_gradient(lambda W, g: 1 / 0) and "ZeroDivisionError" in capsys.readouterr().out
    assert not nb05.check_penalty_gradient(torch.zeros(3)) and "function" in capsys.readouterr().out

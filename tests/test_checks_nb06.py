"""Notebook-06 exercise checks with right and wrong answers."""

from __future__ import annotations

import torch

from samlab.checks import nb06

G = torch.tensor([1.0, 2.0, -1.0, 0.5, 3.0, -2.0, 4.0, 1.0, -0.5, 2.0])
G_TILDE = torch.tensor([2.0, 1.0, 1.0, 0.25, 6.0, -1.0, 0.0, -0.5, -1.0, 1.5])
# r = [2, .5, −1, .5, 2, .5, 0, −.5, 2, .75]: amplified 3, shrunk 4, flipped 3 (by hand)


def test_check_ratio_fractions(capsys):
    assert nb06.check_ratio_fractions({"amplified": 0.3, "shrunk": 0.4, "flipped": 0.3}, G, G_TILDE)
    assert nb06.check_ratio_fractions((0.3, 0.4, 0.3), G, G_TILDE)
    assert nb06.check_ratio_fractions(torch.tensor([0.3, 0.4, 0.3]), G, G_TILDE)
    capsys.readouterr()
    assert not nb06.check_ratio_fractions((3, 4, 3), G, G_TILDE) and "counts" in capsys.readouterr().out
    assert not nb06.check_ratio_fractions((0.3, 0.5, 0.3), G, G_TILDE) and "sum to 1" in capsys.readouterr().out
    # g / g̃: r' = [.5, 2, −1, 2, .5, 2, 4e8, −2, .5, 1.33] → 5 amplified, 3 shrunk, 2 flipped
    assert not nb06.check_ratio_fractions((0.5, 0.3, 0.2), G, G_TILDE) and "upside down" in capsys.readouterr().out
    # r = 0 counted as shrunk
    assert not nb06.check_ratio_fractions((0.3, 0.5, 0.2), G, G_TILDE) and "r = 0" in capsys.readouterr().out
    assert not nb06.check_ratio_fractions((0.4, 0.4, 0.2), G, G_TILDE) and "Not quite" in capsys.readouterr().out
    assert not nb06.check_ratio_fractions({"amplified": 0.3}, G, G_TILDE) and "missing" in capsys.readouterr().out
    assert not nb06.check_ratio_fractions(0.3, G, G_TILDE) and "dict" in capsys.readouterr().out
    assert not nb06.check_ratio_fractions(("a", 0.4, 0.3), G, G_TILDE) and "number" in capsys.readouterr().out


def test_check_fsam_perturbation(capsys):
    check = nb06.check_fsam_perturbation

    def right(g, m, sigma, rho):
        d = g - sigma * m
        return rho * d / d.norm()

    assert nb06.check_fsam_perturbation(right)
    assert nb06.check_fsam_perturbation(lambda g, m, s, r: right(g, m, s, r).tolist())  # a list is fine
    capsys.readouterr()
    assert not check(lambda g, m, s, r: g - s * m) and "normalise" in capsys.readouterr().out
    assert not check(lambda g, m, s, r: r * g / g.norm()) and "SAM's" in capsys.readouterr().out
    assert not check(lambda g, m, s, r: r * (g - s * m) / g.norm()) and "‖d‖" in capsys.readouterr().out
    assert not check(lambda g, m, s, r: right(g, -m, s, r)) and "EMA term" in capsys.readouterr().out
    assert not check(lambda g, m, s, r: -right(g, m, s, r)) and "sign is flipped" in capsys.readouterr().out
    assert not check(lambda g, m, s, r: g[:3]) and "shape" in capsys.readouterr().out
    assert not check(lambda g, m, s, r: 1 / 0) and "ZeroDivisionError" in capsys.readouterr().out
    assert not check(lambda g, m, s, r: r * m / m.norm()) and "Not quite" in capsys.readouterr().out

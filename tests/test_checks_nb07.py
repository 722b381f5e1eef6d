"""Notebook-07 exercise checks with right and wrong answers."""

from __future__ import annotations

import numpy as np
import torch

from samlab.checks import nb07

# the CIFAR-10 asymmetric mapping at rate 0.4, written out by hand
R = 0.4


def _by_hand() -> torch.Tensor:
    T = torch.eye(10, dtype=torch.float64)
    for src, dst in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        T[src, src], T[src, dst] = 1 - R, R
    return T


def test_check_transition_matrix_right(capsys):
    T = _by_hand()
    assert nb07.check_transition_matrix(T, R)
    assert nb07.check_transition_matrix(T.numpy(), R)  # an array
    assert nb07.check_transition_matrix(T.tolist(), R)  # a list of lists
    assert nb07.check_transition_matrix(T.float(), R)  # float32
    assert "✓" in capsys.readouterr().out


def test_check_transition_matrix_wrong(capsys):
    T = _by_hand()
    assert not nb07.check_transition_matrix(T.T, R) and "Transposed" in capsys.readouterr().out
    assert not nb07.check_transition_matrix(T[:9], R) and "shape" in capsys.readouterr().out
    assert not nb07.check_transition_matrix("T", R) and "tensor" in capsys.readouterr().out
    no_diag = torch.eye(10, dtype=torch.float64)  # the flip added but the diagonal left at 1
    for src, dst in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        no_diag[src, dst] = R
    assert not nb07.check_transition_matrix(no_diag, R)
    out = capsys.readouterr().out
    assert "sum to 1" in out and "diagonal" in out
    swapped = torch.eye(10, dtype=torch.float64)
    for src, dst in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        swapped[src, src], swapped[src, dst] = R, 1 - R
    assert not nb07.check_transition_matrix(swapped, R) and "swapped" in capsys.readouterr().out
    reverse = torch.eye(10, dtype=torch.float64)  # the rows of the targets flip to the sources
    for src, dst in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        reverse[dst, dst], reverse[dst, src] = 1 - R, R
    assert not nb07.check_transition_matrix(reverse, R) and "wrong way" in capsys.readouterr().out
    symmetric = (1 - R) * torch.eye(10, dtype=torch.float64) + R * (1 - torch.eye(10, dtype=torch.float64)) / 9
    assert not nb07.check_transition_matrix(symmetric, R) and "symmetric" in capsys.readouterr().out
    one_way = T.clone()
    one_way[5] = torch.eye(10, dtype=torch.float64)[5]  # cats become dogs, dogs stay dogs
    assert not nb07.check_transition_matrix(one_way, R) and "both ways" in capsys.readouterr().out
    other = T.clone()
    other[8, 8], other[8, 0] = 1 - R, R  # ship→airplane is not in the mapping
    assert not nb07.check_transition_matrix(other, R)
    assert "rows [8]" in capsys.readouterr().out


def _result() -> dict:
    C = np.zeros((10, 10), dtype=int)
    np.fill_diagonal(C, 80)
    C[3, 3], C[3, 5], C[3, 2] = 60, 30, 30  # 120 cats: 30 predicted as dog
    C[5, 5], C[5, 3] = 90, 15  # 105 dogs: 15 predicted as cat
    C[2, 5] = 5  # 5 birds predicted as dog: 30 + 90 + 5 = 125 images predicted as dog
    noise = np.diag([100] * 10)
    noise[3, 5] = 40
    return {"noise_confusion": noise.tolist(),
            "runs": [{"method": "SGD", "seed": 0, "test_confusion": C.tolist()},
                     {"method": "SAM", "seed": 0, "test_confusion": np.diag([100] * 10).tolist()}]}


def test_check_confusion_fraction(capsys):
    r = _result()
    assert nb07.check_confusion_fraction(0.25, r, 3, 5, "SGD")  # 30 of 120 cats, by hand
    assert "✓" in capsys.readouterr().out
    assert nb07.check_confusion_fraction(0.0, r, 3, 5, "SAM")
    assert not nb07.check_confusion_fraction(30.0, r, 3, 5) and "count" in capsys.readouterr().out
    assert not nb07.check_confusion_fraction(25.0, r, 3, 5) and "percentage" in capsys.readouterr().out
    assert not nb07.check_confusion_fraction(15 / 105, r, 3, 5) and "swapped" in capsys.readouterr().out
    assert not nb07.check_confusion_fraction(30 / 125, r, 3, 5) and "column" in capsys.readouterr().out
    total = int(np.asarray(r["runs"][0]["test_confusion"]).sum())
    assert not nb07.check_confusion_fraction(30 / total, r, 3, 5) and "whole test set" in capsys.readouterr().out
    assert not nb07.check_confusion_fraction(40 / 140, r, 3, 5) and "training-label" in capsys.readouterr().out
    assert not nb07.check_confusion_fraction(0.5, r, 3, 5) and "Not quite" in capsys.readouterr().out
    assert not nb07.check_confusion_fraction("a third", r, 3, 5) and "number" in capsys.readouterr().out


def test_check_confusion_fraction_percentage(capsys):
    r = _result()
    r["runs"][0]["test_confusion"][3][2] = 110  # 200 cats, 30 as dogs: 15%
    assert nb07.check_confusion_fraction(0.15, r, 3, 5)
    assert not nb07.check_confusion_fraction(15.0, r, 3, 5) and "percentage" in capsys.readouterr().out

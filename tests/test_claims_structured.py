"""Per-class accuracy from confusion matrices, and the structured-noise claims on hand-made results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, recall_score

from samlab.confusion import confusion_counts
from samlab.claims import (
    final_confusion,
    noise_source_classes,
    per_class_accuracy,
    pooled_accuracy,
    row_normalise,
    structured_noise_claims,
)
from samlab.noise import corrupt


def test_per_class_accuracy_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 5, 300))
    counts = confusion_counts(torch.as_tensor(y), torch.as_tensor(pred), 5)
    cm = confusion_matrix(y, pred, labels=range(5))
    np.testing.assert_array_equal(counts, cm)
    np.testing.assert_allclose(per_class_accuracy(counts), cm.diagonal() / cm.sum(1))
    np.testing.assert_allclose(per_class_accuracy(counts), recall_score(y, pred, average=None))
    np.testing.assert_allclose(row_normalise(counts), confusion_matrix(y, pred, normalize="true"))


def test_by_hand_and_empty_rows():
    counts = [[3, 1], [0, 0]]
    assert row_normalise(counts)[0] == [0.75, 0.25]
    assert all(math.isnan(v) for v in row_normalise(counts)[1])
    acc = per_class_accuracy(np.array([[3, 1], [2, 2]]))
    assert acc == [0.75, 0.5]
    with pytest.raises(ValueError, match="square"):
        row_normalise([[1, 2, 3], [4, 5, 6]])


def test_noise_source_classes_are_the_asymmetric_map_sources():
    y = torch.arange(10).repeat(200)
    noisy = corrupt(y, "asymmetric", 0.4, 10, seed=0, dataset="cifar10")
    result = {"noise_confusion": confusion_counts(y, noisy.labels, 10)}
    assert noise_source_classes(result) == [2, 3, 4, 5, 9]  # bird, cat, deer, dog, truck
    cyclic = corrupt(y, "asymmetric", 0.4, 10, seed=0, dataset="digits")
    assert noise_source_classes({"noise_confusion": confusion_counts(y, cyclic.labels, 10)}) == list(range(10))


def _confusion(diag: list[int], off: int = 0) -> list[list[int]]:
    """10 test images per class (3 classes); class i gets diag[i] right, the rest predicted as (i+1) % 3."""
    return [[d if j == i else (10 - d if j == (i + 1) % 3 else 0) for j in range(3)] for i, d in enumerate(diag)]


def _result(best: dict[str, float], final: dict[str, float], diag: dict[str, list[int]]) -> dict:
    # class 0 loses labels to class 1; classes 1 and 2 are clean
    return {
        "experiment": "asymmetric-hand",
        "noise_confusion": [[6, 4, 0], [0, 10, 0], [0, 0, 10]],
        "runs": [{"method": m, "seed": 0, "best_test_acc": best[m], "final_test_acc": final[m], "test_confusion": _confusion(diag[m])}
                 for m in best],
    }


def test_structured_claims_hold():
    methods = ("SGD", "SAM", "J-SAM", "reg W+A 3e-3", "SANER(SAM)")
    r = _result(best=dict(zip(methods, (0.6, 0.7, 0.69, 0.65, 0.71))),
                final=dict(zip(methods, (0.5, 0.66, 0.64, 0.55, 0.68))),
                diag={"SGD": [3, 9, 9], "SAM": [7, 9, 9], "J-SAM": [6, 9, 9], "reg W+A 3e-3": [4, 9, 9], "SANER(SAM)": [8, 9, 9]})
    claims = structured_noise_claims(r)
    assert len(claims) == 6 and all(c["holds"] for c in claims)
    source = next(c for c in claims if "lose labels" in c["claim"])
    assert source["evidence"] == "classes [0]: SAM 70.0% vs SGD 30.0%"  # 7/10 vs 3/10, by hand
    assert {"claim", "holds", "evidence"} == set(claims[0])


def test_structured_claims_fail():
    methods = ("SGD", "SAM", "J-SAM", "reg W+A 3e-3", "SANER(SAM)")
    r = _result(best=dict(zip(methods, (0.7, 0.6, 0.6, 0.6, 0.6))),
                final=dict(zip(methods, (0.6, 0.5, 0.59, 0.55, 0.45))),
                diag={m: [5, 9, 9] for m in methods})
    claims = structured_noise_claims(r)
    assert len(claims) == 6 and not any(c["holds"] for c in claims)  # equal source accuracy: not "above"


def test_structured_claims_skip_absent_methods_and_need_sgd():
    r = _result(best={"SGD": 0.5, "SAM": 0.6}, final={"SGD": 0.5, "SAM": 0.6}, diag={"SGD": [3, 9, 9], "SAM": [4, 9, 9]})
    assert [c["holds"] for c in structured_noise_claims(r)] == [True, True, True]
    r["runs"] = r["runs"][1:]
    with pytest.raises(ValueError, match="SGD"):
        structured_noise_claims(r)


def test_final_confusion_sums_seeds_and_needs_the_field():
    r = {"experiment": "x", "runs": [{"method": "SGD", "seed": s, "test_confusion": [[1, 2], [3, 4]]} for s in (0, 1)]}
    assert final_confusion(r, "SGD") == [[2, 4], [6, 8]]
    del r["runs"][0]["test_confusion"]
    with pytest.raises(ValueError, match="test_confusion"):
        final_confusion(r, "SGD")


def test_pooled_accuracy_counts_the_chosen_classes_test_images_together():
    counts = [[8, 2, 0], [3, 1, 0], [0, 0, 5]]
    assert pooled_accuracy(counts, [0, 1]) == pytest.approx((8 + 1) / (10 + 4))  # not the mean of 0.8 and 0.25
    assert pooled_accuracy(counts, [2]) == 1.0
    assert math.isnan(pooled_accuracy(counts, []))

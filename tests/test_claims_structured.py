"""Per-class accuracy from confusion matrices, the classes that lose labels, and seeds' confusion summed (notebook 07)."""

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
    row_normalise,
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


def test_final_confusion_sums_seeds_and_needs_the_field():
    r = {"experiment": "x", "runs": [{"method": "SGD", "seed": s, "test_confusion": [[1, 2], [3, 4]]} for s in (0, 1)]}
    assert final_confusion(r, "SGD") == [[2, 4], [6, 8]]
    del r["runs"][0]["test_confusion"]
    with pytest.raises(ValueError, match="test_confusion"):
        final_confusion(r, "SGD")

"""Noise plots draw what they are given (checked on the matplotlib artists)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from samlab.data import CIFAR10_CLASSES  # noqa: E402
from samlab.noise import transition_matrix  # noqa: E402
from samlab.plots.noise import class_names, plot_confusion, plot_per_class  # noqa: E402

COUNTS = [[8, 2, 0], [1, 3, 0], [0, 5, 5]]


def test_confusion_image_is_row_normalised_with_values_and_labels():
    ax = plot_confusion(COUNTS, class_names=["a", "b", "c"], title="t")
    image = ax.images[0].get_array()
    np.testing.assert_allclose(image, [[0.8, 0.2, 0.0], [0.25, 0.75, 0.0], [0.0, 0.5, 0.5]])
    np.testing.assert_allclose(np.asarray(image).sum(1), 1.0)
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.80", "0.20", "0", "0.25", "0.75", "0", "0", "0.50", "0.50"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class" and ax.get_title() == "t"


def test_confusion_counts_tensor_and_default_names():
    ax = plot_confusion(torch.tensor(COUNTS), normalise=None, xlabel="observed label")
    np.testing.assert_array_equal(ax.images[0].get_array(), COUNTS)
    assert [t.get_text() for t in ax.texts][:3] == ["8", "2", "0"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert ax.get_xlabel() == "observed label"


def test_confusion_of_a_transition_matrix_is_itself():
    T = transition_matrix("asymmetric", 0.4, 10, "cifar10")
    ax = plot_confusion(T, class_names=CIFAR10_CLASSES)
    np.testing.assert_allclose(ax.images[0].get_array(), T.numpy())
    assert ax.get_yticklabels()[3].get_text() == "cat"


def test_confusion_refuses_bad_input():
    with pytest.raises(ValueError, match="normalise"):
        plot_confusion(COUNTS, normalise="column")
    with pytest.raises(ValueError, match="class_names"):
        plot_confusion(COUNTS, class_names=["a", "b"])
    with pytest.raises(ValueError, match="square"):
        plot_confusion([[1, 2], [3]])


def test_per_class_bars_hold_the_accuracies():
    acc = {"SGD": [0.5, 0.6, 0.7], "SAM": [0.55, 0.65, 0.9]}
    ax = plot_per_class(acc, ["a", "b", "c"], highlight=[2])
    assert len(ax.containers) == 2
    for container, (label, values) in zip(ax.containers, acc.items()):
        assert container.get_label() == label
        np.testing.assert_allclose([bar.get_height() for bar in container], values)
    sgd_x = [bar.get_x() + bar.get_width() / 2 for bar in ax.containers[0]]
    sam_x = [bar.get_x() + bar.get_width() / 2 for bar in ax.containers[1]]
    np.testing.assert_allclose(np.add(sgd_x, sam_x) / 2, [0, 1, 2], atol=1e-12)  # each group centred on its class
    assert all(a < b for a, b in zip(sgd_x, sam_x))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_xticklabels()[2].get_color() == "tab:red"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["SGD", "SAM"]
    with pytest.raises(ValueError, match="2 accuracies for 3 classes"):
        plot_per_class({"SGD": [0.1, 0.2]}, ["a", "b", "c"])


def test_class_names():
    assert class_names("cifar10-mini", 10) == list(CIFAR10_CLASSES)
    assert class_names("cifar10", 10)[9] == "truck"
    assert class_names("digits", 10) == [str(i) for i in range(10)]
    assert class_names("cifar100", 100)[:2] == ["0", "1"]

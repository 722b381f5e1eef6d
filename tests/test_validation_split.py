"""The validation split of samlab.data.load: stratified by observed label, after the noise, seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from samlab import data


def _noisy(**kw):
    return data.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=4, **kw)


def test_default_holds_out_a_tenth_after_the_noise():
    full = _noisy(val_fraction=0.0)
    ds = _noisy()
    n = len(full.y_train)
    assert ds.has_validation and not full.has_validation and full.x_val is None
    assert len(ds.y_val) == math.floor(0.1 * n + 0.5) and len(ds.y_train) + len(ds.y_val) == n
    tr, va = ds.split.train_index, ds.split.val_index
    # disjoint, and together exactly the original training set (positions, images, both kinds of label)
    assert not set(tr.tolist()) & set(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(n))
    for part, idx in (("train", tr), ("val", va)):
        x = ds.x_train if part == "train" else ds.x_val
        y = ds.y_train if part == "train" else ds.y_val
        yc = ds.y_train_clean if part == "train" else ds.y_val_clean
        m = ds.is_noisy if part == "train" else ds.val_is_noisy
        assert torch.equal(x, full.x_train[idx]) and torch.equal(y, full.y_train[idx])
        assert torch.equal(yc, full.y_train_clean[idx]) and torch.equal(m, full.is_noisy[idx])
        assert torch.equal(m, y != yc)  # the held-out labels carry the same noise
    assert torch.equal(ds.x_test, full.x_test) and ds.noise.realised_rate == full.noise.realised_rate


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.5])
def test_stratified_by_observed_label_within_one_of_the_target(fraction):
    full = _noisy(val_fraction=0.0)
    ds = _noisy(val_fraction=fraction)
    obs = full.y_train.numpy()
    held = ds.y_val.numpy()
    for c in range(10):
        target = fraction * (obs == c).sum()
        assert abs((held == c).sum() - target) < 1, (c, (held == c).sum(), target)
    assert len(held) == math.floor(fraction * len(obs) + 0.5)


def test_noise_rate_in_validation_is_close_to_training():
    ds = data.load("gaussian", n=20000, d=4, classes=4, n_test=10, noise="symmetric-flip", rate=0.4, noise_seed=1)
    # 2,000 validation labels: binomial s.e. of the rate about 0.011
    assert ds.val_noise_rate == pytest.approx(ds.train_noise_rate, abs=0.04)
    assert ds.train_noise_rate == pytest.approx(0.4, abs=0.02)


def test_split_is_deterministic_per_seed_and_defaults_to_the_noise_seed():
    a, b = _noisy(), _noisy()
    assert torch.equal(a.split.val_index, b.split.val_index) and torch.equal(a.y_val, b.y_val)
    assert a.split.seed == 4  # default: the noise seed
    other = _noisy(val_seed=5)
    assert not torch.equal(a.split.val_index, other.split.val_index)
    assert torch.equal(_noisy(val_seed=4).split.val_index, a.split.val_index)
    # another noise draw, with its default split seed, holds out other examples
    c = data.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=5)
    assert not torch.equal(a.split.val_index, c.split.val_index)


def test_split_does_not_favour_noisy_or_clean_examples_for_equal_seeds():
    """The split's generator differs from the noise's: with equal seeds the held-out examples are
    not the noisy ones (or the clean ones) more often than chance, over many seeds."""
    diffs = []
    for seed in range(20):
        ds = data.load("gaussian", n=2000, d=3, classes=2, n_test=10, noise="symmetric-flip", rate=0.3, noise_seed=seed)
        diffs.append(ds.val_noise_rate - ds.train_noise_rate)
    assert abs(np.mean(diffs)) < 0.02  # s.e. of one difference ~0.034, of the mean of 20 ~0.008


def test_val_fraction_zero_is_exactly_the_old_dataset():
    ds = _noisy(val_fraction=0.0)
    assert ds.split is None and ds.y_val is None and ds.val_noise_rate is None
    assert len(ds.y_train) == 1348 and "validation" not in ds.describe()


def test_describe_and_to_carry_the_split():
    ds = data.load("gaussian", n=100, d=4, n_test=5, noise="symmetric-flip", rate=0.2, noise_seed=3)
    text = ds.describe()
    assert "90 train + 10 validation (held out of the noisy training set, 0.1 stratified by observed label, val seed 3) / 5 test" in text
    moved = ds.to("meta")
    for name in ("x_val", "y_val", "y_val_clean", "val_is_noisy"):
        assert getattr(moved, name).device.type == "meta" and getattr(moved, name).shape == getattr(ds, name).shape


@pytest.mark.parametrize("value", [-0.1, 0.6, 1.0, "0.1", True])
def test_bad_val_fraction_is_named_with_its_range(value):
    with pytest.raises(ValueError, match=r"val_fraction must be a number in \[0, 0.5\]"):
        data.load("digits", val_fraction=value)


@pytest.mark.parametrize("value", [-1, 1.5, "3"])
def test_bad_val_seed_is_named(value):
    with pytest.raises(ValueError, match="val_seed must be an integer >= 0"):
        data.load("digits", val_seed=value)


def test_a_fraction_that_holds_out_nothing_is_refused():
    with pytest.raises(ValueError, match="holds out no example"):
        data.load("gaussian", n=4, d=2, n_test=2, val_fraction=0.1)


def test_noise_after_a_split_is_refused():
    with pytest.raises(ValueError, match="before holding out"):
        data.with_noise(data.load("digits"), "symmetric-flip", 0.2)

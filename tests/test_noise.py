"""samlab.noise against the noise models' definitions, with statistical tolerances.

Every draw uses a fixed seed, so the tests are deterministic; the tolerances (about five
standard deviations) say how far a correct implementation could be from the expectation.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from samlab import noise

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
#: The standard class-conditional CIFAR-10 noise (Patrini et al., 2017), by class name.
CIFAR10_PAIRS = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}


def _balanced(n_per_class: int, k: int) -> torch.Tensor:
    return torch.arange(k).repeat(n_per_class)


def _within(observed: float, p: float, n: int, z: float = 5.0) -> bool:
    return abs(observed - p) <= z * math.sqrt(p * (1 - p) / n) + 1e-12


def _counts(clean: torch.Tensor, noisy: torch.Tensor, k: int) -> torch.Tensor:
    c = torch.zeros(k, k, dtype=torch.float64)
    c.index_put_((clean, noisy), torch.ones(len(clean), dtype=torch.float64), accumulate=True)
    return c


@pytest.mark.parametrize("k", [2, 3, 10])
@pytest.mark.parametrize("rate", [0.2, 0.45])
def test_symmetric_flip_rate_and_never_keeps_the_label(k, rate):
    clean = _balanced(20000, k)
    out = noise.corrupt(clean, "symmetric-flip", rate, k, seed=1)
    n = len(clean)
    # a hit always changes the label, so the realised rate is r (not r (K-1)/K)
    assert _within(out.realised_rate, rate, n), out.realised_rate
    assert out.realised_rate == pytest.approx(float((out.labels != clean).float().mean()))
    if k == 2:  # the only other class
        assert torch.equal(out.labels[out.is_noisy], 1 - clean[out.is_noisy])
    # per class, too
    for c in range(k):
        m = clean == c
        assert _within(float(out.is_noisy[m].float().mean()), rate, int(m.sum()))


def test_symmetric_flip_targets_are_uniform_over_the_other_classes():
    k = 10
    clean = _balanced(20000, k)
    out = noise.corrupt(clean, "symmetric-flip", 0.4, k, seed=3)
    counts = _counts(clean, out.labels, k)
    chi2, df = 0.0, 0
    for i in range(k):
        row = torch.cat([counts[i, :i], counts[i, i + 1 :]])  # the K-1 other classes
        expected = row.sum() / (k - 1)
        chi2 += float(((row - expected) ** 2 / expected).sum())
        df += k - 2
    assert stats.chi2.sf(chi2, df) > 1e-4, (chi2, df)


@pytest.mark.parametrize("k", [2, 10])
def test_symmetric_uniform_realised_rate(k):
    rate = 0.5
    clean = _balanced(20000, k)
    out = noise.corrupt(clean, "symmetric-uniform", rate, k, seed=2)
    assert _within(out.realised_rate, rate * (k - 1) / k, len(clean))


def test_asymmetric_cifar10_mapping_is_the_standard_one():
    idx = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    expected = {idx[a]: idx[b] for a, b in CIFAR10_PAIRS.items()}
    assert noise.CIFAR10_ASYMMETRIC == expected
    assert noise.asymmetric_map(10, "cifar10") == expected
    assert noise.asymmetric_map(10, "cifar10-mini") == expected

    clean = _balanced(5000, 10)
    rate = 0.3
    out = noise.corrupt(clean, "asymmetric", rate, 10, seed=0, dataset="cifar10")
    for name in CIFAR10_CLASSES:
        c = idx[name]
        observed = set(out.labels[clean == c].tolist())
        if name in CIFAR10_PAIRS:
            assert observed == {c, idx[CIFAR10_PAIRS[name]]}, name
            assert _within(float(out.is_noisy[clean == c].float().mean()), rate, 5000)
        else:  # airplane, automobile, frog, horse, ship keep their labels
            assert observed == {c}, name
    assert _within(out.realised_rate, rate * 5 / 10, len(clean))


@pytest.mark.parametrize("k, dataset", [(10, None), (10, "mnist"), (100, "cifar100"), (3, "cifar10"), (2, None)])
def test_asymmetric_is_cyclic_otherwise(k, dataset):
    assert noise.asymmetric_map(k, dataset) == {i: (i + 1) % k for i in range(k)}
    clean = _balanced(300, k)
    out = noise.corrupt(clean, "asymmetric", 0.4, k, seed=5, dataset=dataset)
    assert torch.equal(out.labels[out.is_noisy], (clean[out.is_noisy] + 1) % k)
    assert _within(out.realised_rate, 0.4, len(clean))


@pytest.mark.parametrize(
    "kind, k, dataset",
    [
        ("symmetric-flip", 5, None),
        ("symmetric-uniform", 5, None),
        ("asymmetric", 10, "cifar10"),
        ("asymmetric", 4, None),
    ],
)
def test_empirical_transition_matrix_matches_the_expected_one(kind, k, dataset):
    rate = 0.35
    n_per = 20000
    clean = _balanced(n_per, k)
    out = noise.corrupt(clean, kind, rate, k, seed=11, dataset=dataset)
    empirical = _counts(clean, out.labels, k) / n_per
    t = noise.transition_matrix(kind, rate, k, dataset=dataset)
    assert t.shape == (k, k)
    torch.testing.assert_close(t.sum(1), torch.ones(k, dtype=t.dtype))
    tol = 5 * torch.sqrt(t * (1 - t) / n_per) + 1e-12
    assert bool(((empirical - t).abs() <= tol).all()), (empirical, t)


def test_transition_matrices_in_closed_form():
    k, r = 4, 0.2
    flip = noise.transition_matrix("symmetric-flip", r, k)
    assert flip[0, 0] == pytest.approx(0.8) and flip[0, 1] == pytest.approx(0.2 / 3)
    uni = noise.transition_matrix("symmetric-uniform", r, k)
    assert uni[0, 0] == pytest.approx(0.8 + 0.05) and uni[2, 1] == pytest.approx(0.05)
    asym = noise.transition_matrix("asymmetric", r, 10, dataset="cifar10")
    assert asym[9, 1] == pytest.approx(0.2) and asym[9, 9] == pytest.approx(0.8)
    assert asym[3, 5] == pytest.approx(0.2) and asym[5, 3] == pytest.approx(0.2)
    assert asym[0, 0] == 1 and asym[6, 6] == 1
    assert torch.equal(noise.transition_matrix("symmetric-flip", 0.0, k), torch.eye(k, dtype=flip.dtype))


def test_seeds_reproduce_and_differ():
    clean = _balanced(500, 10)
    for kind in noise.NOISE_KINDS:
        a = noise.corrupt(clean, kind, 0.4, 10, seed=5, dataset="cifar10")
        b = noise.corrupt(clean, kind, 0.4, 10, seed=5, dataset="cifar10")
        c = noise.corrupt(clean, kind, 0.4, 10, seed=6, dataset="cifar10")
        assert torch.equal(a.labels, b.labels) and torch.equal(a.is_noisy, b.is_noisy)
        assert not torch.equal(a.labels, c.labels), kind
        assert a.seed == 5 and a.kind == kind and a.rate == 0.4


def test_noise_ignores_and_preserves_the_global_torch_seed():
    clean = _balanced(500, 10)
    torch.manual_seed(0)
    a = noise.corrupt(clean, "symmetric-flip", 0.3, 10, seed=1)
    torch.manual_seed(12345)
    state = torch.get_rng_state()
    b = noise.corrupt(clean, "symmetric-flip", 0.3, 10, seed=1)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(torch.get_rng_state(), state)  # the training seed's stream is untouched


@pytest.mark.parametrize("kind", noise.NOISE_KINDS)
def test_mask_matches_labels_and_input_is_untouched(kind):
    clean = _balanced(400, 10).to(torch.int32)
    before = clean.clone()
    out = noise.corrupt(clean, kind, 0.5, 10, seed=9, dataset="cifar10")
    assert torch.equal(clean, before)
    assert out.labels.dtype == torch.int64 and out.is_noisy.dtype == torch.bool
    assert out.labels.shape == clean.shape and out.labels.device == clean.device
    assert torch.equal(out.is_noisy, out.labels != clean.long())
    assert out.realised_rate == pytest.approx(float(out.is_noisy.float().mean()))
    assert int(out.labels.min()) >= 0 and int(out.labels.max()) < 10


@pytest.mark.parametrize("kind", noise.NOISE_KINDS)
def test_rate_zero_changes_nothing(kind):
    clean = _balanced(100, 10)
    out = noise.corrupt(clean, kind, 0.0, 10, seed=0, dataset="cifar10")
    assert torch.equal(out.labels, clean) and not out.is_noisy.any() and out.realised_rate == 0.0


def test_empty_labels():
    out = noise.corrupt(torch.zeros(0, dtype=torch.int64), "symmetric-flip", 0.3, 10)
    assert out.labels.numel() == 0 and out.realised_rate == 0.0


@pytest.mark.parametrize(
    "labels, kind, rate, k, param",
    [
        (torch.tensor([0, 1]), "symmetric-flip", -0.1, 2, "rate"),
        (torch.tensor([0, 1]), "symmetric-flip", 1.0, 2, "rate"),
        (torch.tensor([0, 1]), "symmetric-flip", float("nan"), 2, "rate"),
        (torch.tensor([0, 1]), "gaussian", 0.1, 2, "kind"),
        (torch.tensor([0, 2]), "symmetric-flip", 0.1, 2, "labels"),
        (torch.tensor([-1, 1]), "symmetric-flip", 0.1, 2, "labels"),
        (torch.tensor([[0, 1]]), "symmetric-flip", 0.1, 2, "labels"),
        (torch.tensor([0.0, 1.0]), "symmetric-flip", 0.1, 2, "labels"),
        (torch.tensor([0, 0]), "symmetric-flip", 0.1, 1, "num_classes"),
    ],
)
def test_bad_inputs_name_the_parameter(labels, kind, rate, k, param):
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        noise.corrupt(labels, kind, rate, k)


@pytest.mark.parametrize(
    "kind, rate, k, param",
    [("x", 0.1, 3, "kind"), ("asymmetric", 1.5, 3, "rate"), ("asymmetric", 0.1, 1, "num_classes")],
)
def test_transition_matrix_bad_inputs(kind, rate, k, param):
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        noise.transition_matrix(kind, rate, k)

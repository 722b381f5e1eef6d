"""samlab.models and samlab.augment against hand computation and known reference figures."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samlab import augment, models

#: Options that keep every model small enough for a fast CPU test.
SMALL = {
    "linear": {},
    "deep-linear": {"hidden": 6},
    "mlp": {"hidden": 12},
    "small-cnn": {"widths": (4, 8, 16)},
    "resnet18": {"width": 4},
}
IMAGE = (3, 16, 16)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread is fastest, and immune to a busy machine's other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _input(name: str, n: int = 5, seed: int = 0) -> tuple[tuple[int, ...], torch.Tensor]:
    shape = IMAGE if name in ("small-cnn", "resnet18") else (2, 3, 4)  # flat models flatten any shape
    return shape, torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def test_every_model_is_covered():
    assert set(SMALL) == set(models.MODELS)


@pytest.mark.parametrize("name", models.MODELS)
@pytest.mark.parametrize("k", [1, 3])
def test_forward_is_head_of_features(name, k):
    shape, x = _input(name)
    model = models.build(name, shape, k, seed=0, **SMALL[name]).eval()
    assert isinstance(model, models.Classifier) and isinstance(model.head, nn.Linear)
    with torch.no_grad():
        out = model(x)
        feats = model.features(x)
        ref = model.head(feats)
    assert feats.ndim == 2 and feats.shape == (5, model.head.in_features)
    assert model.head.out_features == k
    if k == 1:
        assert out.shape == (5,)
        torch.testing.assert_close(out, ref[:, 0])
    else:
        assert out.shape == (5, k)
        torch.testing.assert_close(out, ref)


def test_linear_model_is_wx():
    x = torch.randn(4, 2, 3)
    m = models.build("linear", (2, 3), 1, seed=0)
    assert m.head.bias is None and m.head.weight.shape == (1, 6)
    w = m.head.weight.detach()[0]
    torch.testing.assert_close(m(x).detach(), torch.stack([xi.reshape(-1) @ w for xi in x]))
    mb = models.build("linear", (6,), 3, seed=0, bias=True)
    x2 = torch.randn(4, 6)
    torch.testing.assert_close(mb(x2).detach(), x2 @ mb.head.weight.detach().T + mb.head.bias.detach())


@pytest.mark.parametrize("depth", [2, 3])
def test_deep_linear_is_a_product_of_matrices(depth):
    m = models.build("deep-linear", (5,), 1, seed=0, hidden=4, depth=depth)
    assert all(not isinstance(p, nn.Linear) or p.bias is None for p in m.modules())
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert len(linears) == depth  # W_1 .. W_{L-1} and v
    x = torch.randn(7, 5)
    prod = torch.eye(5)
    for lin in linears:  # f = v^T W_{L-1} ... W_1 x
        prod = lin.weight.detach() @ prod
    torch.testing.assert_close(m(x).detach(), (x @ prod.T)[:, 0])
    feats = x
    for lin in linears[:-1]:
        feats = feats @ lin.weight.detach().T
    torch.testing.assert_close(m.features(x).detach(), feats)


def test_mlp_by_hand():
    m = models.build("mlp", (5,), 3, seed=0, hidden=4, depth=2)
    lin = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    x = torch.randn(6, 5)
    h = x
    for layer in lin[:-1]:
        h = torch.relu(h @ layer.weight.detach().T + layer.bias.detach())
    torch.testing.assert_close(m.features(x).detach(), h)
    torch.testing.assert_close(m(x).detach(), h @ lin[-1].weight.detach().T + lin[-1].bias.detach())


def test_reference_parameter_counts():
    # ResNet-18 with the CIFAR stem, 10 classes: the well-known 11,173,962 parameters
    resnet = models.build("resnet18", (3, 32, 32), 10)
    assert sum(p.numel() for p in resnet.parameters()) == 11_173_962
    assert resnet.head.in_features == 512
    assert not any(isinstance(mod, nn.MaxPool2d) for mod in resnet.modules())  # no max-pool in the stem
    first = next(mod for mod in resnet.modules() if isinstance(mod, nn.Conv2d))
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)
    # SmallCNN 32-64-128, BatchNorm, 10 classes: three bias-free 3×3 convs, BN (2c each), a head
    cnn = models.build("small-cnn", (3, 32, 32), 10)
    convs = 3 * 32 * 9 + 32 * 64 * 9 + 64 * 128 * 9
    assert sum(p.numel() for p in cnn.parameters()) == convs + 2 * (32 + 64 + 128) + 128 * 10 + 10
    assert cnn.features(torch.zeros(2, 3, 32, 32)).shape == (2, 128)
    mnist = models.build("small-cnn", (1, 28, 28), 10)
    assert mnist(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", models.MODELS)
def test_seed_determines_the_weights_and_leaves_the_global_rng_alone(name):
    shape, _ = _input(name)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = models.build(name, shape, 3, seed=7, **SMALL[name])
    assert torch.equal(torch.get_rng_state(), state)
    b = models.build(name, shape, 3, seed=7, **SMALL[name])
    c = models.build(name, shape, 3, seed=8, **SMALL[name])
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[key], sb[key]) for key in sa)
    assert not torch.equal(sa["head.weight"], sc["head.weight"])


@pytest.mark.parametrize("name", ["small-cnn", "resnet18"])
def test_groupnorm_variant_treats_examples_independently(name):
    shape, x = _input(name, n=4)
    gn = models.build(name, shape, 3, norm="gn", **SMALL[name]).train()
    assert any(isinstance(mod, nn.GroupNorm) for mod in gn.modules())
    assert not any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in gn.modules())
    with torch.no_grad():  # in training mode, an example's output does not depend on its batch
        torch.testing.assert_close(gn(x)[:1], gn(x[:1]), rtol=1e-4, atol=1e-5)
    bn = models.build(name, shape, 3, norm="bn", **SMALL[name]).train()
    with torch.no_grad():  # ... unlike BatchNorm (the reason for the "gn" variant)
        assert not torch.allclose(bn(x)[:1], bn(x[:1]), rtol=1e-4, atol=1e-5)
    none = models.build(name, shape, 3, norm="none", **SMALL[name])
    assert not any(isinstance(mod, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm)) for mod in none.modules())
    assert none(x).shape == (4, 3)


def test_groupnorm_groups_divide_the_channels():
    cnn = models.SmallCNN(3, 10, norm="gn")
    groups = [(mod.num_groups, mod.num_channels) for mod in cnn.modules() if isinstance(mod, nn.GroupNorm)]
    assert groups == [(8, 32), (16, 64), (32, 128)]  # four channels a group, at most 32 groups
    odd = models.SmallCNN(3, 10, widths=(6, 18, 50, 130), norm="gn")  # widths that are not multiples of 4
    for mod in odd.modules():
        if isinstance(mod, nn.GroupNorm):
            assert mod.num_channels % mod.num_groups == 0 and 1 <= mod.num_groups <= 32
    assert odd(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    assert models.build("resnet18", IMAGE, 10, norm="gn", width=18)(torch.zeros(1, *IMAGE)).shape == (1, 10)


@pytest.mark.parametrize(
    "call, param",
    [
        (lambda: models.build("vgg", (3, 8, 8), 10), "model"),
        (lambda: models.build("small-cnn", (64,), 10), "input_shape"),
        (lambda: models.build("resnet18", (8, 8), 10), "input_shape"),
        (lambda: models.build("small-cnn", IMAGE, 10, norm="batch"), "norm"),
        (lambda: models.build("deep-linear", (5,), 1, hidden=3, depth=1), "depth"),
        (lambda: models.build("mlp", (5,), 2, depth=0), "depth"),
    ],
)
def test_bad_arguments_raise(call, param):
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        call()


def test_unknown_model_lists_the_names():
    with pytest.raises(ValueError) as err:
        models.build("vgg", (3, 8, 8), 10)
    assert all(repr(name) in str(err.value) for name in models.MODELS)


# --------------------------------------------------------------------------------------------
# augment.random_crop_flip
# --------------------------------------------------------------------------------------------


def _candidates(img: torch.Tensor, pad: int):
    """Every (row offset, column offset, flipped) crop of the zero-padded image, by slicing."""
    _, h, w = img.shape
    padded = F.pad(img, (pad, pad, pad, pad))
    for i, j, flip in itertools.product(range(2 * pad + 1), range(2 * pad + 1), (False, True)):
        crop = padded[:, i : i + h, j : j + w]
        yield (i, j, flip), (crop.flip(-1) if flip else crop)


def _recover(x: torch.Tensor, out: torch.Tensor, pad: int) -> list[tuple[int, int, bool]]:
    """For each image, the one crop/flip of the reference that it equals exactly."""
    found = []
    for img, o in zip(x, out):
        hits = [key for key, ref in _candidates(img, pad) if torch.equal(ref, o)]
        assert len(hits) == 1, hits
        found.append(hits[0])
    return found


def test_crop_flip_is_a_padded_crop_possibly_flipped_horizontally():
    # distinct positive values, a non-square image, three channels cropped alike
    n, c, h, w, pad = 200, 3, 5, 7, 2
    x = 1 + torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))
    out = augment.random_crop_flip(x, pad=pad, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    found = _recover(x, out, pad)
    # offsets cover 0..2*pad in both directions, and about half the images are flipped
    assert {i for i, _, _ in found} == set(range(2 * pad + 1))
    assert {j for _, j, _ in found} == set(range(2 * pad + 1))
    assert 70 <= sum(f for _, _, f in found) <= 130
    again = augment.random_crop_flip(x, pad=pad, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_crop_by_hand():
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
    seen = set()
    for seed in range(300):
        out = augment.random_crop_flip(x, pad=1, generator=torch.Generator().manual_seed(seed))[0, 0]
        seen.add(tuple(out.flatten().tolist()))
    by_hand = {
        (1, 2, 3, 4, 5, 6, 7, 8, 9),  # offset (1, 1): the image itself
        (3, 2, 1, 6, 5, 4, 9, 8, 7),  # ... mirrored left-right
        (0, 0, 0, 0, 1, 2, 0, 4, 5),  # offset (0, 0): zero row on top, zero column on the left
        (0, 0, 0, 2, 1, 0, 5, 4, 0),  # ... mirrored
        (5, 6, 0, 8, 9, 0, 0, 0, 0),  # offset (2, 2)
        (2, 3, 0, 5, 6, 0, 8, 9, 0),  # offset (1, 2)
    }
    every = {tuple(ref.flatten().tolist()) for _, ref in _candidates(x[0], 1)}
    assert len(every) == 18 and by_hand <= every
    assert seen == every  # all 9 offsets × 2 flips occur, and nothing else


def test_pad_zero_flips_horizontally_only():
    x = torch.rand(64, 2, 4, 6, generator=torch.Generator().manual_seed(2))
    out = augment.random_crop_flip(x, pad=0, generator=torch.Generator().manual_seed(3))
    same = [torch.equal(o, xi) for o, xi in zip(out, x)]
    mirrored = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]  # W is the last dimension
    assert all(s or m for s, m in zip(same, mirrored))
    assert 16 <= sum(mirrored) <= 48 and sum(same) >= 16
    assert not any(torch.equal(o, xi.flip(-2)) for o, xi in zip(out, x))  # never upside down


def test_crop_flip_rejects_non_batches():
    with pytest.raises(ValueError, match="N, C, H, W"):
        augment.random_crop_flip(torch.zeros(3, 8, 8))
    assert augment.random_crop_flip(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 8, 8)  # global generator

"""The exact per-example engine (samlab/methods/exact.py) against independent implementations.

References: a plain Python loop over examples (or chunks) written here — per-chunk
gradient by autograd, the perturbation applied to a deep copy of the model, the gradient
at w + ε_c — with BatchNorm's batch statistics held fixed by a copy of the model whose
running statistics are set to them (eval mode); and the vmap engine.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from samlab import methods
from samlab.losses import per_example_loss
from samlab.methods.exact import unsupported_layer
from samlab.methods.obf import ascent_logit_grad
from samlab.models import MLP, DeepLinear, ResNet18, SmallCNN

torch.set_num_threads(1)

RHO = 0.3


# ----------------------------------------------------------------------------- the reference loop


def _fixed_copy(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers normalise with the batch's statistics at w."""
    ref = copy.deepcopy(model)
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    bns = [m for m in ref.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]

    def hook(module: nn.Module, args: tuple) -> None:
        a = args[0].detach()
        dims = [0, *range(2, a.ndim)]
        stats[module] = (a.mean(dims), a.var(dims, unbiased=False))

    handles = [m.register_forward_pre_hook(hook) for m in bns]
    with torch.no_grad():
        ref(x)
    for h in handles:
        h.remove()
    for m in bns:
        m.running_mean.copy_(stats[m][0])
        m.running_var.copy_(stats[m][1])
        m.eval()
    return ref


def _grads(model: nn.Module, scalar: torch.Tensor) -> list[torch.Tensor]:
    """Gradient for every parameter, zero for frozen or unused ones."""
    params = list(model.parameters())
    live = [p for p in params if p.requires_grad]
    got = dict(zip(map(id, live), torch.autograd.grad(scalar, live, allow_unused=True)))
    return [torch.zeros_like(p) if got.get(id(p)) is None else got[id(p)] for p in params]


def _s(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, -1) - nn.functional.one_hot(y, logits.shape[-1]).to(logits.dtype)


def _reference(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str, m: int = 1, adaptive: bool = False, ascent=None
) -> list[torch.Tensor]:
    """Mean over chunks of the SAM-like gradient at w + ε_c ("sam", "jsam", "lsam"), by a loop."""
    ref = _fixed_copy(model, x)
    total = [torch.zeros_like(p) for p in ref.parameters()]
    for c in range(x.shape[0] // m):
        xc, yc = x[c * m : (c + 1) * m], y[c * m : (c + 1) * m]
        z = ref(xc)
        objective = per_example_loss(z, yc) if ascent is None else ascent(z, yc)
        g = _grads(ref, objective.mean())
        if adaptive:
            t = [p.detach().abs() + 0.01 for p in ref.parameters()]
            n = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
            eps = [RHO * ti * ti * gi / n for ti, gi in zip(t, g)]
        else:
            n = torch.sqrt(sum((gi**2).sum() for gi in g))
            eps = [RHO * gi / n for gi in g]
        at = copy.deepcopy(ref)
        with torch.no_grad():
            for p, e in zip(at.parameters(), eps):
                p.add_(e)
        if kind == "sam":
            gc = _grads(at, per_example_loss(at(xc), yc).sum())
        elif kind == "jsam":
            gc = _grads(at, (at(xc) * _s(z.detach(), yc)).sum())
        else:
            with torch.no_grad():
                s_at = _s(at(xc), yc)
            gc = _grads(ref, (ref(xc) * s_at).sum())
        total = [a + b for a, b in zip(total, gc)]
    return [t / x.shape[0] for t in total]


def _run(method: methods.Method, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    model = copy.deepcopy(model)
    info = method.gradient(model, x, y)
    return [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in model.parameters()], info, model


def _rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Largest relative difference over the parameters (max |a − b| / max |b|, per tensor)."""
    return max(float((u - v).abs().max() / v.abs().max().clamp_min(1e-300)) for u, v in zip(a, b))


# ----------------------------------------------------------------------------- models


class _NoBias(nn.Module):
    """Bias-free conv and linear layers, a bias-only conv, a BatchNorm without affine."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2, bias=False)
        self.bn = nn.BatchNorm2d(4, affine=False)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.conv2.weight.requires_grad_(False)  # only its bias trains
        self.head = nn.Linear(4, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(self.bn(self.conv(x))))
        return self.head(h.mean((2, 3)))


class _Tokens(nn.Module):
    """A Linear applied to a sequence (rows per example) and a norm on (B, C) (BatchNorm1d)."""

    def __init__(self, norm: type[nn.Module] = nn.BatchNorm1d) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.bn = norm(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.bn(self.fc(x.reshape(x.shape[0], -1, 6)).mean(1))))


def _make(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    if name == "mlp":
        return MLP(12, 5, hidden=10, depth=2), (12,)
    if name == "deep-linear":
        return DeepLinear(12, 6, num_classes=5, depth=3), (12,)
    if name in ("cnn-gn", "cnn-bn"):
        return SmallCNN(3, 5, widths=(4, 6, 8), norm=name[-2:]), (3, 8, 8)
    if name in ("resnet-gn", "resnet-bn"):
        return ResNet18(3, 5, norm=name[-2:], width=4), (3, 8, 8)
    if name == "no-bias":
        return _NoBias(), (3, 9, 9)
    return _Tokens(), (3, 12)


def _batch(shape: tuple[int, ...], n: int = 8, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, 5, (n,), generator=g)


MODELS = ["mlp", "deep-linear", "cnn-gn", "cnn-bn", "resnet-gn", "resnet-bn", "no-bias", "tokens"]
CASES = [
    ("sam", {"m": 1}, "sam", 1, False),
    ("sam", {"m": 4}, "sam", 4, False),
    ("sam", {"m": 2, "chunk_size": 3}, "sam", 2, False),
    ("sam", {"m": 1, "adaptive": True}, "sam", 1, True),
    ("sam", {"m": 2, "adaptive": True}, "sam", 2, True),
    ("jsam", {"per_example": True}, "jsam", 1, False),
    ("lsam", {"per_example": True, "chunk_size": 3}, "lsam", 1, False),
]


# ----------------------------------------------------------------------------- float64: exact == loop == vmap


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name, kwargs, kind, m, adaptive", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_exact_equals_loop_and_vmap(
    model_name: str, name: str, kwargs: dict, kind: str, m: int, adaptive: bool
) -> None:
    model, shape = _make(model_name)
    model = model.double()
    x, y = _batch(shape)
    assert unsupported_layer(model) is None
    expected = _reference(model, x, y, kind, m=m, adaptive=adaptive)
    exact, info, _ = _run(methods.get(name, rho=RHO, engine="exact", **kwargs), model, x, y)
    vmap, info_v, _ = _run(methods.get(name, rho=RHO, engine="vmap", **kwargs), model, x, y)
    assert _rel(exact, expected) <= 1e-10
    assert _rel(vmap, expected) <= 1e-10
    ref = _fixed_copy(model, x)
    with torch.no_grad():
        logits = ref(x)
    torch.testing.assert_close(info.logits, logits, atol=1e-12, rtol=0)
    torch.testing.assert_close(info.losses, per_example_loss(logits, y), atol=1e-12, rtol=0)
    batch_grad = _grads(ref, per_example_loss(ref(x), y).mean())
    norm = float(torch.sqrt(sum((g**2).sum() for g in batch_grad)))
    assert abs(info.grad_norm - norm) <= 1e-10 * norm
    assert abs(info_v.grad_norm - norm) <= 1e-10 * norm


@pytest.mark.parametrize("model_name", ["cnn-bn", "resnet-gn", "no-bias"])
@pytest.mark.parametrize(
    "name, kwargs, kind, m",
    [("sam", {"m": 1}, "sam", 1), ("sam", {"m": 4}, "sam", 4), ("lsam", {"per_example": True}, "lsam", 1)],
)
def test_conv_backends_agree(model_name: str, name: str, kwargs: dict, kind: str, m: int, monkeypatch) -> None:
    """Materialised Conv2d layers by unfold + batched matmul (the GPU default) as well as by
    grouped convolutions (the CPU default, covered above)."""
    from samlab.methods import exact

    monkeypatch.setattr(exact, "CONV_BACKEND", {})
    model, shape = _make(model_name)
    model = model.double()
    x, y = _batch(shape)
    got, _, _ = _run(methods.get(name, rho=RHO, engine="exact", **kwargs), model, x, y)
    assert _rel(got, _reference(model, x, y, kind, m=m)) <= 1e-10


def test_rho_zero_with_groupnorm_is_sgd() -> None:
    model, shape = _make("cnn-gn")
    model = model.double()
    x, y = _batch(shape)
    got, _, _ = _run(methods.get("sam", rho=0.0, m=1, engine="exact"), model, x, y)
    assert _rel(got, _grads(model, per_example_loss(model(x), y).mean())) <= 1e-12


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_batchnorm_running_statistics_updated_once(chunk_size: int | None) -> None:
    model, shape = _make("resnet-bn")
    model = model.double()
    x, y = _batch(shape)
    _, _, after = _run(methods.get("sam", rho=RHO, m=1, engine="exact", chunk_size=chunk_size), model, x, y)
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        fresh(x)
    for (n, a), (_, b) in zip(after.named_buffers(), fresh.named_buffers()):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=n)
    assert all(m.training for m in after.modules())


# ----------------------------------------------------------------------------- SANER, OBF


@pytest.mark.parametrize("model_name", ["cnn-bn", "cnn-gn"])
def test_saner_over_one_sam(model_name: str) -> None:
    """SANER's g is the train-mode batch gradient; with GroupNorm the exact engine hands it over
    from its first pass (no extra pass), with training BatchNorm (and with vmap) one extra pass."""
    model, shape = _make(model_name)
    model = model.double()
    x, y = _batch(shape)
    tilde = _reference(model, x, y, "sam")
    train_mode = copy.deepcopy(model)
    sgd = _grads(train_mode, per_example_loss(train_mode(x), y).mean())  # SANER's g: BatchNorm in train mode
    expected = []
    for t, g in zip(tilde, sgd):
        r = t / (g + 1e-8)
        expected.append(torch.where((r > 0) & (r < 1), 0.5 * t, t))
    for engine in ("exact", "vmap"):
        saner = methods.get("saner", inner={"method": "sam", "rho": RHO, "m": 1, "engine": engine}, alpha=0.5, k=0)
        got, info, _ = _run(saner, model, x, y)
        assert _rel(got, expected) <= 1e-10, engine
        assert 0 < info.extras["frac_shrunk"] < 1
        assert info.extras["extra_pass"] == (0.0 if engine == "exact" and model_name == "cnn-gn" else 1.0)


@pytest.mark.parametrize("model_name", ["mlp", "cnn-gn", "resnet-gn", "no-bias"])
@pytest.mark.parametrize("gamma", [1e-12, 0.7])
def test_obf_exact_equals_loop(model_name: str, gamma: float) -> None:
    model, shape = _make(model_name)
    model = model.double()
    if model_name == "no-bias":  # OBF's exact engine refuses training-mode BatchNorm
        model.bn.eval()
    x, y = _batch(shape)

    def ascent(z: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
        return (ascent_logit_grad(z, yc, gamma)[0] * z).sum(1)

    expected = _reference(model, x, y, "sam", m=2, ascent=ascent)
    exact, info, _ = _run(methods.get("obf", rho=RHO, gamma=gamma, m=2, engine="exact"), model, x, y)
    loop, info_l, _ = _run(methods.get("obf", rho=RHO, gamma=gamma, m=2, engine="loop"), model, x, y)
    assert _rel(exact, expected) <= 1e-10
    assert _rel(loop, expected) <= 1e-10
    for key in ("ascent_norm", "alpha_mean"):
        assert info.extras[key] == pytest.approx(info_l.extras[key], rel=1e-10, abs=1e-300)
    assert info.grad_norm == pytest.approx(info_l.grad_norm, rel=1e-10)


def test_obf_auto_keeps_the_loop_with_training_batchnorm() -> None:
    model, shape = _make("cnn-bn")
    x, y = _batch(shape, dtype=torch.float32)
    with pytest.warns(UserWarning, match=r"body\.1 \(BatchNorm2d\)"):
        methods.get("obf", m=1).gradient(copy.deepcopy(model), x, y)  # 8 chunks: auto tries the exact engine
    with pytest.raises(ValueError, match="engine='exact'"):
        methods.get("obf", m=2, engine="exact").gradient(copy.deepcopy(model), x, y)


def test_obf_auto_runs_few_chunks_in_the_loop(monkeypatch) -> None:
    """At most AUTO_LOOP_CHUNKS chunks per batch: the loop (cheaper there); more: the exact engine."""
    from samlab.methods import obf as obf_mod

    model, shape = _make("cnn-gn")
    x, y = _batch(shape)
    used = []
    monkeypatch.setattr(obf_mod.OBF, "_exact", lambda self, *a: used.append("exact") or pytest.skip("not needed"))
    monkeypatch.setattr(obf_mod.OBF, "_loop", lambda self, *a: used.append("loop"))
    methods.get("obf", m=8 // obf_mod.AUTO_LOOP_CHUNKS).gradient(model, x, y)
    assert used == ["loop"]
    used.clear()
    with pytest.raises(pytest.skip.Exception):
        methods.get("obf", m=1).gradient(model, x, y)
    assert used == ["exact"]


# dropout: tests/test_methods_perexample.py::test_dropout_each_example_keeps_the_whole_batch_mask
# runs both engines against a loop with the recorded whole-batch mask.


# ----------------------------------------------------------------------------- float32


@pytest.mark.parametrize("model_name", ["mlp", "cnn-gn", "resnet-bn"])
@pytest.mark.parametrize("name, kwargs, kind", [("sam", {"m": 1}, "sam"), ("lsam", {"per_example": True}, "lsam")])
def test_float32_agrees_with_float64_loop(model_name: str, name: str, kwargs: dict, kind: str) -> None:
    """float32 vs the float64 loop: both engines within fp32 rounding of a deep network.

    Measured (max over tensors of max|Δ|/max|g|): about 1e-6 on the MLP and CNN; on the
    reduced ResNet-18 with BatchNorm (1×1 maps, batch 8) 1e-5 (vmap) to 4e-5 (exact).
    """
    model, shape = _make(model_name)
    x, y = _batch(shape, dtype=torch.float32)
    expected = _reference(model.double(), x.double(), y, kind)
    model = model.float()
    for engine in ("exact", "vmap"):
        got, _, _ = _run(methods.get(name, rho=RHO, engine=engine, **kwargs), model, x, y)
        assert _rel([g.double() for g in got], expected) <= (1e-4 if model_name == "resnet-bn" else 1e-5), engine


# ----------------------------------------------------------------------------- engine selection


@pytest.mark.parametrize(
    "make, layer",
    [
        (lambda: _Tokens(nn.LayerNorm), r"bn \(LayerNorm\)"),
        (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 5)), r"0 \(Conv2d\)"),
    ],
)
def test_unsupported_layers_fall_back_with_a_note(make, layer: str) -> None:
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(6, 12, dtype=torch.float64) if isinstance(model, _Tokens) else torch.randn(6, 2, 3, 3).double()
    y = torch.randint(0, 5, (6,))
    assert unsupported_layer(model) is not None
    with pytest.warns(UserWarning, match=layer):
        auto, _, _ = _run(methods.get("sam", rho=RHO, m=1), model, x, y)
    assert _rel(auto, _reference(model, x, y, "sam")) <= 1e-10
    with pytest.raises(ValueError, match=layer):
        methods.get("jsam", rho=RHO, per_example=True, engine="exact").gradient(copy.deepcopy(model), x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        methods.get("sam", rho=RHO, m=1, engine="vmap").gradient(copy.deepcopy(model), x, y)


def test_a_layer_called_twice_is_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(5, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.tanh(self.fc(x)))

    x, y = torch.randn(4, 5), torch.randint(0, 5, (4,))
    model = Twice()
    with pytest.raises(RuntimeError, match="called once per forward.*engine='vmap'"):
        methods.get("sam", m=1, engine="exact").gradient(model, x, y)
    assert "forward" not in model.fc.__dict__  # the engine's forward is gone after the error too
    torch.testing.assert_close(model(x), model.fc(torch.tanh(model.fc(x))))


def test_the_modules_own_forwards_are_restored_after_a_step() -> None:
    """The engine replaces each supported module's forward for its passes only: afterwards
    the class's forward is back, and a forward a user had set on the instance is kept."""
    model, shape = _make("cnn-bn")
    model = model.double()
    x, y = _batch(shape)
    marker = []

    def own_forward(a: torch.Tensor) -> torch.Tensor:
        marker.append(1)
        return nn.Linear.forward(model.head, a)

    model.head.forward = own_forward
    methods.get("sam", rho=RHO, m=1, engine="exact").gradient(model, x, y)
    assert model.head.forward is own_forward
    assert all("forward" not in mod.__dict__ for mod in model.modules() if mod is not model.head)
    marker.clear()
    model.eval()(x)
    assert marker == [1]


@pytest.mark.parametrize("name, kwargs", [("sam", {"m": 1}), ("lsam", {}), ("jsam", {}), ("obf", {})])
def test_engine_field_checked_and_round_trips(name: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        methods.get(name, engine="fast", **kwargs)
    method = methods.get(name, **kwargs)
    assert method.config()["engine"] == "auto"
    other = "loop" if name == "obf" else "vmap"
    again = methods.get(methods.get(name, engine=other, **kwargs).config())
    assert again.config()["engine"] == other
    saner = methods.get("saner", inner=methods.get(name, engine="exact", **kwargs))
    assert methods.get(saner.config()).config() == saner.config()


# ----------------------------------------------------------------------------- base helpers (multi-tensor)


def test_grad_norm_keeps_float64_and_accumulates_low_precision_in_fp32() -> None:
    from samlab.methods.base import grad_norm

    third = torch.tensor([1.0 / 3.0], dtype=torch.float64)
    assert grad_norm([None, third]).dtype == torch.float64
    assert float(grad_norm([None, third])) == 1.0 / 3.0  # fp32 would give 0.3333333432674408
    half = [torch.full((300,), 1.0, dtype=torch.bfloat16), None, torch.ones(4)]
    assert grad_norm(half).dtype == torch.float32
    assert float(grad_norm(half)) == pytest.approx(304**0.5, rel=1e-7)
    two = [torch.ones(3, 4, dtype=torch.float64), None, torch.ones(3, 5, dtype=torch.float64)]
    batched = grad_norm(two, batched=True)
    torch.testing.assert_close(batched, torch.full((3,), 3.0, dtype=torch.float64), atol=0, rtol=0)


def test_fsam_ascent_norm_keeps_float64() -> None:
    model, shape = _make("mlp")
    model = model.double()
    x, y = _batch(shape)
    info = methods.get("fsam", rho=RHO).gradient(copy.deepcopy(model), x, y)
    g = _grads(model, per_example_loss(model(x), y).mean())
    assert info.extras["d_norm"] == pytest.approx(float(torch.sqrt(sum((t**2).sum() for t in g))), rel=1e-14)


def test_perturbed_restores_weights_and_buffers_exactly() -> None:
    from samlab.methods.base import perturbed

    model, shape = _make("cnn-bn")
    x, _ = _batch(shape, dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eps = [None if i % 3 == 0 else torch.full_like(p, 0.1) for i, p in enumerate(model.parameters())]
    with perturbed(model, eps):
        first = next(iter(model.parameters()))
        assert torch.equal(first, before["body.0.weight"])  # a None entry does not move
        moved = list(model.parameters())[1]
        torch.testing.assert_close(moved, before["body.1.weight"] + 0.1)
        model(x)  # updates the running statistics inside the block
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_model_compiled_in_place_runs_eagerly_inside_the_engine() -> None:
    """A compiled graph would not see the engine's hooks (it returned the unperturbed
    gradient); the engine runs such a model eagerly, and leaves it compiled."""
    model, shape = _make("cnn-gn")
    model = model.double()
    x, y = _batch(shape)
    expected = _reference(model, x, y, "sam")
    model.compile()
    impl = model._compiled_call_impl
    methods.get("sam", rho=RHO, m=1, engine="exact").gradient(model, x, y)  # not a copy: a copy is not compiled
    assert _rel([p.grad for p in model.parameters()], expected) <= 1e-10
    assert model._compiled_call_impl is impl

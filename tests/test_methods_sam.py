"""SAM, m-SAM and ASAM (samlab.methods.sam) against closed forms and hand-written references.

References are independent of the implementation: closed forms for the linear logistic
model, plain autograd on the mean loss, and Python loops over chunks.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from samlab import methods
from samlab.data import load
from samlab.losses import per_example_loss
from samlab.models import MLP, LinearModel, SmallCNN, build
from samlab.train import fit

torch.set_num_threads(2)


def _data(n: int, d: int, classes: int, seed: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, max(classes, 2), (n,), generator=g)
    return x, y


def _mlp(d: int = 6, classes: int = 3, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(d, classes, hidden=8, depth=2).double()


def _method_grads(method: methods.Method, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    method.gradient(model, x, y)
    return [p.grad.detach().clone() for p in model.parameters()]


def _loss_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Reference: plain autograd of the mean loss (the SGD gradient)."""
    return list(torch.autograd.grad(per_example_loss(model(x), y).mean(), list(model.parameters())))


def _norm(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t**2).sum() for t in ts))


def _assert_close(a: list[torch.Tensor], b: list[torch.Tensor], atol: float = 1e-12) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=atol, rtol=0)


class _Recorder:
    """Forward pre-hook recording the weights each forward pass sees."""

    def __init__(self, model: nn.Module):
        self.seen: list[list[torch.Tensor]] = []
        self.model = model
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module: nn.Module, args: tuple) -> None:
        self.seen.append([p.detach().clone() for p in self.model.parameters()])


# ----------------------------------------------------------------------------- closed forms


def test_sam_linear_logistic_closed_form() -> None:
    """Batch SAM on z = wᵀx: ε = ρ g/‖g‖, gradient = mean_i −ỹ_i σ(−ỹ_i x_iᵀ(w+ε)) x_i."""
    x, y = _data(16, 5, 2)
    torch.manual_seed(1)
    model = LinearModel(5).double()
    w = model.head.weight.detach().clone().reshape(-1)
    rho = 0.3
    ty = 2.0 * y.double() - 1
    g = (-(ty * torch.sigmoid(-ty * (x @ w)))[:, None] * x).mean(0)
    eps = rho * g / g.norm()
    expected = (-(ty * torch.sigmoid(-ty * (x @ (w + eps))))[:, None] * x).mean(0)

    rec = _Recorder(model)
    info = methods.get("sam", rho=rho).gradient(model, x, y)
    rec.handle.remove()
    torch.testing.assert_close(model.head.weight.grad.reshape(-1), expected, atol=1e-12, rtol=0)
    assert len(rec.seen) == 2
    # the perturbed point (to EPS in the norm)
    torch.testing.assert_close(rec.seen[1][0].reshape(-1), w + eps, atol=1e-10, rtol=0)
    assert torch.equal(model.head.weight.detach().reshape(-1), w)  # restored exactly
    # StepInfo: first-pass logits, losses and gradient norm
    torch.testing.assert_close(info.logits, x @ w, atol=1e-14, rtol=0)
    torch.testing.assert_close(info.losses, torch.nn.functional.softplus(-ty * (x @ w)), atol=1e-14, rtol=0)
    assert math.isclose(info.grad_norm, float(g.norm()), rel_tol=1e-12)


def test_asam_hand_computed_eps() -> None:
    """ASAM: ε = ρ T² g/‖T g‖, T = diag(|w| + η), on every parameter (weights and bias)."""
    x, y = _data(10, 4, 3, seed=2)
    torch.manual_seed(3)
    model = LinearModel(4, num_classes=3, bias=True).double()
    rho, eta = 0.5, 0.1
    w = [p.detach().clone() for p in model.parameters()]
    g = _loss_grads(model, x, y)
    t = [wi.abs() + eta for wi in w]
    tg_norm = _norm([ti * gi for ti, gi in zip(t, g)])
    eps = [rho * ti**2 * gi / tg_norm for ti, gi in zip(t, g)]
    at = copy.deepcopy(model)
    with torch.no_grad():
        for p, e in zip(at.parameters(), eps):
            p.add_(e)
    expected = _loss_grads(at, x, y)

    rec = _Recorder(model)
    got = _method_grads(methods.get("sam", rho=rho, adaptive=True, eta=eta), model, x, y)
    rec.handle.remove()
    _assert_close(rec.seen[1], [wi + e for wi, e in zip(w, eps)], atol=1e-10)
    _assert_close(got, expected)
    _assert_close([p.detach() for p in model.parameters()], w, atol=0)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("sam", {}),
        ("sam", {"m": 1}),
        ("sam", {"m": 2}),
        ("sam", {"adaptive": True}),
        ("sam", {"adaptive": True, "m": 1}),
        ("lsam", {}),
        ("lsam", {"per_example": True}),
        ("jsam", {}),
        ("jsam", {"per_example": True}),
    ],
)
def test_rho_zero_is_sgd(name: str, kwargs: dict) -> None:
    x, y = _data(8, 6, 3, seed=4)
    model = _mlp()
    expected = _loss_grads(model, x, y)
    _assert_close(_method_grads(methods.get(name, rho=0.0, **kwargs), model, x, y), expected)


def test_sgd_method_agrees_with_rho_zero_in_float32() -> None:
    """In float32 the whole-batch SAM pass at ρ = 0 reproduces samlab's SGD bit for bit."""
    x, y = _data(8, 6, 3, seed=5, dtype=torch.float32)
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=8)
    sgd = _method_grads(methods.get("sgd"), model, x, y)
    assert all(torch.equal(a, b) for a, b in zip(sgd, _method_grads(methods.get("sam", rho=0.0), model, x, y)))


# ----------------------------------------------------------------------------- m-SAM


def _loop_msam(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float, m: int) -> list[torch.Tensor]:
    """Reference m-SAM: a Python loop over chunks, each with its own ε_c."""
    total = None
    chunks = x.shape[0] // m
    for c in range(chunks):
        xc, yc = x[c * m : (c + 1) * m], y[c * m : (c + 1) * m]
        g = _loss_grads(model, xc, yc)
        n = _norm(g)
        at = copy.deepcopy(model)
        with torch.no_grad():
            for p, gi in zip(at.parameters(), g):
                p.add_(rho * gi / n)
        gc = _loss_grads(at, xc, yc)
        total = gc if total is None else [a + b for a, b in zip(total, gc)]
    return [t / chunks for t in total]


def test_msam_with_m_equal_to_batch_is_sam() -> None:
    x, y = _data(8, 6, 3, seed=6)
    model = _mlp()
    _assert_close(
        _method_grads(methods.get("sam", rho=0.2, m=8), model, x, y),
        _method_grads(methods.get("sam", rho=0.2), model, x, y),
    )


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_msam_m2_equals_loop_over_chunks(chunk_size: int | None) -> None:
    x, y = _data(8, 6, 3, seed=7)
    model = _mlp()
    got = _method_grads(methods.get("sam", rho=0.2, m=2, chunk_size=chunk_size), model, x, y)
    _assert_close(got, _loop_msam(model, x, y, 0.2, 2))


def test_msam_step_info_is_first_pass() -> None:
    x, y = _data(8, 6, 3, seed=8)
    model = _mlp()
    info = methods.get("sam", rho=0.2, m=2).gradient(model, x, y)
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(info.logits, logits, atol=1e-12, rtol=0)
    torch.testing.assert_close(info.losses, per_example_loss(logits, y), atol=1e-12, rtol=0)
    assert math.isclose(info.grad_norm, float(_norm(_loss_grads(model, x, y))), rel_tol=1e-10)


# ----------------------------------------------------------------------------- BatchNorm, dropout


ALL_FORMS = [
    ("sam", {}),
    ("sam", {"m": 1}),
    ("sam", {"m": 2}),
    ("sam", {"adaptive": True}),
    ("lsam", {}),
    ("lsam", {"per_example": True}),
    ("jsam", {}),
    ("jsam", {"per_example": True}),
]


@pytest.mark.parametrize("name, kwargs", ALL_FORMS)
def test_batchnorm_running_stats_are_those_of_the_first_pass(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = SmallCNN(3, 5, widths=(4, 8, 8), norm="bn")
    x = torch.randn(8, 3, 8, 8)
    y = torch.randint(0, 5, (8,))
    ref = copy.deepcopy(model)
    with torch.no_grad():
        ref(x)
    methods.get(name, rho=0.1, **kwargs).gradient(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    for (n, a), (_, b) in zip(model.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=n)
    assert int(model.body[1].num_batches_tracked) == 1


class _RecordingDropout(nn.Dropout):
    def __init__(self, p: float):
        super().__init__(p)
        self.masks: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        self.masks.append((out != 0).clone())
        return out


@pytest.mark.parametrize("name", ["sam", "lsam", "jsam"])
def test_dropout_same_mask_in_both_passes(name: str) -> None:
    torch.manual_seed(0)
    drop = _RecordingDropout(0.5)
    model = nn.Sequential(nn.Linear(5, 32), drop, nn.Linear(32, 3))
    x, y = _data(16, 5, 3, dtype=torch.float32)
    methods.get(name, rho=0.1).gradient(model, x, y)
    assert len(drop.masks) == 2
    assert torch.equal(drop.masks[0], drop.masks[1])
    assert 0 < drop.masks[0].float().mean() < 1  # dropout did drop something


@pytest.mark.parametrize("name, kwargs", ALL_FORMS)
def test_first_pass_is_sgd_flag(name: str, kwargs: dict) -> None:
    """Where ``first_pass_is_sgd`` is declared, the first gradient accumulated is ∇L_B(w)."""
    x, y = _data(8, 6, 3, seed=10)
    model = _mlp()
    method = methods.get(name, rho=0.1, **kwargs)
    assert method.first_pass_is_sgd == (kwargs.get("m") is None and not kwargs.get("per_example", False))
    if not method.first_pass_is_sgd:
        return
    expected = _loss_grads(model, x, y)
    params = list(model.parameters())
    first: dict[int, torch.Tensor] = {}

    def hook(i: int):
        def record(p: torch.Tensor) -> None:
            first.setdefault(i, p.grad.detach().clone())

        return record

    handles = [p.register_post_accumulate_grad_hook(hook(i)) for i, p in enumerate(params)]
    method.gradient(model, x, y)
    for h in handles:
        h.remove()
    _assert_close([first[i] for i in range(len(params))], expected)


# ----------------------------------------------------------------------------- state, errors


@pytest.mark.parametrize(
    "name, kwargs", [("sam", {}), ("sam", {"m": 1, "adaptive": True}), ("lsam", {"per_example": True}), ("jsam", {})]
)
def test_state_dict_round_trip_reproduces_next_step(name: str, kwargs: dict) -> None:
    x, y = _data(8, 6, 3, seed=9, dtype=torch.float32)
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    method = methods.get(name, rho=0.1, **kwargs)
    for _ in range(2):
        method.step(model, x, y, opt)
    saved = copy.deepcopy(
        {"model": model.state_dict(), "opt": opt.state_dict(), "method": method.state_dict(), "config": method.config()}
    )
    method.step(model, x, y, opt)
    after = [p.detach().clone() for p in model.parameters()]

    model2 = MLP(6, 3, hidden=8)
    model2.load_state_dict(saved["model"])
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt2.load_state_dict(saved["opt"])
    method2 = methods.get(saved["config"])
    method2.load_state_dict(saved["method"])
    assert method2 == method
    method2.step(model2, x, y, opt2)
    assert all(torch.equal(a, b.detach()) for a, b in zip(after, model2.parameters()))


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("sam", {"rho": -0.1}, "rho"),
        ("sam", {"rho": float("nan")}, "rho"),
        ("sam", {"m": 0}, "m must be"),
        ("sam", {"m": 1.5}, "m must be"),
        ("sam", {"m": True}, "m must be"),
        ("sam", {"eta": 0.0}, "eta"),
        ("sam", {"eta": -1.0}, "eta"),
        ("sam", {"chunk_size": 0}, "chunk_size"),
        ("lsam", {"rho": -1.0}, "rho"),
        ("jsam", {"rho": -1.0}, "rho"),
        ("jsam", {"per_example": "yes"}, "per_example"),
        ("lsam", {"chunk_size": -2}, "chunk_size"),
    ],
)
def test_bad_hyperparameters(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        methods.get(name, **kwargs)


def test_m_must_divide_batch_size_at_step_time() -> None:
    x, y = _data(8, 6, 3)
    model = _mlp()
    with pytest.raises(ValueError, match=r"m=3 must divide the batch size.*8"):
        methods.get("sam", m=3).gradient(model, x, y)
    assert all(p.grad is None for p in model.parameters())  # refused before any pass


# ----------------------------------------------------------------------------- training loop


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("sam", {}),
        ("sam", {"m": 1}),
        ("sam", {"adaptive": True, "rho": 0.5}),
        ("lsam", {}),
        ("lsam", {"per_example": True}),
        ("jsam", {}),
        ("jsam", {"per_example": True}),
    ],
)
def test_fit_trains_on_noisy_digits(name: str, kwargs: dict) -> None:
    data = load("digits", noise="symmetric-flip", rate=0.3)
    model = build("mlp", data.input_shape, data.num_classes, hidden=32)
    history = fit(model, methods.get(name, **kwargs), data, epochs=2, batch_size=128, lr=0.05, progress=False)
    assert len(history) == 3
    losses = history.column("train_loss")[1:]
    assert all(math.isfinite(v) for v in losses)
    assert all(math.isfinite(v) for v in history.column("test_acc"))

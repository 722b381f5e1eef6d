"""F-SAM, OBF, SANER and regularised SGD against independent references, plus the benchmark script.

References: SAM itself (F-SAM with σ = 0), closed-form gradients of a linear softmax model
(F-SAM's EMA by hand), autograd of objectives written out here (OBF, regularised SGD),
plain-autograd re-implementations of each rule, and the exact two-layer J-SAM identity.
"""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from samlab import methods, train
from samlab.data import load
from samlab.losses import per_example_loss
from samlab.methods.obf import ascent_logit_grad
from samlab.models import MLP, DeepLinear, LinearModel, SmallCNN, build

torch.set_num_threads(2)


def _data(n: int, d: int, classes: int, seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def _mlp(d: int = 6, classes: int = 3, seed: int = 0, dtype=torch.float32) -> MLP:
    torch.manual_seed(seed)
    return MLP(d, classes, hidden=8, depth=2).to(dtype)


def _cnn(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(3, 5, widths=(4, 8), norm="bn")


def _images(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def _loss_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: dict | None = None) -> list[torch.Tensor]:
    """Plain autograd of the mean cross-entropy, at ``params`` (default: the model's weights)."""
    names = [n for n, _ in model.named_parameters()]
    p = {n: t.detach().clone().requires_grad_(True) for n, t in (params or dict(model.named_parameters())).items()}
    loss = per_example_loss(functional_call(model, p, (x,)), y).mean()
    return list(torch.autograd.grad(loss, [p[n] for n in names]))


def _norm(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t.double() ** 2).sum() for t in ts))


def _close(a: list[torch.Tensor], b: list[torch.Tensor], atol: float, rtol: float = 0.0) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v.to(u.dtype), atol=atol, rtol=rtol)


def _train_steps(method: methods.Method, model: nn.Module, batches, lr: float = 0.1) -> list[list[torch.Tensor]]:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    out = []
    for x, y in batches:
        method.step(model, x, y, opt)
        out.append([p.detach().clone() for p in model.parameters()])
    return out


def _batches(k: int, n: int = 8, d: int = 6, classes: int = 3):
    return [_data(n, d, classes, seed=s) for s in range(k)]


# ----------------------------------------------------------------------------- F-SAM


def test_fsam_with_sigma_zero_is_sam_over_several_steps():
    batches = _batches(4)
    ref = _train_steps(methods.get("sam", rho=0.1), _mlp(), batches)
    got = _train_steps(methods.get("fsam", rho=0.1, sigma=0.0, lam=0.9), _mlp(), batches)
    for a, b in zip(got, ref):
        _close(a, b, atol=1e-6, rtol=1e-5)


def _softmax_linear_grad(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """Closed form: for z = W x + b and mean CE, ∇W = Sᵀ X / n, ∇b = mean S, S = softmax(z) − onehot."""
    s = torch.softmax(x @ w.T + b, dim=1) - F.one_hot(y, w.shape[0]).to(x.dtype)
    return [s.T @ x / len(y), s.mean(0)]


def test_fsam_ema_recursion_matches_two_steps_by_hand():
    rho, sigma, lam, lr = 0.2, 0.7, 0.8, 0.5
    (x1, y1), (x2, y2) = _data(6, 4, 3, seed=1), _data(6, 4, 3, seed=2)
    torch.manual_seed(0)
    model = LinearModel(4, 3, bias=True)
    w0, b0 = model.head.weight.detach().clone(), model.head.bias.detach().clone()
    method = methods.get("fsam", rho=rho, sigma=sigma, lam=lam)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    # step 1: m_1 = g_1, d_1 = g_1 (a SAM step)
    g1 = _softmax_linear_grad(w0, b0, x1, y1)
    e1 = [rho * t / _norm(g1).float() for t in g1]
    step1 = _softmax_linear_grad(w0 + e1[0], b0 + e1[1], x1, y1)
    info1 = method.step(model, x1, y1, opt)
    assert math.isnan(info1.extras["cos_g_ema"])
    w1, b1 = w0 - lr * step1[0], b0 - lr * step1[1]
    _close([model.head.weight, model.head.bias], [w1, b1], atol=1e-6)

    # step 2: d_2 = g_2 − σ m_1, m_2 = λ m_1 + (1 − λ) g_2
    g2 = _softmax_linear_grad(w1, b1, x2, y2)
    d2 = [g - sigma * m for g, m in zip(g2, g1)]
    m2 = [lam * m + (1 - lam) * g for m, g in zip(g1, g2)]
    e2 = [rho * t / _norm(d2).float() for t in d2]
    step2 = _softmax_linear_grad(w1 + e2[0], b1 + e2[1], x2, y2)
    info2 = method.gradient(model, x2, y2)
    _close(_grads(model), step2, atol=1e-6)
    _close(method.state_dict()["ema"], m2, atol=1e-6)
    cos = float(sum((g * m).sum() for g, m in zip(g2, g1)) / (_norm(g2) * _norm(g1)))
    assert info2.extras["cos_g_ema"] == pytest.approx(cos, abs=1e-6)


def test_fsam_start_of_a_fresh_run_clears_the_ema():
    method = methods.get("fsam")
    x, y = _data(8, 6, 3)
    method.gradient(_mlp(), x, y)
    assert method.state_dict()["ema"] is not None
    method.start_epoch(3, 10)
    assert method.state_dict()["ema"] is not None
    method.start_epoch(0, 10)
    assert method.state_dict() == {"ema": None, "steps": 0}


# ----------------------------------------------------------------------------- state round trips


def _round_trip_next_step(make_method, model_fn, batches) -> None:
    """Train, checkpoint (through torch.save), restore into fresh objects: the next step is identical."""
    model, method = model_fn(), make_method()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method.start_epoch(0, 5)
    for x, y in batches[:-1]:
        method.step(model, x, y, opt)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "method": method.state_dict()}, buf)
    x, y = batches[-1]
    method.step(model, x, y, opt)
    expected = [p.detach().clone() for p in model.parameters()]

    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    model2, method2 = model_fn(seed=99), make_method()
    model2.load_state_dict(state["model"])
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(state["opt"])
    method2.load_state_dict(state["method"])
    method2.step(model2, x, y, opt2)
    for a, b in zip(model2.parameters(), expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: methods.get("fsam", lam=0.5),
        lambda: methods.get("saner", inner=methods.get("fsam", lam=0.5), alpha=0.5, k=0),
        lambda: methods.get("obf", m=4),
        lambda: methods.get("regsgd", weighted=True, gamma_w=0.5, gamma_a=0.5),
    ],
    ids=["fsam", "saner(fsam)", "obf", "regsgd"],
)
def test_state_dict_round_trip_reproduces_the_next_step(make):
    _round_trip_next_step(make, _mlp, _batches(4))


def test_saner_state_dict_holds_the_schedule_and_the_inner_state():
    s = methods.get("saner", inner="fsam", alpha=0.5, k=4)
    s.start_epoch(2, 10)
    x, y = _data(8, 6, 3)
    s.gradient(_mlp(), x, y)
    state = s.state_dict()
    assert state["alpha_t"] == pytest.approx(0.75) and state["epoch"] == 2
    assert state["inner"]["ema"] is not None
    fresh = methods.get("saner", inner="fsam", alpha=0.5, k=4)
    fresh.load_state_dict(state)
    assert fresh.alpha_t == pytest.approx(0.75)
    with pytest.raises(ValueError, match="keys"):
        fresh.load_state_dict({"alpha": 1})


# ----------------------------------------------------------------------------- SANER


@pytest.mark.parametrize("inner", ["sam", "fsam"])
@pytest.mark.parametrize(
    "model_fn,data_fn", [(_mlp, lambda s: _data(8, 6, 3, seed=s)), (_cnn, lambda s: _images(seed=s))], ids=["mlp", "cnn-bn"]
)
def test_saner_with_alpha_one_is_its_inner_method_exactly(inner, model_fn, data_fn):
    batches = [data_fn(s) for s in range(3)]
    ref_model, got_model = model_fn(), model_fn()
    ref = _train_steps(methods.get(inner, rho=0.1), ref_model, batches)
    got = _train_steps(methods.get("saner", inner=methods.get(inner, rho=0.1), alpha=1.0, k=0), got_model, batches)
    for a, b in zip(got, ref):
        for u, v in zip(a, b):
            assert torch.equal(u, v)
    for a, b in zip(got_model.buffers(), ref_model.buffers()):  # BatchNorm statistics too
        assert torch.equal(a, b)


def _saner_reference(g: list[torch.Tensor], tilde: list[torch.Tensor], alpha: float):
    out, counts = [], torch.zeros(3)
    for a, b in zip(g, tilde):
        r = b / (a + 1e-8)
        shrunk = (r > 0) & (r < 1)
        out.append(torch.where(shrunk, alpha * b, b))
        counts += torch.tensor([float((r >= 1).sum()), float(shrunk.sum()), float((r <= 0).sum())])
    return out, counts / counts.sum()


@pytest.mark.parametrize("inner", ["sam", "fsam"])
def test_saner_rule_matches_an_independent_reference(inner):
    x, y = _data(16, 6, 3)
    model = _mlp()
    g = _loss_grads(model, x, y)
    ref_model = copy.deepcopy(model)
    methods.get(inner, rho=0.1).gradient(ref_model, x, y)
    expected, fractions = _saner_reference(g, _grads(ref_model), 0.3)

    saner = methods.get("saner", inner=methods.get(inner, rho=0.1), alpha=0.3, k=0)
    info = saner.gradient(model, x, y)
    _close(_grads(model), expected, atol=1e-7)
    assert info.extras["extra_pass"] == 0.0  # g was read from the inner method's own first pass
    got = [info.extras[k] for k in ("frac_amplified", "frac_shrunk", "frac_flipped")]
    assert got == pytest.approx(fractions.tolist(), abs=1e-6)
    assert 0 < info.extras["frac_shrunk"] < 1


class _DropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_saner_over_a_method_without_an_sgd_first_pass_takes_one_extra_pass_with_the_same_dropout_mask():
    """Inner OBF (its first pass is the ascent, not ∇L): g comes from an extra pass that replays
    the RNG state, so it sees OBF's first-pass dropout mask; the RNG stream after the step is
    the one the inner method alone leaves."""
    x, y = _data(8, 6, 3)
    model = _DropoutNet()
    ref_model = copy.deepcopy(model)
    torch.manual_seed(5)
    g = _loss_grads(ref_model, x, y)  # first forward after the seed: OBF's first-pass mask
    torch.manual_seed(5)
    methods.get("obf", rho=0.1, m=None).gradient(ref_model, x, y)
    after_inner = torch.rand(3)
    expected, _ = _saner_reference(g, _grads(ref_model), 0.4)

    torch.manual_seed(5)
    info = methods.get("saner", inner=methods.get("obf", rho=0.1, m=None), alpha=0.4, k=0).gradient(model, x, y)
    assert info.extras["extra_pass"] == 1.0
    _close(_grads(model), expected, atol=1e-7)
    assert torch.equal(torch.rand(3), after_inner)


def test_saner_alpha_schedule_and_start_epoch_forwarding():
    s = methods.get("saner", alpha=0.5, k=4)
    assert [s.alpha_at(e) for e in (0, 1, 2, 3, 4, 10)] == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5, 0.5])
    assert s.alpha_t == 1.0  # before any epoch: the schedule's start
    assert methods.get("saner", alpha=0.2, k=0).alpha_t == pytest.approx(0.2)

    calls = []

    class Spy(methods.get("sgd").__class__):
        def start_epoch(self, epoch: int, num_epochs: int) -> None:
            calls.append((epoch, num_epochs))

    s = methods.get("saner", inner=Spy(), alpha=0.5, k=4)
    s.start_epoch(3, 7)
    assert s.alpha_t == pytest.approx(0.625) and calls == [(3, 7)]


@pytest.mark.parametrize("inner", ["sam", "fsam", "sgd"])
def test_saner_group_fractions_sum_to_one(inner):
    x, y = _images(8)
    info = methods.get("saner", inner=inner, alpha=0.5, k=0).gradient(_cnn(), x, y)
    fr = [info.extras[k] for k in ("frac_amplified", "frac_shrunk", "frac_flipped")]
    assert all(0 <= f <= 1 for f in fr)
    assert sum(fr) == pytest.approx(1.0, abs=1e-9)


def test_saner_config_nests_the_inner_config_and_rebuilds():
    s = methods.get("saner", inner=methods.get("fsam", rho=0.2), alpha=0.25, k=3)
    cfg = s.config()
    assert cfg["inner"] == {"method": "fsam", "rho": 0.2, "sigma": 1.0, "lam": 0.95}
    again = methods.get(cfg)
    assert again.config() == cfg
    assert methods.get("saner").inner.config()["method"] == "sam"
    assert methods.get("saner").inner.rho == 0.1


# ----------------------------------------------------------------------------- OBF


def _bce_sum(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(z, target, reduction="none").sum(-1)


def test_obf_logit_vector_is_the_gradient_of_the_bce_objective():
    """v = u − αp − (1 − α)e_ỹ is exactly ∂/∂z of (1 − α) BCE(z, e_ỹ) − BCE(z, u), α held fixed."""
    g = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(7, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, 4, (7,), generator=g)
    gamma = 0.7
    v, alpha = ascent_logit_grad(z, y, gamma)

    c = 4.0  # the official code's form: C = 1/λ, α = γ (C − 1/max(p_ỹ, 1/C)) / (C − 1)
    p_y = torch.sigmoid(z.detach())[torch.arange(7), y]
    ref_alpha = gamma * (c - 1 / p_y.clamp(min=1 / c)) / (c - 1)
    torch.testing.assert_close(alpha.squeeze(1), ref_alpha, atol=1e-14, rtol=0)
    assert (alpha > 0).any() and (alpha == 0).any()  # both branches of the max are exercised

    a = ref_alpha
    onehot, uniform = F.one_hot(y, 4).double(), torch.full((7, 4), 0.25, dtype=torch.float64)
    objective = (1 - a) * _bce_sum(z, onehot) - _bce_sum(z, uniform)
    (grad,) = torch.autograd.grad(objective.sum(), z)
    torch.testing.assert_close(v, grad, atol=1e-12, rtol=0)


def test_obf_with_tiny_gamma_ascends_mean_logit_minus_label_logit():
    g = torch.Generator().manual_seed(1)
    z = (5 * torch.randn(6, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, 5, (6,), generator=g)
    v, _ = ascent_logit_grad(z, y, 1e-12)
    (grad,) = torch.autograd.grad((z.mean(1) - z[torch.arange(6), y]).sum(), z)
    torch.testing.assert_close(v, grad, atol=1e-11, rtol=0)


@pytest.mark.parametrize("m,gamma", [(4, 1e-12), (8, 0.5), (2, 1.0)])
def test_obf_gradient_matches_a_chunked_reference(m, gamma):
    x, y = _data(8, 6, 3, seed=3)
    model = _mlp()
    rho = 0.3
    params = dict(model.named_parameters())
    expected = [torch.zeros_like(p) for p in params.values()]
    for c in range(8 // m):
        xc, yc = x[c * m : (c + 1) * m], y[c * m : (c + 1) * m]
        w = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
        z = functional_call(model, w, (xc,))
        k = z.shape[1]
        p = torch.sigmoid(z.detach())
        a = gamma * torch.clamp((1 - (1 / k) / p[torch.arange(m), yc]) / (1 - 1 / k), min=0)
        obj = ((1 - a) * _bce_sum(z, F.one_hot(yc, k).float()) - _bce_sum(z, torch.full_like(z, 1 / k))).mean()
        asc = torch.autograd.grad(obj, list(w.values()))
        scale = rho / _norm(list(asc)).float()
        at = {n: t.detach() + scale * d for (n, t), d in zip(w.items(), asc)}
        for e, gc in zip(expected, _loss_grads(model, xc, yc, at)):
            e += gc / (8 // m)
    info = methods.get("obf", rho=rho, gamma=gamma, m=m).gradient(model, x, y)
    _close(_grads(model), expected, atol=2e-6)
    assert info.losses.shape == (8,) and info.logits.shape == (8, 3)
    torch.testing.assert_close(info.losses, per_example_loss(model(x), y).detach(), atol=1e-6, rtol=0)


def test_obf_rejects_batches_m_does_not_divide_and_single_logit_models():
    x, y = _data(8, 6, 2)
    with pytest.raises(ValueError, match=r"m=3 must divide the batch size"):
        methods.get("obf", m=3).gradient(_mlp(classes=2), x, y)
    with pytest.raises(ValueError, match=r"K >= 2"):
        methods.get("obf", m=4).gradient(LinearModel(6, 1), x, y)


# ----------------------------------------------------------------------------- regularised SGD


@pytest.mark.parametrize("model_fn,data_fn", [(_mlp, lambda: _data(8, 6, 3)), (_cnn, lambda: _images())], ids=["mlp", "cnn-bn"])
def test_regsgd_without_penalty_is_sgd_exactly(model_fn, data_fn):
    x, y = data_fn()
    ref, got = model_fn(), model_fn()
    i_ref = methods.get("sgd").gradient(ref, x, y)
    i_got = methods.get("regsgd", gamma_w=0.0, gamma_a=0.0).gradient(got, x, y)
    for a, b in zip(_grads(got), _grads(ref)):
        assert torch.equal(a, b)
    assert torch.equal(i_got.losses, i_ref.losses) and i_got.grad_norm == i_ref.grad_norm
    for a, b in zip(got.buffers(), ref.buffers()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("classes", [3, 1])
def test_regsgd_gradient_is_autograd_of_the_explicit_objective(weighted, classes):
    x, y = _data(10, 6, max(classes, 2), dtype=torch.float64)
    model = _mlp(classes=classes, dtype=torch.float64)
    gw, ga, rho = 0.3, 0.05, 0.7
    ref = copy.deepcopy(model)
    phi = ref.body(x)  # the penultimate features, written out
    z = ref.head(phi).squeeze(-1) if classes == 1 else ref.head(phi)
    ce = per_example_loss(z, y)
    w2, f2 = (ref.head.weight**2).sum(), (phi**2).sum(1)
    if weighted:
        with torch.no_grad():
            if classes == 1:
                s_norm = torch.sigmoid(-(2.0 * y - 1) * z)
            else:
                s_norm = (torch.softmax(z, 1) - F.one_hot(y, classes)).norm(dim=1)
            lam = rho * s_norm / torch.sqrt(f2 + w2)
        objective = (ce + lam * (gw * w2 + ga * f2)).mean()
    else:
        objective = ce.mean() + gw * w2 + ga * f2.mean()
    expected = torch.autograd.grad(objective, list(ref.parameters()))

    methods.get("regsgd", gamma_w=gw, gamma_a=ga, weighted=weighted, rho=rho).gradient(model, x, y)
    _close(_grads(model), list(expected), atol=1e-12)


def test_weighted_regsgd_is_exact_one_sam_jsam_for_a_two_layer_linear_net_with_unit_inputs():
    """Ours: for f = vᵀWx with ‖x_i‖ = 1, weighted regsgd with γ_w = γ_a = ½ is per-example
    (1-SAM ε_i) J-SAM exactly — the two-layer identity of notebook 02."""
    x, y = _data(6, 5, 2, seed=4, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    torch.manual_seed(0)
    model = DeepLinear(5, 4, num_classes=1, depth=2).double()
    rho = 0.4
    names = [n for n, _ in model.named_parameters()]
    w = {n: t.detach() for n, t in model.named_parameters()}
    expected = [torch.zeros_like(t) for t in w.values()]
    for i in range(len(y)):
        xi, yi = x[i : i + 1], y[i : i + 1]

        def f(p, xi=xi):
            return functional_call(model, p, (xi,))

        wi = {n: t.clone().requires_grad_(True) for n, t in w.items()}
        zi = f(wi)
        s = torch.autograd.grad(per_example_loss(zi, yi).sum(), zi, retain_graph=True)[0].detach()
        gi = torch.autograd.grad((s * zi).sum(), list(wi.values()))
        eps = [rho * t / _norm(list(gi)) for t in gi]
        at = {n: (w[n] + e).requires_grad_(True) for n, e in zip(names, eps)}
        jsam = torch.autograd.grad((s * f(at)).sum(), list(at.values()))  # J(w + ε_i)ᵀ s(w)
        for e, t in zip(expected, jsam):
            e += t / len(y)
    methods.get("regsgd", gamma_w=0.5, gamma_a=0.5, weighted=True, rho=rho).gradient(model, x, y)
    _close(_grads(model), expected, atol=1e-12)


def test_regsgd_needs_features_and_head():
    x, y = _data(4, 6, 3)
    with pytest.raises(ValueError, match="features"):
        methods.get("regsgd").gradient(_DropoutNet(), x, y)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "name,kwargs,param",
    [
        ("fsam", {"rho": -0.1}, "rho"),
        ("fsam", {"sigma": 1.5}, "sigma"),
        ("fsam", {"sigma": -0.1}, "sigma"),
        ("fsam", {"lam": 1.0}, "lam"),
        ("obf", {"rho": -1.0}, "rho"),
        ("obf", {"gamma": 2.0}, "gamma"),
        ("obf", {"m": 0}, "m"),
        ("obf", {"m": 2.5}, "m"),
        ("saner", {"alpha": 0.0}, "alpha"),
        ("saner", {"alpha": 1.5}, "alpha"),
        ("saner", {"k": -1}, "k"),
        ("saner", {"k": 2.5}, "k"),
        ("saner", {"inner": 3}, "inner"),
        ("regsgd", {"gamma_w": -1.0}, "gamma_w"),
        ("regsgd", {"gamma_a": -1.0}, "gamma_a"),
        ("regsgd", {"rho": -1.0}, "rho"),
        ("regsgd", {"weighted": "yes"}, "weighted"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(name, kwargs, param):
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        methods.get(name, **kwargs)


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def digits():
    return load("digits", noise="symmetric-flip", rate=0.3)


@pytest.mark.parametrize(
    "config",
    [
        {"method": "fsam"},
        {"method": "obf"},
        {"method": "saner", "inner": {"method": "sam", "rho": 0.1}, "k": 1},
        {"method": "saner", "inner": {"method": "fsam"}, "k": 1},
        {"method": "regsgd"},
        {"method": "regsgd", "weighted": True, "gamma_w": 0.5, "gamma_a": 0.5},
    ],
    ids=["fsam", "obf", "saner(sam)", "saner(fsam)", "regsgd", "regsgd-weighted"],
)
def test_each_method_trains_two_epochs_on_noisy_digits(digits, config):
    model = build("mlp", digits.input_shape, digits.num_classes, hidden=32, depth=1)
    history = train.fit(model, methods.get(config), digits, epochs=2, batch_size=128, progress=False)
    assert len(history) == 3
    assert all(math.isfinite(r["train_loss"]) for r in history.records[1:])
    assert all(math.isfinite(r["test_loss"]) for r in history.records)
    assert history.records[-1]["train_eval_loss"] < history.records[0]["train_eval_loss"]


def test_interrupted_saner_fsam_run_resumes_to_the_same_weights(digits, tmp_path, monkeypatch):
    def make():
        return methods.get("saner", inner=methods.get("fsam", lam=0.6), alpha=0.5, k=2)

    def model(seed=0):
        return build("mlp", digits.input_shape, digits.num_classes, seed=seed, hidden=16, depth=1)

    ref_model = model()
    ref = train.fit(ref_model, make(), digits, epochs=3, progress=False)
    real = train.evaluate
    calls = {"n": 0}

    def dying(*args, **kwargs):  # dies while evaluating epoch 2, after epoch 1's checkpoint
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    ckpt = tmp_path / "run.ckpt"
    monkeypatch.setattr(train, "evaluate", dying)
    with pytest.raises(KeyboardInterrupt):
        train.fit(model(), make(), digits, epochs=3, checkpoint=str(ckpt), progress=False)
    monkeypatch.setattr(train, "evaluate", real)
    fresh = model(seed=7)
    resumed = train.fit(fresh, make(), digits, epochs=3, checkpoint=str(ckpt), progress=False)
    assert resumed.column("train_loss")[1:] == ref.column("train_loss")[1:]
    for a, b in zip(fresh.parameters(), ref_model.parameters()):
        assert torch.equal(a, b)

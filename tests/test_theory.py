"""samlab.theory: closed forms against autograd, finite differences and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from samlab import data, methods, models, train
from samlab.losses import per_example_loss
from samlab.methods.jacobian_penalty import JacobianPenaltySGD
from samlab.probes import decay_step, early_window, linear_ratio_probe, probe_series, run_linear_grid, scheduled
from samlab.theory import (
    clean_noisy_ratio,
    example_grad_norms,
    first_order_errors,
    first_order_jsam_gradient,
    jsam_equivalence_errors,
    flat_grad,
    linear_example_grads,
    linear_grad_norms,
    linear_identities,
    linear_sam_gradient,
    loglog_slope,
    margins,
    method_gradient,
    sam_example_grads,
    sklearn_logistic_weights,
    two_layer_grad_norm_sq,
    two_layer_jsam_weights,
    two_layer_parts,
    two_layer_penalty_gradient,
    upweight,
)

F64 = torch.float64


def _problem(n=7, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, n, dtype=F64).unsqueeze(1)
    y = torch.randint(0, 2, (n,), generator=g)
    y[0], y[1] = 0, 1
    w = torch.randn(d, generator=g, dtype=F64)
    return w, x, y


def _linear_model(w):
    m = models.LinearModel(w.numel(), 1).double()
    with torch.no_grad():
        m.head.weight.copy_(w.reshape(1, -1))
    return m


# --------------------------------------------------------------------------- r(m)


def test_upweight_limits_and_hand_values():
    c = 1.7
    assert upweight(-60.0, c) == pytest.approx(1.0, rel=1e-12)  # m -> -inf
    assert upweight(60.0, c) == pytest.approx(math.exp(c), rel=1e-12)  # m -> +inf
    assert upweight(0.0, c) == pytest.approx(2.0 / (1.0 + math.exp(-c)), rel=1e-12)  # σ(c)/σ(0)
    assert upweight(3.0, 0.0) == pytest.approx(1.0)
    # far beyond float range of the naive formula: still finite
    assert upweight(800.0, 2.0) == pytest.approx(math.exp(2.0), rel=1e-9)
    m = np.linspace(-5, 5, 11)
    r = upweight(m, c)
    assert isinstance(r, np.ndarray) and r.shape == (11,)
    assert np.all(np.diff(r) > 0), "r(m) increases with the margin"
    t = upweight(torch.tensor([0.5, 1.0]), torch.tensor(2.0))
    assert isinstance(t, torch.Tensor) and t.shape == (2,)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert float(t[1]) == pytest.approx(sig(-1.0 + 2.0) / sig(-1.0), rel=1e-6)


# --------------------------------------------------------------------------- linear closed forms vs autograd


def _autograd_example_grad(w, xi, yi, rho):
    """1-SAM's gradient for one example, by autograd: ε from ∇ℓ_i, then ∇ℓ_i at w + ε."""
    wv = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(per_example_loss((xi @ wv).reshape(1), yi.reshape(1)).sum(), wv)
    eps = rho * g / g.norm() if rho > 0 else torch.zeros_like(g)
    wp = (w + eps).requires_grad_(True)
    (ge,) = torch.autograd.grad(per_example_loss((xi @ wp).reshape(1), yi.reshape(1)).sum(), wp)
    return ge


@pytest.mark.parametrize("rho", [0.0, 0.05, 0.8, 3.0])
def test_linear_example_grads_match_autograd(rho):
    w, x, y = _problem()
    want = torch.stack([_autograd_example_grad(w, x[i], y[i], rho) for i in range(len(y))])
    got = linear_example_grads(w, x, y, rho)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    norms = linear_grad_norms(w, x, y, rho)
    torch.testing.assert_close(norms, want.norm(dim=1), rtol=1e-12, atol=1e-14)


def test_sam_example_grads_matches_loop():
    w, x, y = _problem()
    want = torch.stack([_autograd_example_grad(w, x[i], y[i], 0.8) for i in range(len(y))])
    torch.testing.assert_close(sam_example_grads(_linear_model(w), x, y, 0.8), want, rtol=1e-12, atol=1e-14)


def test_linear_identities_all_hold_in_float64():
    w, x, y = _problem(n=9, d=4, seed=2)
    report = linear_identities(_linear_model(3 * w), x, y, 0.7)
    assert len(report) == 9
    assert max(report.values()) < 1e-9, report
    with pytest.raises(ValueError, match="LinearModel"):
        linear_identities(models.DeepLinear(4, hidden=2, num_classes=1), x, y, 0.7)


def test_margins_hand_case():
    w = torch.tensor([1.0, -2.0], dtype=F64)
    x = torch.tensor([[1.0, 1.0], [3.0, 0.5]], dtype=F64)
    y = torch.tensor([0, 1])
    torch.testing.assert_close(margins(w, x, y), torch.tensor([1.0, 2.0], dtype=F64))


def test_linear_grad_norms_match_torch_func():
    w, x, y = _problem()
    torch.testing.assert_close(linear_grad_norms(w, x, y), example_grad_norms(_linear_model(w), x, y), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rho", [0.1, 1.0])
def test_linear_sam_gradient_matches_samlab_methods(rho):
    w, x, y = _problem()
    one = method_gradient(_linear_model(w), methods.get("sam", rho=rho, m=1), x, y)
    # samlab normalises ε with ‖g‖ + 1e-12 (samlab.methods.base.EPS): agreement to ~1e-11, not 1e-16
    torch.testing.assert_close(linear_sam_gradient(w, x, y, rho, per_example=True), one, rtol=1e-9, atol=1e-12)
    batch = method_gradient(_linear_model(w), methods.get("sam", rho=rho), x, y)
    torch.testing.assert_close(linear_sam_gradient(w, x, y, rho, per_example=False), batch, rtol=1e-10, atol=1e-12)
    # batch SAM by hand: one shared ε from the mean gradient
    wv = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(per_example_loss(x @ wv, y).mean(), wv)
    wp = (w + rho * g / g.norm()).requires_grad_(True)
    (ge,) = torch.autograd.grad(per_example_loss(x @ wp, y).mean(), wp)
    torch.testing.assert_close(batch, ge, rtol=1e-10, atol=1e-12)
    # and the batch-SAM per-example norms at the shared ε
    x_rows = [torch.autograd.grad(per_example_loss((x[i] @ wp).reshape(1), y[i : i + 1]).sum(), wp)[0].norm() for i in range(len(y))]
    torch.testing.assert_close(linear_grad_norms(w, x, y, rho, per_example=False), torch.stack(x_rows), rtol=1e-10, atol=1e-12)


def test_lsam_is_sam_and_jsam_is_sgd_for_linear_models():
    w, x, y = _problem()
    for per_example, sam in ((True, {"m": 1}), (False, {})):
        g_l = method_gradient(_linear_model(w), methods.get("lsam", rho=0.5, per_example=per_example), x, y)
        g_s = method_gradient(_linear_model(w), methods.get("sam", rho=0.5, **sam), x, y)
        torch.testing.assert_close(g_l, g_s, rtol=1e-12, atol=1e-14)
        g_j = method_gradient(_linear_model(w), methods.get("jsam", rho=0.5, per_example=per_example), x, y)
        g_0 = method_gradient(_linear_model(w), methods.get("sgd"), x, y)
        torch.testing.assert_close(g_j, g_0, rtol=1e-12, atol=1e-14)


def test_clean_noisy_ratio_hand_case_and_errors():
    norms = torch.tensor([1.0, 3.0, 2.0, 6.0])
    noisy = torch.tensor([False, False, True, True])
    assert clean_noisy_ratio(norms, noisy) == pytest.approx(2.0 / 4.0)
    with pytest.raises(ValueError, match="both"):
        clean_noisy_ratio(norms, torch.zeros(4, dtype=torch.bool))


# --------------------------------------------------------------------------- probes over training (samlab.probes)


def _small_ds():
    return data.load("gaussian", n=60, d=8, separation=2.0, n_test=50, noise="symmetric-flip", rate=0.3, noise_seed=1)


def test_scheduled_probe_joins_the_history_without_changing_training():
    ds = _small_ds()
    kw = dict(epochs=7, lr=0.3, batch_size=None, momentum=0.0, weight_decay=0.0, progress=False)
    torch.manual_seed(0)
    a = models.LinearModel(8, 1)
    b = models.LinearModel(8, 1)
    b.load_state_dict(a.state_dict())
    h_plain = train.fit(a, methods.get("sam", rho=0.2, m=1), ds, **kw)
    h = train.fit(b, methods.get("sam", rho=0.2, m=1), ds, on_epoch=scheduled(linear_ratio_probe(ds, 0.2), every=3, last=7), **kw)
    assert torch.equal(a.head.weight, b.head.weight)
    assert h.column("test_acc") == h_plain.column("test_acc")
    epochs, values = probe_series(h, "grad_ratio")
    assert epochs == [0, 3, 6, 7] and all(v > 0 for v in values)
    # the probe at the end is the closed-form ratio for the final weights
    w = b.head.weight.detach().reshape(-1)
    assert values[-1] == pytest.approx(clean_noisy_ratio(linear_grad_norms(w, ds.x_train, ds.y_train, 0.2), ds.is_noisy))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_scheduled_names_the_parameter(bad):
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        scheduled(lambda m: {}, every=bad)


def test_decay_step_early_window_probe_series():
    recs = [{"epoch": e, "test_acc": a} for e, a in enumerate([0.5, 0.8, 0.9, 0.895, 0.7, 0.6])]
    for r, v in zip(recs[::2], [1.0, 0.8, 0.6]):
        r["grad_ratio"] = v
    h = train.History(records=recs)
    assert probe_series(h, "grad_ratio") == ([0, 2, 4], [1.0, 0.8, 0.6])
    assert decay_step(h, threshold=0.75) == 4
    assert decay_step(h, threshold=0.1) == math.inf
    assert early_window(h, within=0.01) == 2
    with pytest.raises(KeyError):
        probe_series(h, "nothing")


def test_run_linear_grid_labels_and_same_start():
    ds = _small_ds()
    runs = run_linear_grid(ds, [0.1, 1.0], epochs=3, lr=0.3, every=1)
    assert list(runs) == ["GD", "1-SAM ρ=0.1", "1-SAM ρ=1", "SAM ρ=0.1 (batch)", "SAM ρ=1 (batch)"]
    starts = {h.records[0]["head_norm"] for h in runs.values()}
    assert len(starts) == 1, "every run starts from the same weights"
    assert all(len(h) == 4 and "grad_ratio" in h.records[-1] for h in runs.values())


def test_sklearn_matches_regularised_gd():
    ds = data.load("gaussian", n=80, d=6, separation=2.0, n_test=10, noise="symmetric-flip", rate=0.2, noise_seed=0)
    lam = 0.1
    w_sk = sklearn_logistic_weights(ds.x_train, ds.y_train, lam)
    # optimality of scikit-learn's answer for mean ℓ + (λ/2)‖w‖²
    grad = linear_example_grads(w_sk, ds.x_train.double(), ds.y_train).mean(0) + lam * w_sk
    assert float(grad.norm()) < 1e-6
    model = models.build("linear", ds.input_shape, 1, seed=0)
    train.fit(model, methods.get("sgd"), ds, epochs=300, lr=1.0, batch_size=None, momentum=0.0, weight_decay=lam, progress=False)
    w_gd = model.head.weight.detach().reshape(-1).double()
    assert float((w_gd - w_sk).norm() / w_sk.norm()) < 1e-4


# --------------------------------------------------------------------------- two-layer linear network


def _deep(depth, d=5, h=4, seed=0):
    torch.manual_seed(seed)
    m = models.DeepLinear(d, hidden=h, num_classes=1, depth=depth).double()
    with torch.no_grad():  # move away from the default init so that every term matters
        for p in m.parameters():
            p.mul_(2.0)
    return m


def _exact_jsam(model, x, y, rho):
    """Per-example J-SAM by autograd, example by example: s_i(w) ∇f_i(w + ε_i), ε_i = ρ∇ℓ_i/‖∇ℓ_i‖."""
    params = list(model.parameters())
    base = [p.detach().clone() for p in params]
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(y)):
        z = model(x[i : i + 1])
        loss = per_example_loss(z, y[i : i + 1]).sum()
        g = torch.autograd.grad(loss, params)
        gn = torch.sqrt(sum((t**2).sum() for t in g))
        ty = 2.0 * float(y[i]) - 1.0
        s = -ty * torch.sigmoid(-ty * z.detach()).reshape(())
        with torch.no_grad():
            for p, b, t in zip(params, base, g):
                p.copy_(b + rho * t / gn)
        gf = torch.autograd.grad(model(x[i : i + 1]).sum(), params)
        with torch.no_grad():
            for p, b in zip(params, base):
                p.copy_(b)
        for acc, t in zip(total, gf):
            acc += s * t / len(y)
    return torch.cat([t.reshape(-1) for t in total])


def test_two_layer_grad_norm_sq_matches_autograd():
    model = _deep(2)
    _, x, _ = _problem(n=6, d=5, seed=3)
    W, v = two_layer_parts(model)
    want = torch.stack([torch.cat([t.reshape(-1) for t in torch.autograd.grad(model(x[i : i + 1]).sum(), list(model.parameters()))]).square().sum() for i in range(6)])
    torch.testing.assert_close(two_layer_grad_norm_sq(W, v, x), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rho", [1e-3, 0.1, 1.0, 5.0])
def test_two_layer_penalty_gradient_is_exact_jsam(rho):
    model = _deep(2)
    _, x, y = _problem(n=6, d=5, seed=4)
    W, v = two_layer_parts(model)
    gW, gv = two_layer_penalty_gradient(W, v, x, y, rho)
    closed = torch.cat([gW.reshape(-1), gv.reshape(-1)])  # DeepLinear's parameter order: body, then head
    exact = _exact_jsam(model, x, y, rho)
    torch.testing.assert_close(closed, exact, rtol=1e-11, atol=1e-13)
    # the same through samlab's J-SAM, the regulariser-as-a-method and the generic first-order form
    torch.testing.assert_close(method_gradient(model, methods.get("jsam", rho=rho, per_example=True), x, y), exact, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(method_gradient(model, JacobianPenaltySGD(rho=rho), x, y), exact, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(first_order_jsam_gradient(model, x, y, rho), exact, rtol=1e-11, atol=1e-13)


def test_jsam_weights_hand_case():
    W = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    v = torch.tensor([1.0, -1.0], dtype=F64)
    x = torch.tensor([[1.0, 1.0]], dtype=F64)
    y = torch.tensor([1])
    # f = vᵀWx = 1 - 2 = -1; ỹ = +1; N² = ‖Wx‖² + ‖v‖²‖x‖² = 5 + 2·2 = 9
    want = 0.5 / (1 + math.exp(-1.0)) / 3.0
    assert float(two_layer_jsam_weights(W, v, x, y, 0.5)) == pytest.approx(want, rel=1e-12)


def test_three_layer_first_order_error_is_second_order():
    model = _deep(3, h=3)
    _, x, y = _problem(n=5, d=5, seed=5)
    rhos = [1e-3, 2e-3, 4e-3, 8e-3]
    err = [float((_exact_jsam(model, x, y, r) - first_order_jsam_gradient(model, x, y, r)).norm()) for r in rhos]
    assert all(e > 1e-12 for e in err), "three layers: the first-order form is not exact"
    assert 1.8 < loglog_slope(rhos, err) < 2.2
    sgd = method_gradient(model, methods.get("sgd"), x, y)
    assert float((first_order_jsam_gradient(model, x, y, 0.0) - sgd).norm()) < 1e-13


def test_equivalence_and_first_order_error_helpers():
    _, x, y = _problem(n=6, d=5, seed=6)
    two = _deep(2)
    errs = jsam_equivalence_errors(two, x, y, [0.01, 1.0, 10.0])
    assert set(errs) == {"closed form", "penalty by autograd"}
    assert all(len(v) == 3 and max(v) < 1e-10 for v in errs.values()), errs
    assert max(first_order_errors(two, x, y, [0.01, 1.0])) < 1e-10
    three = _deep(3, h=3)
    e3 = first_order_errors(three, x, y, [0.01, 0.02])
    assert e3[1] / e3[0] == pytest.approx(4.0, rel=0.05)


def test_two_layer_parts_refuses_other_models():
    with pytest.raises(ValueError, match="depth=2"):
        two_layer_parts(models.DeepLinear(4, hidden=3, num_classes=1, depth=3))
    with pytest.raises(ValueError, match="depth=2"):
        two_layer_parts(models.LinearModel(4, 1))


def test_jacobian_penalty_sgd_trains_through_fit():
    ds = _small_ds()
    model = models.build("deep-linear", ds.input_shape, 1, seed=0, hidden=4, depth=2)
    h = train.fit(model, JacobianPenaltySGD(rho=0.05), ds, epochs=3, lr=0.1, batch_size=None, momentum=0.0, weight_decay=0.0, progress=False)
    assert len(h) == 4 and math.isfinite(h.records[-1]["head_norm"])
    with pytest.raises(ValueError, match="rho"):
        JacobianPenaltySGD(rho=-1.0)


def test_loglog_slope():
    x = [0.1, 0.2, 0.4, 0.8]
    assert loglog_slope(x, [3 * t**2 for t in x]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        loglog_slope([1.0], [1.0])


def test_flat_grad_fills_missing():
    m = models.LinearModel(3, 1)
    assert torch.equal(flat_grad(m), torch.zeros(3))

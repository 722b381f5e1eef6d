"""samlab.analysis: SANER's ratio groups by hand, without side effects, and against SANER itself."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from samlab import analysis, data, methods, models, train
from samlab.methods.base import first_pass


def _setup(seed: int = 0, **options):
    ds = data.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=1)
    model = models.build("mlp", ds.input_shape, ds.num_classes, seed=seed, **({"hidden": 16, "depth": 1} | options))
    return ds, model


def test_ratio_groups_by_hand():
    g = torch.tensor([1.0, 2.0, -1.0, 0.5])
    t = torch.tensor([2.0, 1.0, 1.0, 0.25])
    # r = [2, 0.5, -1, 0.5]: one amplified, two shrunk, one flipped
    assert analysis.ratio_groups(g, t) == {"amplified": 0.25, "shrunk": 0.5, "flipped": 0.25}
    # lists of tensors: fractions over all entries; None pairs skipped; r = 1 exactly is amplified, r = 0 flipped
    out = analysis.ratio_groups([g, torch.tensor([[3.0, 4.0]]), None], [t, torch.tensor([[3.0, 0.0]]), torch.ones(2)])
    assert out["amplified"] == pytest.approx(2 / 6) and out["shrunk"] == pytest.approx(2 / 6)
    assert out["flipped"] == pytest.approx(2 / 6)
    assert all(math.isnan(v) for v in analysis.ratio_groups([None], [None]).values())


def test_ratio_groups_uses_saners_epsilon():
    # g = 0 and g̃ = 1e-9: r = 1e-9 / 1e-8 = 0.1, shrunk (a plain division would give inf, amplified)
    assert analysis.ratio_groups(torch.zeros(1), torch.full((1,), 1e-9, dtype=torch.float64))["shrunk"] == 1.0


def test_ratio_groups_refuses_mismatches():
    with pytest.raises(ValueError, match="as many"):
        analysis.ratio_groups([torch.ones(2)], [torch.ones(2), torch.ones(2)])
    with pytest.raises(ValueError, match="shapes"):
        analysis.ratio_groups(torch.ones(2), torch.ones(3))


class _WithBN(nn.Module):
    """A tiny network with BatchNorm and dropout (state a probe could disturb)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3))
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        return self.out(self.body(x))


@pytest.mark.parametrize("probe", [{"method": "sam", "rho": 0.05}, {"method": "fsam", "rho": 0.05, "sigma": 1.0}])
def test_gradient_groups_leave_model_and_method_untouched(probe):
    ds, _ = _setup()
    model = _WithBN()
    x, y = ds.x_train[:32], ds.y_train[:32]
    method = methods.get(probe)
    if probe["method"] == "fsam":  # give F-SAM an EMA to protect
        method.gradient(model, x, y)
    model.eval()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: (v if not isinstance(v, list) else [t.clone() for t in v]) for k, v in method.state_dict().items()}
    rng = torch.get_rng_state()
    out = analysis.gradient_groups(model, method, x, y)
    assert sum(out.values()) == pytest.approx(1.0) and all(0 <= v <= 1 for v in out.values())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm buffers
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng)
    new_state = method.state_dict()
    if probe["method"] == "fsam":
        assert new_state["steps"] == state["steps"]
        assert all(torch.equal(a, b) for a, b in zip(new_state["ema"], state["ema"]))


@pytest.mark.parametrize("inner", [{"method": "sam", "rho": 0.05}, {"method": "fsam", "rho": 0.05}])
def test_gradient_groups_agree_with_saners_extras(inner):
    ds, model = _setup()
    x, y = ds.x_train[:128], ds.y_train[:128]
    ours = analysis.gradient_groups(model, methods.get(inner), x, y)
    info = methods.get("saner", inner=inner, alpha=0.5, k=0).gradient(model, x, y)
    for g in analysis.GROUPS:
        assert ours[g] == pytest.approx(info.extras[f"frac_{g}"], abs=1e-12)


def test_sgd_against_itself_splits_by_sign():
    # g̃ = g: r = g/(g + 1e-8) is 1 only up to the epsilon — just below 1 where g > 0 (shrunk),
    # above 1 where g < −1e-8 (amplified), 0 where g = 0 (flipped). The epsilon is part of the rule.
    ds, model = _setup()
    x, y = ds.x_train[:64], ds.y_train[:64]
    out = analysis.gradient_groups(model, methods.get("sgd"), x, y)
    first_pass(model, x, y)
    g = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert not bool(((g > -1e-8) & (g < 0)).any())  # the hand count below assumes no tiny negatives
    assert out["shrunk"] == pytest.approx(float((g > 0).double().mean()))
    assert out["amplified"] == pytest.approx(float((g < 0).double().mean()))
    assert out["flipped"] == pytest.approx(float((g == 0).double().mean()))


def test_clean_noisy_groups_draw_from_each_group():
    ds, model = _setup()
    sam = methods.get("sam", rho=0.05)
    seen = []
    real = analysis.gradient_groups

    def spy(m, method, x, y):
        seen.append((x, y))
        return real(m, method, x, y)

    analysis_gradient_groups = analysis.gradient_groups
    try:
        analysis.gradient_groups = spy
        out = analysis.clean_noisy_groups(model, sam, ds, batch_size=50, seed=3)
    finally:
        analysis.gradient_groups = analysis_gradient_groups
    assert set(out) == {"clean", "noisy"}
    for name, (x, y) in zip(("clean", "noisy"), seen):
        assert len(y) == 50
        rows = (ds.x_train.unsqueeze(0) == x.unsqueeze(1)).all(-1)  # which training rows were drawn
        idx = rows.float().argmax(1)
        assert bool(ds.is_noisy[idx].all()) == (name == "noisy") and bool((~ds.is_noisy[idx]).all()) == (name == "clean")
        assert sum(out[name].values()) == pytest.approx(1.0)
    assert analysis.clean_noisy_groups(model, sam, ds, batch_size=50, seed=3) == out  # same seed, same batches
    clean_only = data.load("digits", noise="symmetric-flip", rate=0.0)
    with pytest.raises(ValueError, match="no noisy"):
        analysis.clean_noisy_groups(model, sam, clean_only)


def test_groups_during_training_probes_without_changing_training():
    ds, model = _setup()
    cfg = train.FitConfig(epochs=3, batch_size=256, lr=0.1, progress=False)
    trace = analysis.groups_during_training(
        model, methods.get("sgd"), methods.get("sam", rho=0.05), ds, cfg, at_epochs=[0, 2, 3], batch_size=64
    )
    assert trace.epochs == [0, 2, 3]
    for part in (trace.clean, trace.noisy):
        assert all(len(part[g]) == 3 for g in analysis.GROUPS)
        for i in range(3):
            assert sum(part[g][i] for g in analysis.GROUPS) == pytest.approx(1.0)
    assert set(trace.at(2)) == {"clean", "noisy"}
    _, fresh = _setup()
    plain = train.fit(fresh, methods.get("sgd"), ds, cfg)
    assert plain.column("test_acc") == trace.history.column("test_acc")
    with pytest.raises(ValueError, match="at_epochs"):
        analysis.groups_during_training(model, methods.get("sgd"), methods.get("sam"), ds, cfg, at_epochs=[4])
    sam = methods.get("sam")
    with pytest.raises(ValueError, match="separate instance"):
        analysis.groups_during_training(model, sam, sam, ds, cfg, at_epochs=[0])

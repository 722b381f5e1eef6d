"""The training loop: bookkeeping against hand computation, determinism, checkpoint/resume."""

from __future__ import annotations

import math

import pytest
import torch

from samlab import data, methods, models, train


def _setup(seed: int = 0):
    ds = data.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=1)
    model = models.build("mlp", ds.input_shape, ds.num_classes, seed=seed, hidden=32, depth=1)
    return ds, model


def _strip_time(h: train.History) -> list[dict]:
    """Records without wall time, NaN replaced by a marker so that equal runs compare equal."""
    return [
        {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items() if k not in ("seconds", "images_per_second")}
        for r in h.records
    ]


def test_evaluate_matches_hand_computation():
    ds, model = _setup()
    ev = train.evaluate(model, ds)
    with torch.no_grad():
        pred = model(ds.x_train).argmax(1)
        feats = model.features(ds.x_train)
    clean = ~ds.is_noisy
    assert ev["clean_fit"] == pytest.approx(float((pred[clean] == ds.y_train[clean]).float().mean()))
    assert ev["noisy_fit"] == pytest.approx(float((pred[ds.is_noisy] == ds.y_train[ds.is_noisy]).float().mean()))
    assert ev["noisy_true"] == pytest.approx(
        float((pred[ds.is_noisy] == ds.y_train_clean[ds.is_noisy]).float().mean())
    )
    assert ev["feature_norm"] == pytest.approx(float(feats.norm(dim=1).mean()), rel=1e-5)
    assert ev["head_norm"] == pytest.approx(float(model.head.weight.detach().norm()), rel=1e-6)
    # symmetric noise takes labels from every class: the source-class accuracy is the test accuracy
    assert ev["test_source_acc"] == pytest.approx(ev["test_acc"])


def test_source_class_accuracy_counts_only_the_classes_that_lose_labels():
    import dataclasses

    noisy = data.load("digits", noise="asymmetric", rate=0.4, noise_seed=1)
    # keep the noise of classes 0-4 only: classes 5-9 lose no label
    keep = noisy.y_train_clean < 5
    y = torch.where(keep, noisy.y_train, noisy.y_train_clean)
    ds = dataclasses.replace(noisy, y_train=y, is_noisy=y != noisy.y_train_clean)
    model = models.build("mlp", ds.input_shape, ds.num_classes, seed=0, hidden=32, depth=1)
    ev = train.evaluate(model, ds)
    sources = sorted({int(c) for c, o in zip(ds.y_train_clean, ds.y_train) if c != o})
    assert sources == [0, 1, 2, 3, 4]
    with torch.no_grad():
        pred = model(ds.x_test).argmax(1)
    mask = torch.tensor([int(c) in sources for c in ds.y_test])
    assert ev["test_source_acc"] == pytest.approx(float((pred[mask] == ds.y_test[mask]).float().mean()))
    clean = data.load("digits")
    assert math.isnan(train.evaluate(model, clean)["test_source_acc"])  # no noise: no class loses labels


def test_fit_records_every_epoch_and_is_deterministic():
    ds, m1 = _setup()
    h1 = train.fit(m1, methods.get("sgd"), ds, epochs=3, progress=False)
    _, m2 = _setup()
    h2 = train.fit(m2, methods.get("sgd"), ds, epochs=3, progress=False)
    assert [r["epoch"] for r in h1.records] == [0, 1, 2, 3]
    assert _strip_time(h1) == _strip_time(h2)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert h1.oracle_test_acc == max(r["test_acc"] for r in h1.records)
    assert h1.final_test_acc == h1.records[-1]["test_acc"]


def test_full_batch_gd_equals_hand_written_gd():
    """batch_size=None, momentum 0, no weight decay: the loop is plain gradient descent."""
    ds = data.load("gaussian", n=64, d=5, n_test=16, seed=3)
    model = models.build("linear", ds.input_shape, 1, seed=0)
    w = model.head.weight.detach().clone().requires_grad_(True)
    train.fit(model, methods.get("sgd"), ds, epochs=4, batch_size=None, lr=0.5, momentum=0.0, weight_decay=0.0, progress=False)
    ys = 2.0 * ds.y_train.float() - 1
    for _ in range(4):
        loss = torch.log1p(torch.exp(-ys * (ds.x_train @ w.T).squeeze(1))).mean()
        (g,) = torch.autograd.grad(loss, w)
        w = (w - 0.5 * g).detach().requires_grad_(True)
    torch.testing.assert_close(model.head.weight, w.detach(), rtol=1e-5, atol=1e-6)


def test_schedules():
    cfg = train.FitConfig(epochs=8, schedule="step")
    assert [cfg.lr_factor(e) for e in (0, 3, 4, 5, 6, 7)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cfg = train.FitConfig(epochs=4, schedule="cosine")
    assert cfg.lr_factor(0) == 1 and cfg.lr_factor(2) == pytest.approx(0.5) and cfg.lr_factor(4) == pytest.approx(0)


@pytest.mark.parametrize("method", ["sgd", "sam"])
def test_interrupted_run_resumes_to_the_same_history(tmp_path, monkeypatch, method):
    ds, ref_model = _setup()
    ref = train.fit(ref_model, methods.get(method), ds, epochs=4, schedule="cosine", progress=False)

    ckpt = tmp_path / "run.ckpt"
    _, model = _setup()
    real_evaluate = train.evaluate
    calls = {"n": 0}

    def dying_evaluate(*args, **kwargs):  # the process "dies" while evaluating epoch 3
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train.fit(model, methods.get(method), ds, epochs=4, schedule="cosine", checkpoint=str(ckpt), progress=False)
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2

    _, fresh = _setup(seed=123)  # a new process: different initial weights, all restored from the checkpoint
    resumed = train.fit(fresh, methods.get(method), ds, epochs=4, schedule="cosine", checkpoint=str(ckpt), progress=False)
    assert _strip_time(resumed) == _strip_time(ref)
    for a, b in zip(fresh.parameters(), ref_model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_from_another_configuration_is_refused(tmp_path):
    ds, model = _setup()
    ckpt = tmp_path / "run.ckpt"
    train.fit(model, methods.get("sgd"), ds, epochs=1, checkpoint=str(ckpt), progress=False)
    _, model = _setup()
    with pytest.raises(ValueError, match="different configuration.*config"):
        train.fit(model, methods.get("sgd"), ds, epochs=1, lr=0.01, checkpoint=str(ckpt), progress=False)
    with pytest.raises(ValueError, match="method"):
        train.fit(model, methods.get("sam"), ds, epochs=1, checkpoint=str(ckpt), progress=False)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"schedule": "linear"}, "schedule"),
    ],
)
def test_bad_config_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        train.FitConfig(**kwargs)


def test_bad_method_and_device_mismatch():
    ds, model = _setup()
    with pytest.raises(TypeError, match="method"):
        train.fit(model, "sgd", ds, epochs=1, progress=False)
    with pytest.raises(ValueError, match="method must be one of"):
        methods.get("adam")
    with pytest.raises(ValueError, match="augment"):
        train.fit(model, methods.get("sgd"), ds, epochs=1, augment=True, progress=False)


def test_sgd_memorises_noisy_digits():
    """The phenomenon of notebook 00 on real data: clean fit first, noisy fit later."""
    ds, model = _setup()
    h = train.fit(model, methods.get("sgd"), ds, epochs=60, batch_size=64, lr=0.1, weight_decay=0.0, progress=False)
    early = h.records[5]
    assert early["clean_fit"] > 0.8 and early["noisy_fit"] < 0.2
    assert h.records[-1]["noisy_fit"] > early["noisy_fit"] + 0.15
    assert h.oracle_test_acc > h.final_test_acc
    assert all(math.isfinite(r["train_loss"]) for r in h.records[1:])

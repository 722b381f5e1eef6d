"""train.fit: per-epoch means of the methods' step extras, and the on_epoch probe."""

from __future__ import annotations

import math

import pytest
import torch

from samlab import data, methods, models, train
from samlab.methods.base import Method, StepInfo, first_pass


class _Counting(Method):
    """SGD that reports hand-chosen extras: the global step index, and NaN at every even step."""

    name = "counting"

    def __init__(self) -> None:
        self.step_index = 0

    def gradient(self, model, x, y) -> StepInfo:
        logits, losses = first_pass(model, x, y)
        i = self.step_index
        self.step_index += 1
        extras = {"index": float(i), "odd_only": float(i) if i % 2 else float("nan"), "always_nan": float("nan")}
        return StepInfo(logits=logits, losses=losses, grad_norm=0.0, extras=extras)

    def config(self):
        return {"method": self.name}


def _setup():
    ds = data.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=1)
    model = models.build("mlp", ds.input_shape, ds.num_classes, seed=0, hidden=16, depth=1)
    return ds, model


def test_step_extras_are_nan_means_over_the_epoch():
    ds, model = _setup()
    batch = 256
    steps = len(ds.y_train) // batch
    h = train.fit(model, _Counting(), ds, epochs=2, batch_size=batch, progress=False)
    assert not any(k.startswith("step_") for k in h.records[0])  # epoch 0: no steps, no extras
    for epoch in (1, 2):
        idx = list(range((epoch - 1) * steps, epoch * steps))  # the global step indices of this epoch
        rec = h.records[epoch]
        assert rec["step_index"] == pytest.approx(sum(idx) / len(idx))
        odd = [i for i in idx if i % 2]
        assert rec["step_odd_only"] == pytest.approx(sum(odd) / len(odd))  # NaN steps left out
        assert math.isnan(rec["step_always_nan"])


def test_methods_without_extras_record_the_same_keys():
    ds, model = _setup()
    h = train.fit(model, methods.get("sgd"), ds, epochs=1, batch_size=256, progress=False)
    expected = {"epoch", "lr", "train_loss", "seconds", "images_per_second", *train.evaluate(model, ds)}
    assert set(h.records[0]) == set(h.records[1]) == expected


def test_saner_and_fsam_extras_are_recorded():
    ds, model = _setup()
    saner = methods.get("saner", inner={"method": "fsam", "rho": 0.05}, alpha=0.5, k=2)
    h = train.fit(model, saner, ds, epochs=2, batch_size=256, progress=False)
    for rec in h.records[1:]:
        fr = rec["step_frac_amplified"] + rec["step_frac_shrunk"] + rec["step_frac_flipped"]
        assert fr == pytest.approx(1.0)
        assert -1 <= rec["step_cos_g_ema"] <= 1  # NaN at the very first step, left out of the mean
    assert h.records[1]["step_alpha_t"] == 1.0 and h.records[2]["step_alpha_t"] == 0.75


def test_on_epoch_is_called_after_every_epoch_and_does_not_change_training():
    ds, model = _setup()
    seen: list[tuple[int, float]] = []

    def probe(epoch, m):
        seen.append((epoch, float(m.head.weight.detach().norm())))
        m(ds.x_train[:8]).sum().backward()  # a probe may use autograd; fit zeroes grads each step
        for p in m.parameters():
            p.grad = None

    h = train.fit(model, methods.get("sgd"), ds, epochs=2, batch_size=256, progress=False, on_epoch=probe)
    assert [e for e, _ in seen] == [0, 1, 2]
    assert [n for _, n in seen] == pytest.approx(h.column("head_norm"), rel=1e-6)
    _, fresh = _setup()
    h2 = train.fit(fresh, methods.get("sgd"), ds, epochs=2, batch_size=256, progress=False)
    assert h2.column("test_acc") == h.column("test_acc")
    assert torch.equal(fresh.head.weight, model.head.weight)


def test_on_epoch_skips_restored_epochs(tmp_path):
    ds, model = _setup()
    ckpt = tmp_path / "run.ckpt"
    # a 3-epoch run interrupted (by its probe) after epoch 1, then resumed

    class Stop(Exception):
        pass

    def stop_in_two(epoch, m):
        if epoch == 2:
            raise Stop  # before epoch 2's checkpoint: epoch 1's is the last one written
        return {"probe": 10.0 + epoch}

    run = dict(epochs=3, batch_size=256, progress=False, checkpoint=str(ckpt))
    with pytest.raises(Stop):
        train.fit(model, methods.get("sgd"), ds, on_epoch=stop_in_two, **run)
    seen: list[int] = []

    def probe(epoch, m):
        seen.append(epoch)
        return {"probe": 10.0 + epoch}

    _, model = _setup()
    h = train.fit(model, methods.get("sgd"), ds, on_epoch=probe, **run)
    assert seen == [2, 3] and len(h) == 4
    # what the probe returned is part of the history, restored epochs included
    assert h.column("probe") == [10.0, 11.0, 12.0, 13.0]


def test_on_epoch_values_join_the_record():
    ds, model = _setup()
    h = train.fit(model, methods.get("sgd"), ds, epochs=2, batch_size=256, progress=False,
                  on_epoch=lambda e, m: {"norm": float(m.head.weight.detach().norm())} if e != 1 else None)
    assert "norm" not in h.records[1]
    assert [h.records[0]["norm"], h.records[2]["norm"]] == pytest.approx([h.records[0]["head_norm"], h.records[2]["head_norm"]], rel=1e-6)


def test_evaluation_batch_defaults_by_device_and_does_not_change_the_figures(monkeypatch):
    from samlab import bench, data, methods, models, train

    assert train.eval_batch(None, torch.device("cpu")) == train.EVAL_BATCH["cpu"]
    assert train.eval_batch(None, torch.device("cuda")) == train.EVAL_BATCH["cuda"] and train.eval_batch(7, "cpu") == 7
    with pytest.raises(ValueError, match="eval_batch_size"):
        train.FitConfig(eval_batch_size=0)
    seen = []
    real = train.evaluate
    monkeypatch.setattr(train, "evaluate", lambda m, d, b, f: seen.append(b) or real(m, d, b, f))
    ds = data.load("digits", noise="symmetric-flip", rate=0.2, noise_seed=0)
    model = models.build("mlp", ds.input_shape, ds.num_classes, seed=0, hidden=16, depth=1)
    train.fit(model, methods.get("sgd"), ds, train.FitConfig(epochs=1, progress=False))
    assert seen == [train.EVAL_BATCH["cpu"]] * 2  # epoch 0 and epoch 1
    rec = bench.eval_seconds("mlp", [100, 4096], repeats=1)
    assert rec["same_figures"] and set(rec["seconds"]) == {"100", "4096"}

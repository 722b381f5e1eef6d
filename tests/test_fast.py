"""The GPU fast path of train.fit (samlab.fast), checked on the CPU against the default path.

uint8 storage must give the very batches of the float32 path (same numbers, so the same
history); channels_last must give the same history to float tolerance; bad settings are
refused naming the field. No timing is asserted anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import numpy as np
import pytest
import torch

from samlab import bench, data, fast, methods, models, train

_KEYS = ("train_loss", "test_acc", "test_loss", "clean_fit", "noisy_fit", "clean_loss", "noisy_loss", "head_norm", "feature_norm")


def _fake_cifar(n: int = 160, n_test: int = 64, hw: int = 8, seed: int = 0) -> tuple[data.Dataset, np.ndarray]:
    """Random 8-bit RGB images normalised exactly as data.load normalises CIFAR-10, with noise,
    and the pixels they were made from."""
    ds = fast.synthetic_images(n, n_test, hw, seed=seed)
    pixels = np.random.default_rng(seed).integers(0, 256, (n, hw, hw, 3), dtype=np.uint8)  # the same draw
    return data.with_noise(ds, "symmetric-flip", 0.3, seed=1), pixels


def _digit_images() -> data.Dataset:
    return data.load("digits", noise="symmetric-flip", rate=0.3, noise_seed=1, images=True)


def _fit(ds: data.Dataset, method: str = "sgd", **kw) -> tuple[train.History, torch.nn.Module]:
    model = models.build("small-cnn", ds.input_shape, ds.num_classes, seed=0, widths=(4, 8), norm="bn")
    h = train.fit(model, methods.get(method), ds, epochs=2, batch_size=32, lr=0.05, augment=True, progress=False, **kw)
    return h, model


def _assert_same_history(a: train.History, b: train.History, rel: float, abs_: float) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a.records, b.records):
        for k in _KEYS:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and math.isnan(va):
                assert math.isnan(vb), k
            else:
                assert vb == pytest.approx(va, rel=rel, abs=abs_), (k, ra["epoch"])


def test_device_images_decode_exactly_to_the_float_dataset():
    ds, arrays = _fake_cifar()
    images = fast.DeviceImages.from_dataset(ds)
    assert images.codes.dtype == torch.uint8 and images.codes.shape == (160, 8, 8, 3)
    assert np.array_equal(images.codes.numpy(), arrays)  # the original pixels back
    idx = torch.tensor([5, 0, 159, 7])
    assert torch.equal(images.batch(idx), ds.x_train[idx])  # bit for bit
    cl = images.batch(idx, torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, ds.x_train[idx])
    digits = _digit_images()
    assert torch.equal(fast.DeviceImages.from_dataset(digits).batch(torch.arange(10)), digits.x_train[:10])


@pytest.mark.parametrize("augment", [False, True])
def test_fast_epoch_batches_are_the_default_batches(augment):
    ds, _ = _fake_cifar()
    images = fast.DeviceImages.from_dataset(ds)
    order = torch.randperm(len(ds.y_train), generator=torch.Generator().manual_seed(3))
    for storage, fmt, imgs in (("float32", "contiguous", None), ("uint8", "channels_last", images), ("uint8", "contiguous", images)):
        cfg = train.FitConfig(augment=augment, image_storage=storage, memory_format=fmt)
        got = list(train.epoch_batches(ds, cfg, order, torch.Generator().manual_seed(9), 4, 32, imgs))
        if storage == "float32":
            ref = got
            continue
        assert len(got) == len(ref) == 4
        for (x, y), (xr, yr) in zip(got, ref):
            assert torch.equal(x, xr) and torch.equal(y, yr)
            assert x.is_contiguous(memory_format=torch.channels_last if fmt == "channels_last" else torch.contiguous_format)


@pytest.mark.parametrize("method", ["sgd", "sam"])
def test_uint8_path_gives_the_float_path_history(method):
    ds, _ = _fake_cifar()
    ref, m_ref = _fit(ds, method)
    got, m_got = _fit(ds, method, image_storage="uint8")
    _assert_same_history(ref, got, rel=1e-6, abs_=1e-7)
    for p, q in zip(m_ref.parameters(), m_got.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_uint8_path_on_digits_gives_the_float_path_history():
    ds = _digit_images()
    ref, _ = _fit(ds)
    got, _ = _fit(ds, image_storage="uint8")
    _assert_same_history(ref, got, rel=1e-6, abs_=1e-7)


@pytest.mark.parametrize("storage", ["float32", "uint8"])
def test_channels_last_gives_the_default_history(storage):
    ds, _ = _fake_cifar()
    ref, m_ref = _fit(ds, "sam")
    got, m_got = _fit(ds, "sam", image_storage=storage, memory_format="channels_last")
    _assert_same_history(ref, got, rel=1e-4, abs_=1e-5)
    for p, q in zip(m_ref.parameters(), m_got.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert next(m_got.parameters()).ndim == 4 and any(
        p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in m_got.parameters()
    )


def test_history_records_images_per_second():
    ds, _ = _fake_cifar()
    h, _ = _fit(ds, image_storage="uint8")
    assert math.isnan(h.records[0]["images_per_second"])
    for r in h.records[1:]:
        assert r["images_per_second"] == pytest.approx(5 * 32 / r["seconds"])  # 160 // 32 = 5 steps of 32
    assert h.summary()["images_per_second"] == pytest.approx(statistics.median(r["images_per_second"] for r in h.records[1:]))
    assert h.images_per_second > 0


def test_compile_calls_model_compile_in_place(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: calls.append(type(self).__name__))
    ds, _ = _fake_cifar()
    h, model = _fit(ds, compile=True)
    assert calls == ["SmallCNN"] and len(h) == 3
    assert "body.0.weight" in model.state_dict()  # names unchanged: checkpoints still load


def test_a_run_may_resume_under_other_fast_settings(tmp_path, monkeypatch):
    """The fast-path fields say how to compute, not what: they are not in the checkpoint's fingerprint."""
    ds, _ = _fake_cifar()
    ckpt = tmp_path / "run.ckpt"
    ref, _ = _fit(ds)
    kw = dict(epochs=2, batch_size=32, lr=0.05, augment=True, progress=False, checkpoint=str(ckpt))
    real_evaluate = train.evaluate
    calls = {"n": 0}

    def dying_evaluate(*args, **kwargs):  # the process "dies" while evaluating epoch 2
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    model = models.build("small-cnn", ds.input_shape, ds.num_classes, seed=0, widths=(4, 8), norm="bn")
    monkeypatch.setattr(train, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train.fit(model, methods.get("sgd"), ds, **kw)
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    with pytest.raises(ValueError, match="different configuration"):  # a real change is still refused
        train.fit(model, methods.get("sgd"), ds, **{**kw, "lr": 0.01})
    resumed = train.fit(model, methods.get("sgd"), ds, image_storage="uint8", memory_format="channels_last", **kw)
    _assert_same_history(ref, resumed, rel=1e-4, abs_=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"image_storage": "int8"}, "image_storage"),
        ({"image_storage": None}, "image_storage"),
        ({"memory_format": "nhwc"}, "memory_format"),
        ({"memory_format": torch.channels_last}, "memory_format"),
        ({"compile": "yes"}, "compile"),
        ({"compile": 1}, "compile"),
    ],
)
def test_bad_fast_settings_name_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        train.FitConfig(**kwargs)


def test_fast_settings_refuse_data_they_cannot_handle():
    flat = data.load("gaussian", n=64, d=5, n_test=16)
    model = models.build("linear", flat.input_shape, 1)
    with pytest.raises(ValueError, match="image_storage"):
        train.fit(model, methods.get("sgd"), flat, epochs=1, image_storage="uint8", progress=False)
    with pytest.raises(ValueError, match="memory_format"):
        train.fit(model, methods.get("sgd"), flat, epochs=1, memory_format="channels_last", progress=False)
    digits_flat = data.load("digits")  # 8-bit codes, but not (N, C, H, W)
    with pytest.raises(ValueError, match="image_storage"):
        fast.DeviceImages.from_dataset(digits_flat)
    ds, _ = _fake_cifar()
    shifted = dataclasses.replace(ds, x_train=ds.x_train + 1e-3)  # not exactly 8-bit codes
    with pytest.raises(ValueError, match="image_storage='float32'"):
        fast.DeviceImages.from_dataset(shifted)


def test_bench_cli_throughput(capsys):
    assert bench.main(["--throughput", "--models", "mlp", "--batch", "16", "--repeats", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "uint8+channels_last" in out and "images_per_second" in out.splitlines()[-1]


def test_bench_cli_throughput_out_file_and_its_table(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    args = ["--throughput", "--models", "mlp", "--batch", "16", "--repeats", "2", "--warmup", "0", "--out", str(out)]
    assert bench.main(args) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    saved = json.loads(out.read_text())
    assert saved["records"] == printed and len(printed) == 2  # sgd and sam
    assert saved["command"] == "python -m samlab.bench " + " ".join(args)
    assert {"hardware", "git_commit", "date", "torch"} <= set(saved)
    table = bench.throughput_markdown_table(saved)
    sgd = printed[0]["images_per_second"]
    assert f"| mlp | sgd | {sgd['default']:.0f} (1.00×) |" in table
    assert table.count("\n| mlp |") == 2 and saved["command"] in table

"""samlab.data against independent references.

The torchvision datasets are exercised through the real torchvision code on fixtures written
in the real on-disk formats (CIFAR python pickles as written by Python 2, MNIST big-endian
IDX files); the network is always off (``offline`` fixture). Expected arrays are computed
here with NumPy straight from the bytes written, never through samlab.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from samlab import data
from samlab.noise import NoisyLabels

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
#: The normalisation constants samlab documents (per-channel mean and std of each training set).
NORM = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
}
#: MNIST's official test set: images per digit 0..9 (the test half of mnist-mini is all of it).
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _load(*args, **kwargs) -> data.Dataset:
    """data.load without a validation split: these tests check the datasets themselves
    (the split is tested in tests/test_validation_split.py)."""
    kwargs.setdefault("val_fraction", 0.0)
    return data.load(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# Writers for the real on-disk formats
# --------------------------------------------------------------------------------------------


class _Py2Str(bytes):
    """A Python 2 ``str``. The CIFAR pickles were written by Python 2, whose strings are byte
    strings stored with the (SHORT_)BINSTRING opcodes: ``pickle.load(f, encoding="latin1")``
    (torchvision) turns them into ``str``, ``encoding="bytes"`` (the CIFAR website) into ``bytes``."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, so that opcodes can be chosen
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2str(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + bytes(obj))
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2str

    def reducer_override(self, obj):
        # a NumPy array as Python 2 pickled it: its raw bytes and type code as byte strings
        if type(obj) is np.ndarray:
            fn, args, (version, shape, dtype, fortran, raw) = obj.__reduce__()
            return fn, (args[0], args[1], _Py2Str(args[2])), (version, shape, dtype, fortran, _Py2Str(raw))
        return NotImplemented


def _s(text: str) -> _Py2Str:
    return _Py2Str(text.encode("ascii"))


def _dump_py2(obj, path: Path) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@dataclass
class FakeCifar:
    """A CIFAR folder written by :func:`write_cifar10` / :func:`write_cifar100`."""

    cls: type
    folder: Path
    md5: dict[str, str]
    train: list[tuple[np.ndarray, list[int]]]  # per training batch: (N, 3072) uint8 rows, labels
    test: tuple[np.ndarray, list[int]]

    @property
    def root(self) -> Path:
        return self.folder.parent

    def use_checksums(self, monkeypatch) -> None:
        """Point torchvision's MD5 checks at this fixture's files (they check the official ones)."""
        cls = self.cls
        monkeypatch.setattr(cls, "train_list", [[name, self.md5[name]] for name, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[name, self.md5[name]] for name, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": self.md5[cls.meta["filename"]]})


def write_cifar10(root: Path, batch_sizes=(7, 7, 7, 7, 7), n_test: int = 6, seed: int = 0) -> FakeCifar:
    """``cifar-10-batches-py`` as in the official archive: five training batches, a test batch
    and ``batches.meta``, each a Python 2 pickle of a dict whose ``data`` is (N, 3072) uint8 —
    each row the red, then green, then blue 32×32 plane, row-major."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(label: str, n: int, path: Path):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        names = [_s(f"{label.replace(' ', '_')}_{i}.png") for i in range(n)]
        _dump_py2({_s("batch_label"): _s(label), _s("labels"): y, _s("data"): x, _s("filenames"): names}, path)
        return x, y

    train = [batch(f"training batch {b} of 5", n, folder / f"data_batch_{b}") for b, n in enumerate(batch_sizes, 1)]
    test = batch("testing batch 1 of 1", n_test, folder / "test_batch")
    meta = {_s("num_cases_per_batch"): 10000, _s("label_names"): [_s(c) for c in CIFAR10_CLASSES], _s("num_vis"): 3072}
    _dump_py2(meta, folder / "batches.meta")
    md5 = {p.name: _md5(p) for p in folder.iterdir()}
    return FakeCifar(tvd.CIFAR10, folder, md5, train, test)


def write_cifar100(root: Path, n_train: int = 9, n_test: int = 5, seed: int = 0) -> FakeCifar:
    """``cifar-100-python``: ``train``, ``test`` and ``meta``, with fine (0..99) and coarse labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)

    def split(label: str, n: int, path: Path):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        fine[0] = 99  # the largest class must survive
        coarse = [int(v) for v in rng.integers(0, 20, n)]
        _dump_py2(
            {
                _s("filenames"): [_s(f"{label}_{i}.png") for i in range(n)],
                _s("batch_label"): _s(f"{label} batch 1 of 1"),
                _s("fine_labels"): fine,
                _s("coarse_labels"): coarse,
                _s("data"): x,
            },
            path,
        )
        return x, fine

    train = split("training", n_train, folder / "train")
    test = split("testing", n_test, folder / "test")
    meta = {
        _s("fine_label_names"): [_s(f"fine{i}") for i in range(100)],
        _s("coarse_label_names"): [_s(f"coarse{i}") for i in range(20)],
    }
    _dump_py2(meta, folder / "meta")
    md5 = {p.name: _md5(p) for p in folder.iterdir()}
    return FakeCifar(tvd.CIFAR100, folder, md5, [train], test)


def _idx(path: Path, magic: int, a: np.ndarray) -> None:
    path.write_bytes(struct.pack(">i", magic) + struct.pack(f">{a.ndim}i", *a.shape) + a.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 12, n_test: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """``MNIST/raw`` with the four uncompressed IDX files (big-endian header, magic 2051 for
    images, 2049 for labels). Returns the arrays written."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    _idx(raw / "train-images-idx3-ubyte", 2051, out["x_train"])
    _idx(raw / "train-labels-idx1-ubyte", 2049, out["y_train"])
    _idx(raw / "t10k-images-idx3-ubyte", 2051, out["x_test"])
    _idx(raw / "t10k-labels-idx1-ubyte", 2049, out["y_test"])
    return out


def _chw(rows: np.ndarray) -> np.ndarray:
    """CIFAR rows (N, 3072) -> (N, 3, 32, 32): 1024 red values, then green, then blue, row-major."""
    return rows.reshape(-1, 3, 32, 32)


def _pixels(x: torch.Tensor, parent: str) -> np.ndarray:
    """Undo samlab's normalisation: back to 0..255 values, checked to be (nearly) integers."""
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in NORM[parent])
    p = x.mul(std).add_(mean).mul_(255.0)
    r = p.round()
    assert float(p.sub_(r).abs_().max()) < 1e-2
    return r.numpy()


def _no_torchvision(monkeypatch) -> None:
    """Fail the test if samlab reaches for the full datasets at all."""

    def refuse(*args, **kwargs):
        raise AssertionError("the full dataset must not be read here")

    for cls in ("CIFAR10", "CIFAR100", "MNIST"):
        monkeypatch.setattr(tvd, cls, refuse)


# --------------------------------------------------------------------------------------------
# The fixtures themselves: are they the real formats?
# --------------------------------------------------------------------------------------------


def test_fake_cifar_pickles_are_python2_style(tmp_path):
    fake = write_cifar10(tmp_path)
    with open(fake.folder / "data_batch_1", "rb") as f:  # as the CIFAR website reads them
        entry = pickle.load(f, encoding="bytes")
    assert set(entry) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (7, 3072)
    with open(fake.folder / "data_batch_1", "rb") as f:  # as torchvision reads them
        assert set(pickle.load(f, encoding="latin1")) == {"batch_label", "labels", "data", "filenames"}
    head = (tmp_path / "cifar-10-batches-py" / "batches.meta").read_bytes()[:2]
    assert head == b"\x80\x02"  # protocol 2


def test_fake_mnist_headers_are_big_endian_idx(tmp_path):
    write_mnist(tmp_path, n_train=3)
    raw = (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    assert raw[:16] == bytes.fromhex("00000803 00000003 0000001c 0000001c")
    assert (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()[:4] == bytes.fromhex("00000801")


# --------------------------------------------------------------------------------------------
# Full datasets through the real torchvision code
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("download", [False, True])
def test_cifar10_from_real_format(tmp_path, monkeypatch, offline, download):
    fake = write_cifar10(tmp_path)
    fake.use_checksums(monkeypatch)
    ds = _load("cifar10", root=tmp_path, download=download)
    assert offline == []  # files present: nothing downloaded, even with download=True
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.x_train.shape == (35, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (3, 32, 32)

    rows = np.concatenate([x for x, _ in fake.train])  # batches 1..5, in order
    labels = sum((y for _, y in fake.train), [])
    np.testing.assert_array_equal(_pixels(ds.x_train, "cifar10"), _chw(rows))
    np.testing.assert_array_equal(_pixels(ds.x_test, "cifar10"), _chw(fake.test[0]))
    assert ds.y_train.tolist() == labels and ds.y_test.tolist() == fake.test[1]
    assert torch.equal(ds.y_train_clean, ds.y_train) and not ds.is_noisy.any() and ds.noise is None

    # element by element from the definition: pixel (h, w) of channel c is byte 1024c + 32h + w
    for n, c, h, w in [(0, 0, 0, 1), (8, 1, 2, 30), (34, 2, 31, 0), (20, 2, 5, 17)]:
        value = float(ds.x_train[n, c, h, w]) * NORM["cifar10"][1][c] + NORM["cifar10"][0][c]
        assert round(value * 255) == rows[n, 1024 * c + 32 * h + w]
    # and the per-channel normalisation is the documented one
    first = float(ds.x_train[0, 1, 0, 0])
    assert first == pytest.approx((rows[0, 1024] / 255 - 0.4822) / 0.2435, abs=1e-6)


def test_cifar100_uses_fine_labels(tmp_path, monkeypatch, offline):
    fake = write_cifar100(tmp_path)
    fake.use_checksums(monkeypatch)
    ds = _load("cifar100", root=tmp_path, download=False)
    assert ds.num_classes == 100
    assert ds.x_train.shape == (9, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(_pixels(ds.x_train, "cifar100"), _chw(fake.train[0][0]))
    np.testing.assert_array_equal(_pixels(ds.x_test, "cifar100"), _chw(fake.test[0]))
    assert ds.y_train.tolist() == fake.train[0][1] and ds.y_test.tolist() == fake.test[1]
    assert int(ds.y_train.max()) == 99


def test_mnist_from_real_format(tmp_path, offline):
    arrays = write_mnist(tmp_path)
    ds = _load("mnist", root=tmp_path, download=True)
    assert offline == []
    assert ds.num_classes == 10 and ds.input_shape == (1, 28, 28)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (8, 1, 28, 28)
    np.testing.assert_array_equal(_pixels(ds.x_train, "mnist")[:, 0], arrays["x_train"])
    np.testing.assert_array_equal(_pixels(ds.x_test, "mnist")[:, 0], arrays["x_test"])
    assert ds.y_train.tolist() == arrays["y_train"].tolist() and ds.y_test.tolist() == arrays["y_test"].tolist()
    expected = (arrays["x_train"][3, 7, 11] / 255 - 0.1307) / 0.3081
    assert float(ds.x_train[3, 0, 7, 11]) == pytest.approx(expected, abs=1e-6)


def test_corrupted_cifar_file_is_not_loaded(tmp_path, monkeypatch, offline):
    fake = write_cifar10(tmp_path)
    fake.use_checksums(monkeypatch)
    batch = fake.folder / "data_batch_3"
    raw = bytearray(batch.read_bytes())
    raw[-100] ^= 1
    batch.write_bytes(bytes(raw))
    with pytest.raises(data.DatasetUnavailableError, match="download=True"):
        _load("cifar10", root=tmp_path, download=False)


# --------------------------------------------------------------------------------------------
# Offline behaviour (the network is always off here; torchvision's own downloader is used)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, host",
    [("cifar10", "www.cs.toronto.edu"), ("cifar100", "www.cs.toronto.edu"), ("mnist", "ossci-datasets")],
)
def test_offline_download_raises_with_advice(tmp_path, offline, name, host):
    root = tmp_path / "empty"
    with pytest.raises(data.DatasetUnavailableError) as err:
        _load(name, root=root, download=True)
    msg = str(err.value)
    assert "Could not download" in msg and str(root) in msg
    assert "offline" in msg and "copy" in msg  # what happened, and what to do
    assert any(host in url for url in offline), offline  # torchvision's real downloader tried


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist"])
def test_missing_without_download_raises_clearly(tmp_path, offline, name):
    with pytest.raises(data.DatasetUnavailableError) as err:
        _load(name, root=tmp_path, download=False)
    msg = str(err.value)
    assert name in msg and str(tmp_path) in msg and "download=False" in msg and "download=True" in msg
    assert offline == []


@pytest.mark.parametrize("name", ["cifar10-mini", "mnist-mini"])
def test_offline_mini_says_a_cache_file_would_do(tmp_path, offline, name):
    with pytest.raises(data.DatasetUnavailableError) as err:
        _load(name, root=tmp_path, download=True)
    msg = str(err.value)
    assert "Could not download" in msg and str(tmp_path / f"{name}.npz") in msg
    assert not (tmp_path / f"{name}.npz").exists()


def test_dataset_unavailable_is_a_runtime_error():
    assert issubclass(data.DatasetUnavailableError, RuntimeError)


# --------------------------------------------------------------------------------------------
# Mini subsets, derived from full datasets of the real size and layout
# --------------------------------------------------------------------------------------------


def test_mini_indices_follow_the_definition():
    """../shared/data/README.md: cifar10-mini = train indices 0–999, 10000–10999, …,
    40000–40999 and test 0–999; mnist-mini = train 0–9999 and the whole test set."""
    c = data.MINI_INDICES["cifar10-mini"]
    expected_train = [i for start in (0, 10000, 20000, 30000, 40000) for i in range(start, start + 1000)]
    assert c["parent"] == "cifar10"
    assert np.asarray(c["train"]).tolist() == expected_train
    assert np.asarray(c["test"]).tolist() == list(range(1000))
    m = data.MINI_INDICES["mnist-mini"]
    assert m["parent"] == "mnist"
    assert np.asarray(m["train"]).tolist() == list(range(10000))
    assert np.asarray(m["test"]).tolist() == list(range(10000))
    assert set(data.MINI_HASHES) == set(data.MINI_INDICES) <= set(data.DATASETS)


@pytest.fixture(scope="module")
def full_cifar10(tmp_path_factory) -> FakeCifar:
    """Five training batches of 10,000 images and a test batch of 2,000 (written once)."""
    return write_cifar10(tmp_path_factory.mktemp("full-cifar10"), batch_sizes=(10000,) * 5, n_test=2000, seed=1)


@pytest.fixture(scope="module")
def full_mnist(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """10,050 training images (so that "the first 10,000" is a real choice) and 10,000 test images."""
    root = tmp_path_factory.mktemp("full-mnist")
    return root, write_mnist(root, n_train=10050, n_test=10000, seed=2)


@dataclass
class MiniCase:
    name: str
    parent: str
    source: Path  # the folder of the full dataset, linked into each test's root
    expected: dict[str, np.ndarray]
    fake: FakeCifar | None = None

    def root_with_full_dataset(self, root: Path, monkeypatch) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        (root / self.source.name).symlink_to(self.source, target_is_directory=True)
        if self.fake is not None:
            self.fake.use_checksums(monkeypatch)
        return root

    def use_fixture_hashes(self, monkeypatch) -> None:
        """Define the subset by the SHA-256 of the arrays expected from *these* fake files."""
        monkeypatch.setitem(data.MINI_HASHES, self.name, {k: _sha256(v) for k, v in self.expected.items()})

    def images_nchw(self, key: str) -> np.ndarray:
        x = self.expected[key]
        return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


@pytest.fixture(params=["cifar10-mini", "mnist-mini"])
def mini(request) -> MiniCase:
    if request.param == "cifar10-mini":
        fake = request.getfixturevalue("full_cifar10")
        # the definition, computed independently: first 1,000 rows of each batch, as HWC images
        hwc = lambda rows: _chw(rows).transpose(0, 2, 3, 1)  # noqa: E731
        expected = {
            "x_train": np.ascontiguousarray(hwc(np.concatenate([x[:1000] for x, _ in fake.train]))),
            "y_train": np.array(sum((y[:1000] for _, y in fake.train), []), dtype=np.int64),
            "x_test": np.ascontiguousarray(hwc(fake.test[0][:1000])),
            "y_test": np.array(fake.test[1][:1000], dtype=np.int64),
        }
        return MiniCase("cifar10-mini", "cifar10", fake.folder, expected, fake)
    root, arrays = request.getfixturevalue("full_mnist")
    expected = {
        "x_train": arrays["x_train"][:10000],
        "y_train": arrays["y_train"][:10000].astype(np.int64),
        "x_test": arrays["x_test"],
        "y_test": arrays["y_test"].astype(np.int64),
    }
    return MiniCase("mnist-mini", "mnist", root / "MNIST", expected)


def _assert_matches(ds: data.Dataset, case: MiniCase) -> None:
    assert ds.name == case.name and ds.num_classes == 10
    np.testing.assert_array_equal(_pixels(ds.x_train, case.parent), case.images_nchw("x_train"))
    np.testing.assert_array_equal(_pixels(ds.x_test, case.parent), case.images_nchw("x_test"))
    np.testing.assert_array_equal(ds.y_train.numpy(), case.expected["y_train"])
    np.testing.assert_array_equal(ds.y_test.numpy(), case.expected["y_test"])


def test_mini_is_derived_cached_and_read_back(mini, tmp_path, monkeypatch, offline):
    mini.use_fixture_hashes(monkeypatch)
    root = mini.root_with_full_dataset(tmp_path / "root", monkeypatch)
    ds = _load(mini.name, root=root, download=True)
    assert offline == []
    _assert_matches(ds, mini)

    cache = root / f"{mini.name}.npz"
    with np.load(cache) as f:
        assert sorted(f.files) == ["x_test", "x_train", "y_test", "y_train"]
        for key, want in mini.expected.items():
            assert f[key].dtype == want.dtype and f[key].shape == want.shape
            np.testing.assert_array_equal(f[key], want)
    assert sorted(p.name for p in root.iterdir()) == sorted([mini.source.name, cache.name])  # no temp file left

    # the second load reads the cache: the full dataset is gone and torchvision is off limits
    (root / mini.source.name).unlink()
    _no_torchvision(monkeypatch)
    again = _load(mini.name, root=root, download=False)
    _assert_matches(again, mini)
    assert torch.equal(again.x_train, ds.x_train)


@pytest.mark.parametrize("key, where, modulo", [("x_train", 12345, 256), ("y_test", 5, 10)])
def test_mini_tampered_cache_is_rejected(mini, tmp_path, monkeypatch, key, where, modulo):
    mini.use_fixture_hashes(monkeypatch)
    _no_torchvision(monkeypatch)
    arrays = {k: np.array(v, copy=True) for k, v in mini.expected.items()}
    flat = arrays[key].reshape(-1)  # a view
    flat[where] = (int(flat[where]) + 1) % modulo  # one pixel (one label) changed
    cache = tmp_path / f"{mini.name}.npz"
    np.savez(cache, **arrays)
    with pytest.raises(ValueError) as err:
        _load(mini.name, root=tmp_path, download=False)
    msg = str(err.value)
    assert repr(key) in msg and str(cache) in msg
    assert "Delete" in msg and "again" in msg  # what to do


def test_mini_cache_missing_an_array_is_rejected(mini, tmp_path, monkeypatch):
    mini.use_fixture_hashes(monkeypatch)
    _no_torchvision(monkeypatch)
    arrays = {k: v for k, v in mini.expected.items() if k != "y_train"}
    np.savez(tmp_path / f"{mini.name}.npz", **arrays)
    with pytest.raises(ValueError, match="'y_train'"):
        _load(mini.name, root=tmp_path, download=False)


def test_mini_unreadable_cache_is_rejected(tmp_path, monkeypatch):
    _no_torchvision(monkeypatch)
    cache = tmp_path / "mnist-mini.npz"
    cache.write_bytes(b"PK\x03\x04 this is not a zip file")
    with pytest.raises(ValueError, match="Delete"):
        _load("mnist-mini", root=tmp_path, download=False)


def test_mini_user_placed_cache_is_accepted_without_download(mini, tmp_path, monkeypatch, offline):
    mini.use_fixture_hashes(monkeypatch)
    _no_torchvision(monkeypatch)
    np.savez(tmp_path / f"{mini.name}.npz", **mini.expected)
    ds = _load(mini.name, root=tmp_path, download=False)
    _assert_matches(ds, mini)
    assert offline == []


def test_mini_from_a_non_official_full_dataset_is_rejected(mini, tmp_path, monkeypatch, offline):
    # the real hashes from the definition: random fake images cannot match them
    root = mini.root_with_full_dataset(tmp_path / "root", monkeypatch)
    with pytest.raises(ValueError) as err:
        _load(mini.name, root=root, download=False)
    assert "differ from the official" in str(err.value) and "x_train" in str(err.value)
    assert not (root / f"{mini.name}.npz").exists()


def test_mini_cache_found_through_samlab_data(mini, data_home, monkeypatch):
    mini.use_fixture_hashes(monkeypatch)
    _no_torchvision(monkeypatch)
    np.savez(data_home / f"{mini.name}.npz", **mini.expected)
    assert data.data_root() == data_home
    _assert_matches(_load(mini.name, download=False), mini)


# --------------------------------------------------------------------------------------------
# The real mini files in ../shared/data
# --------------------------------------------------------------------------------------------

README_COUNTS = {
    "cifar10-mini": (
        [508, 515, 478, 484, 527, 469, 497, 512, 518, 492],
        [103, 89, 100, 103, 90, 86, 112, 102, 106, 109],
    ),
    "mnist-mini": ([1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978], MNIST_TEST_COUNTS),
}
README_SHAPES = {
    "cifar10-mini": {"x_train": (5000, 32, 32, 3), "y_train": (5000,), "x_test": (1000, 32, 32, 3), "y_test": (1000,)},
    "mnist-mini": {"x_train": (10000, 28, 28), "y_train": (10000,), "x_test": (10000, 28, 28), "y_test": (10000,)},
}


@pytest.mark.shared_data
def test_mini_hashes_are_those_of_the_definition(shared_data_dir):
    readme = (shared_data_dir / "README.md").read_text()
    table: dict[str, dict[str, str]] = {}
    for name, key, digest in re.findall(r"^(\S+-mini)\s+([xy]_(?:train|test))\s+([0-9a-f]{64})\s*$", readme, re.M):
        table.setdefault(name, {})[key] = digest
    assert table == data.MINI_HASHES


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["cifar10-mini", "mnist-mini"])
def test_shared_mini_file_loads_as_documented(name, shared_data_dir, tmp_path, monkeypatch, offline):
    shutil.copy(shared_data_dir / f"{name}.npz", tmp_path / f"{name}.npz")
    with np.load(tmp_path / f"{name}.npz") as f:
        for key, shape in README_SHAPES[name].items():
            assert f[key].shape == shape and f[key].dtype == (np.uint8 if key[0] == "x" else np.int64)
    _no_torchvision(monkeypatch)
    ds = _load(name, root=tmp_path, download=False)
    assert offline == []
    img = (3, 32, 32) if name.startswith("cifar") else (1, 28, 28)
    assert ds.input_shape == img and ds.num_classes == 10
    assert ds.x_train.shape == (README_SHAPES[name]["x_train"][0], *img)
    assert ds.x_test.shape == (README_SHAPES[name]["x_test"][0], *img)
    train_counts, test_counts = README_COUNTS[name]
    assert torch.bincount(ds.y_train, minlength=10).tolist() == train_counts
    assert torch.bincount(ds.y_test, minlength=10).tolist() == test_counts
    pix = _pixels(ds.x_train[:200], "cifar10" if name.startswith("cifar") else "mnist")
    assert pix.min() >= 0 and pix.max() <= 255


# --------------------------------------------------------------------------------------------
# Synthetic and scikit-learn data, the Dataset object, names and the data folder
# --------------------------------------------------------------------------------------------


def test_gaussian_shapes_defaults_and_determinism():
    ds = _load("gaussian")
    assert ds.x_train.shape == (1000, 20) and ds.x_test.shape == (2000, 20)
    assert ds.num_classes == 2 and set(ds.y_train.tolist()) == {0, 1}
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    same = _load("gaussian")
    other = _load("gaussian", seed=1)
    assert torch.equal(ds.x_train, same.x_train) and torch.equal(ds.y_test, same.y_test)
    assert not torch.equal(ds.x_train, other.x_train)
    small = _load("gaussian", n=50, d=3, classes=3, n_test=7, seed=4)
    assert small.x_train.shape == (50, 3) and small.x_test.shape == (7, 3) and small.num_classes == 3


def test_gaussian_geometry_matches_its_definition():
    """Two classes: means ±(s/2) e1; K classes: every pair of means s apart; noise sigma."""
    ds = _load("gaussian", n=40000, d=5, separation=4.0, sigma=0.5, n_test=10)
    x, y = ds.x_train.double(), ds.y_train
    tol = 6 * 0.5 / (20000**0.5)
    e1 = torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(x[y == 0].mean(0), -2.0 * e1, atol=tol, rtol=0)
    torch.testing.assert_close(x[y == 1].mean(0), 2.0 * e1, atol=tol, rtol=0)
    assert float((x[y == 0] - x[y == 0].mean(0)).std()) == pytest.approx(0.5, rel=0.02)
    k = _load("gaussian", n=30000, d=6, classes=4, separation=3.0, n_test=10)
    means = torch.stack([k.x_train[k.y_train == c].double().mean(0) for c in range(4)])
    dist = torch.cdist(means, means)
    off = dist[~torch.eye(4, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, 3.0), atol=0.1, rtol=0)


@pytest.mark.parametrize(
    "options, param",
    [
        ({"n": 0}, "n"),
        ({"d": 0}, "d"),
        ({"classes": 1}, "classes"),
        ({"classes": 30, "d": 5}, "classes"),
        ({"sigma": 0}, "sigma"),
    ],
)
def test_gaussian_bad_options(options, param):
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        _load("gaussian", **options)


def _rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows (features..., label) in a canonical order, to compare data sets as multisets."""
    a = np.concatenate([x.reshape(len(x), -1), y[:, None]], axis=1)
    return a[np.lexsort(a.T[::-1])]


def test_digits_is_sklearns_bundled_set():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = _load("digits")
    assert ds.num_classes == 10 and ds.input_shape == (64,)
    assert len(ds.y_test) == round(0.25 * 1797) and len(ds.y_train) + len(ds.y_test) == 1797
    ours = _rows(
        torch.cat([ds.x_train, ds.x_test]).numpy().astype(np.float64),
        torch.cat([ds.y_train, ds.y_test]).numpy(),
    )
    np.testing.assert_allclose(ours, _rows(bunch.data / 16.0, bunch.target), atol=1e-7)
    again = _load("digits")
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.y_test, again.y_test)
    img = _load("digits", images=True)
    assert img.input_shape == (1, 8, 8)
    torch.testing.assert_close(img.x_train.flatten(1), ds.x_train)
    np.testing.assert_allclose(img.x_train[0, 0].numpy(), ds.x_train[0].numpy().reshape(8, 8))


@pytest.mark.parametrize("classes", [(3, 8), (8, 3), (0, 5, 9)])
def test_digits_class_subset_is_relabelled_in_the_order_given(classes):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = _load("digits", classes=classes)
    assert ds.num_classes == len(classes)
    keep = np.isin(bunch.target, classes)
    relabel = np.array([classes.index(t) for t in bunch.target[keep]])
    ours = _rows(
        torch.cat([ds.x_train, ds.x_test]).numpy().astype(np.float64),
        torch.cat([ds.y_train, ds.y_test]).numpy(),
    )
    np.testing.assert_allclose(ours, _rows(bunch.data[keep] / 16.0, relabel), atol=1e-7)
    assert sorted(set(ds.y_train.tolist())) == list(range(len(classes)))


@pytest.mark.parametrize("classes", [(3,), (3, 3), (3, 10), (-1, 2)])
def test_digits_bad_classes(classes):
    with pytest.raises(ValueError, match="classes"):
        _load("digits", classes=classes)


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ValueError) as err:
        _load("cifar-10")
    for name in data.DATASETS:
        assert repr(name) in str(err.value)
    assert set(data.DATASETS) == {"gaussian", "digits", "mnist", "cifar10", "cifar100", "cifar10-mini", "mnist-mini"}


def test_options_for_image_sets_and_rate_without_noise_are_refused(tmp_path):
    with pytest.raises(ValueError, match="options|takes no"):
        _load("cifar10-mini", root=tmp_path, seed=3)
    with pytest.raises(ValueError, match="noise"):
        _load("gaussian", rate=0.2)
    with pytest.raises(ValueError, match="load_mini_arrays|name"):
        data.load_mini_arrays("cifar10", root=tmp_path)


def test_with_noise_keeps_clean_labels_and_marks_the_noisy_ones():
    ds = _load("digits")
    noisy = data.with_noise(ds, "symmetric-flip", 0.4, seed=7)
    assert torch.equal(noisy.y_train_clean, ds.y_train)
    assert torch.equal(noisy.is_noisy, noisy.y_train != ds.y_train)
    assert 0.3 < float(noisy.is_noisy.float().mean()) < 0.5
    assert isinstance(noisy.noise, NoisyLabels) and noisy.noise.kind == "symmetric-flip" and noisy.noise.seed == 7
    assert noisy.noise.realised_rate == pytest.approx(float(noisy.is_noisy.float().mean()))
    assert torch.equal(noisy.x_train, ds.x_train) and torch.equal(noisy.y_test, ds.y_test)
    assert ds.noise is None and not ds.is_noisy.any()  # the original is untouched
    via_load = _load("digits", noise="symmetric-flip", rate=0.4, noise_seed=7)
    assert torch.equal(via_load.y_train, noisy.y_train)
    # noise on top of noise starts again from the clean labels
    twice = data.with_noise(noisy, "symmetric-flip", 0.4, seed=7)
    assert torch.equal(twice.y_train, noisy.y_train) and torch.equal(twice.y_train_clean, ds.y_train)


def test_with_noise_uses_the_cifar10_mapping_for_the_mini_subset():
    base = _load("gaussian", n=2000, d=10, classes=10, n_test=10)
    ds = data.with_noise(dataclasses.replace(base, name="cifar10-mini"), "asymmetric", 0.5, seed=0)
    flipped = ds.is_noisy
    pairs = set(zip(ds.y_train_clean[flipped].tolist(), ds.y_train[flipped].tolist()))
    assert pairs == {(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)}


def test_dataset_to_and_describe():
    ds = _load("gaussian", n=30, d=4, n_test=5, noise="symmetric-flip", rate=0.2, noise_seed=3)
    text = ds.describe()
    for part in ("gaussian", "30 train / 5 test", "2 classes", "(4,)", "symmetric-flip noise, rate 0.2",
                 f"realised {ds.noise.realised_rate:.3f}", "noise seed 3"):
        assert part in text, (part, text)
    assert "clean labels" in _load("gaussian", n=30, d=4, n_test=5).describe()

    moved = ds.to("meta")
    for name in ("x_train", "y_train", "x_test", "y_test", "y_train_clean", "is_noisy"):
        assert getattr(moved, name).device.type == "meta" and getattr(ds, name).device.type == "cpu"
        assert getattr(moved, name).shape == getattr(ds, name).shape
    assert moved.noise.labels.device.type == "meta" and moved.noise.is_noisy.device.type == "meta"
    assert moved.noise.rate == 0.2 and moved.name == ds.name and moved.num_classes == 2
    back = ds.to("cpu")
    assert torch.equal(back.y_train, ds.y_train)
    assert _load("gaussian", n=30, d=4, n_test=5, device="meta").x_train.device.type == "meta"


def test_data_root_respects_samlab_data(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path / "here"))
    assert data.data_root() == tmp_path / "here"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SAMLAB_DATA", "~/d")
    assert data.data_root() == tmp_path / "home" / "d"
    monkeypatch.delenv("SAMLAB_DATA")
    checkout = Path(data.__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").exists():  # a source checkout (editable install)
        assert data.data_root() == checkout / "data"

"""Shared fixtures: a network that is always off, a private data folder, the shared mini files, README sections."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

#: ``../shared/data`` next to the repository: the real mini subsets, present on some machines
#: only. Tests that read them are marked ``shared_data`` and skipped when the files are absent.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def offline(monkeypatch):
    """Make every network access fail at once, as on an offline machine; returns the URLs tried.

    ``urllib.request.urlopen`` (what torchvision's downloader calls) raises ``URLError`` and
    records the URL, except for local ``file:`` URLs (read as usual: no network); a raw socket
    connection raises ``OSError``. Nothing reaches the network.
    """
    tried: list[str] = []
    real_urlopen = urllib.request.urlopen

    def urlopen(req, *args, **kwargs):
        url = req.full_url if isinstance(req, urllib.request.Request) else str(req)
        if url.startswith("file:"):
            return real_urlopen(req, *args, **kwargs)
        tried.append(url)
        raise urllib.error.URLError("network disabled by the test (offline fixture)")

    def connect(*args, **kwargs):
        raise OSError("network disabled by the test (offline fixture)")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", connect)
    return tried


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """A fresh, empty data folder, installed as ``$SAMLAB_DATA``."""
    root = tmp_path / "samlab-data"
    root.mkdir()
    monkeypatch.setenv("SAMLAB_DATA", str(root))
    return root


@pytest.fixture
def shared_data_dir() -> Path:
    """``../shared/data`` with both mini files, or skip."""
    names = ("cifar10-mini.npz", "mnist-mini.npz")
    if not all((SHARED_DATA / n).is_file() for n in names):
        pytest.skip(f"the shared mini datasets are not in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def readme_section():
    """The text of the project's README.md between two marker lines (a generated table), stripped."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()

    def section(markers: tuple[str, str]) -> str:
        start, end = markers
        assert start in readme and end in readme, f"README.md lacks the markers {markers}"
        return readme.split(start, 1)[1].split(end, 1)[0].strip()

    return section

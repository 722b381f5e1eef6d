"""Where result files live and how they are written: their paths, strict JSON written atomically, and the
lock that lets several processes (on one machine, or on several sharing a file system) merge into one file.

What a result file holds, how it is read and what is printed from it is :mod:`samlab.results`; runs that
two files share are :mod:`samlab.sharing`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samlab import data as data_mod

__all__ = ["finite", "locked", "path", "write"]


def path(name: str, profile: str, root: Path | None = None) -> Path:
    """``<root>/<profile>/<name>.json``; ``root`` defaults to ``data/results``."""
    root = Path(root) if root is not None else data_mod.data_root() / "results"
    return root / profile / f"{name}.json"


def finite(obj: Any) -> Any:
    """``obj`` with NaN/inf replaced by None, so that result files are strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write(file: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as strict JSON to ``file`` atomically (temporary file, then rename)."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.name}.{socket.gethostname()}.{os.getpid()}.tmp")  # unique across machines
    tmp.write_text(json.dumps(finite(result), indent=1))
    tmp.replace(file)


@contextlib.contextmanager
def locked(file: Path) -> Iterator[None]:
    """An exclusive lock on ``<file>.lock`` (:class:`filelock.FileLock`), so that several processes, on one
    machine or on several sharing a file system, can merge into one file.

    On Unix ``FileLock`` is ``flock(2)`` on the lock file: safe on local disks, on NFS where locking works
    (NFSv4, or NFSv3 with the lock daemons; Linux emulates ``flock`` by NFS byte-range locks) and on Lustre
    mounted with ``-o flock``. It does *not* exclude other machines on NFS mounted ``nolock`` or
    ``local_lock=flock|all``, nor on Lustre mounted ``-o localflock``: there the lock is per machine. Where
    ``flock`` is not implemented at all (``ENOSYS``), filelock falls back to ``SoftFileLock`` (a lock file
    created with ``O_EXCL``) with a warning (older filelock versions raise instead)."""
    import filelock

    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(file.with_name(file.name + ".lock"))):
        yield

"""Where a number came from: profile, hardware, date, git commit, samlab version.

Every notebook prints :func:`line` under its first figure-producing cell, and every
result file of :mod:`samlab.experiments` stores :func:`record`.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

from samlab import hardware, profiles

__all__ = ["git_commit", "job", "line", "record"]


def git_commit() -> str:
    """The current commit of the samlab checkout (``+dirty`` if modified), or ``"unknown"``.

    Where there is no git checkout (a copy of the working tree sent to a GPU machine by
    ``.ci/gpu-check``), ``$SAMLAB_GIT_COMMIT`` is returned instead, marked as declared."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "samlab"],
            cwd=root, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        declared = os.environ.get("SAMLAB_GIT_COMMIT", "").strip()
        return f"{declared} (declared, no git checkout)" if declared else "unknown"


def record(device: torch.device | str | None = None) -> dict[str, Any]:
    """A dict describing this run's environment, for result files."""
    from samlab import __version__

    return {
        "profile": profiles.active(),
        "hardware": hardware.describe(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "samlab": __version__,
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def job() -> dict[str, Any]:
    """Where a run ran: ``{"id": <submitit job id>, "host": <hostname>}`` inside a submitit job (Slurm or
    local, :mod:`samlab.cluster`), else ``{"host": <hostname>}``."""
    if os.environ.get("SUBMITIT_EXECUTOR"):  # set by submitit in every job it starts
        try:
            import submitit

            env = submitit.JobEnvironment()
            return {"id": str(env.job_id), "host": env.hostname}
        except (ImportError, RuntimeError, KeyError):
            pass
    return {"host": socket.gethostname()}


def line(device: torch.device | str | None = None) -> str:
    """One line for a notebook: ``profile cpu · CPU: x86_64, 2 threads (torch …) · 2026-11-22 · samlab 0.1.0 (abc123)``."""
    r = record(device)
    return f"profile {r['profile']} · {r['hardware']} · {r['date']} · samlab {r['samlab']} ({r['git_commit']})"

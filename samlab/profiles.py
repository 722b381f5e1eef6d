"""Run sizes: ``smoke`` (CI, seconds), ``cpu`` (a laptop, minutes), ``gpu`` (full scale).

Selected by the environment variable ``SAMLAB_PROFILE``; without it, ``gpu`` when a
GPU is present and ``cpu`` otherwise. Notebooks take every size (epochs, dataset, model)
from the profile through :func:`pick`, so CI runs every line of every notebook at the
``smoke`` size.
"""

from __future__ import annotations

import os
from typing import TypeVar

import torch

__all__ = ["PROFILES", "active", "pick"]

PROFILES = ("smoke", "cpu", "gpu")
T = TypeVar("T")


def active() -> str:
    """The active profile: ``$SAMLAB_PROFILE`` or a default chosen from the hardware."""
    name = os.environ.get("SAMLAB_PROFILE", "").strip().lower()
    if not name:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"SAMLAB_PROFILE must be one of {PROFILES}, got {name!r}")
    return name


def pick(*, smoke: T, cpu: T, gpu: T | None = None, profile: str | None = None) -> T:
    """The value for the active (or given) profile; ``gpu`` defaults to ``cpu``'s."""
    profile = profile or active()
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return {"smoke": smoke, "cpu": cpu, "gpu": cpu if gpu is None else gpu}[profile]

"""Where code runs: the default device and a one-line description of the hardware.

Used by every notebook's provenance line and by the experiment runner's result files.
"""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["default_device", "describe"]


def default_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU (``SAMLAB_DEVICE`` overrides)."""
    name = os.environ.get("SAMLAB_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe(device: torch.device | str | None = None) -> str:
    """A short human-readable description, e.g. ``"CPU: x86_64, 2 threads (torch 2.14.1)"``."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        what = f"GPU: {torch.cuda.get_device_name(device)}"
    else:
        what = f"CPU: {platform.machine()}, {torch.get_num_threads()} threads"
    return f"{what} (torch {torch.__version__})"

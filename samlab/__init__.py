"""samlab: why Sharpness-Aware Minimization resists label noise, and what cheaper methods recover.

The library behind the notebooks in ``notebooks/``. One concept per module:

* :mod:`samlab.data`, :mod:`samlab.noise`: datasets as tensors, label noise with its own seed;
* :mod:`samlab.models`: classifiers exposing ``features(x)`` and ``head``;
* :mod:`samlab.methods`: SGD, SAM and its variants behind one ``step`` interface;
* :mod:`samlab.train`: the one training loop, ``fit``;
* :mod:`samlab.profiles`: run sizes (``smoke``, ``cpu``, ``gpu``).

Submodules and the shortcuts below load on first use (``samlab.fit``, ``samlab.data``, ...),
so that ``import samlab.course`` and the other torch-free tools do not import torch.
"""

import importlib
from typing import Any

__all__ = ["FitConfig", "History", "data", "fit", "load", "losses", "methods", "models", "noise", "profiles", "train"]
__version__ = "0.1.0"

_SUBMODULES = ("data", "losses", "methods", "models", "noise", "profiles", "train")
_SHORTCUTS = {"load": "data", "FitConfig": "train", "History": "train", "fit": "train"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"samlab.{name}")
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(f"samlab.{_SHORTCUTS[name]}"), name)
    raise AttributeError(f"module 'samlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

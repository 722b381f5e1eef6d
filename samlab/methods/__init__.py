"""Optimisation methods behind one interface (see :mod:`samlab.methods.base`).

Every module of this package that defines a method registers it, and is imported here,
so adding a method means adding one file. ``samlab.methods.get("sam", rho=0.05)``.
"""

from __future__ import annotations

import importlib
import pkgutil

from samlab.methods.base import Method, StepInfo
from samlab.methods.registry import get, names, register

__all__ = ["Method", "StepInfo", "get", "names", "register"]

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_info.name}")

"""Method names -> classes. A method registers itself with :func:`register`.

``get("sam", rho=0.05)`` builds one; ``names()`` lists them. Taught in notebook 03.
"""

from __future__ import annotations

from typing import Any, TypeVar

from samlab.methods.base import Method

__all__ = ["register", "get", "names"]

_REGISTRY: dict[str, type[Method]] = {}
M = TypeVar("M", bound=type[Method])


def register(cls: M) -> M:
    """Class decorator: make ``cls`` available as ``get(cls.name, ...)``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} must set a non-empty class attribute 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} is already registered by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get(name: str | dict[str, Any], **kwargs: Any) -> Method:
    """Build method ``name`` with hyperparameters ``kwargs``.

    ``name`` may also be a config dict as returned by ``Method.config()``, e.g.
    ``{"method": "sam", "rho": 0.05}``; nested configs (SANER's inner method) are built too.
    """
    if isinstance(name, dict):
        kwargs = {**{k: v for k, v in name.items() if k != "method"}, **kwargs}
        name = name["method"]
    if name not in _REGISTRY:
        raise ValueError(f"method must be one of {names()}, got {name!r}")
    kwargs = {k: get(v) if isinstance(v, dict) and "method" in v else v for k, v in kwargs.items()}
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad hyperparameters for method {name!r}: {exc}") from exc

"""The backend registry: one module per backend, one name per backend, no duplicates."""

from __future__ import annotations

from autotune.backends.base import Artifact, Availability, Backend, CompileOptions
from autotune.errors import InputError

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Register a backend class under its ``name``; a second class with that name is a bug."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"backend {name!r} is already registered by {_REGISTRY[name]!r}")
    _REGISTRY[name] = cls
    return cls


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str) -> Backend:
    try:
        return _REGISTRY[name]()
    except KeyError:
        known = ", ".join(backend_names())
        raise InputError(f"unknown backend {name!r} (known: {known})") from None


# The built-in backends. Importing them is cheap: each imports its runtime lazily.
from autotune.backends import openvino as _openvino  # noqa: E402,F401
from autotune.backends import tvm as _tvm  # noqa: E402,F401

__all__ = ["Artifact", "Availability", "Backend", "CompileOptions", "backend_names",
           "get_backend", "register"]

"""The backend registry: one name per backend class, no duplicates.

Backend modules register themselves here (``@register``); ``autotune.backends`` imports the
built-in ones, so importing any part of the package registers them all.
"""

from __future__ import annotations

from autotune.backends.base import Backend
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
    """The registered backends' names, sorted."""
    return sorted(_REGISTRY)


def get_backend(name: str) -> Backend:
    try:
        return _REGISTRY[name]()
    except KeyError:
        known = ", ".join(backend_names())
        raise InputError(f"unknown backend {name!r} (known: {known})") from None

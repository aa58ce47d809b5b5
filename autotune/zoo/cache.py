"""Where zoo models built at first use are kept, keyed by everything that made their bytes.

A model exported or built here is a cache entry like a quantized model: its file name holds a
hash of the builder's version and of the package versions that shaped it (onnx writes the
file, numpy draws the seeded weights, a weights package supplies real ones), so an upgrade
never silently reuses a file the old versions made.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from autotune.paths import user_cache_dir

CACHE_ENV = "AUTOTUNE_ZOO_CACHE"


def zoo_cache_dir() -> Path:
    """``zoo/`` in the user cache (``autotune.paths.user_cache_dir``), or
    ``$AUTOTUNE_ZOO_CACHE``.

    The folder does not depend on the working directory or on where autotune is installed,
    so every run, test and benchmark of this user shares the built models.
    """
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else user_cache_dir() / "zoo"


def installed_version(distribution: str) -> str:
    """The installed version of a distribution, or ``"missing"``."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "missing"


def cached_model_path(name: str, key: Mapping[str, str]) -> Path:
    """The cache file of zoo model ``name`` made under ``key`` (versions and settings)."""
    text = ";".join(f"{field}={key[field]}" for field in sorted(key))
    digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
    return zoo_cache_dir() / f"{name}-{digest}.onnx"

"""The backends: one module per backend, registered by name (``autotune.backends.registry``)."""

from __future__ import annotations

# The built-in backends register themselves when imported. Importing them is cheap: each
# imports its runtime lazily.
from autotune.backends import openvino as _openvino  # noqa: F401
from autotune.backends import tvm as _tvm  # noqa: F401
from autotune.backends.base import Artifact, Availability, Backend, CompileOptions
from autotune.backends.registry import backend_names, get_backend, register

__all__ = ["Artifact", "Availability", "Backend", "CompileOptions", "backend_names",
           "get_backend", "register"]

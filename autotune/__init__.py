"""autotune: a compiler-based autotuning benchmark suite for model quantization.

The Python API (``autotune.api``: ``open_store``, ``run_benchmark``) is imported on first
use, so ``import autotune`` loads neither pandas nor a compiler.
"""

from autotune.version import __version__ as __version__

_API = ("open_store", "run_benchmark", "ResultStore")


def __getattr__(name: str):
    if name in _API:
        from autotune import api

        return getattr(api, name)
    raise AttributeError(f"module 'autotune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])

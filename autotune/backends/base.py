"""The Backend protocol: what a compiler/runtime must offer to take part in a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autotune.measure import Feeds, Measurement, MeasurementProtocol
from autotune.quantize import QuantizedModel
from autotune.target_spec import Target
from autotune.tomlfile import Table


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run on a target here, and why not when it cannot."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class CompileOptions:
    """How hard a backend may work at compile time, and where it keeps what it learns."""

    tuning_trials: int = 0  # 0: no tuning (the artifact is labelled untuned where it matters)
    cache_dir: Path = Path("results/cache")  # shared caches, e.g. TVM's tuning database


DEFAULT_OPTIONS = CompileOptions()


@dataclass
class Artifact:
    """A compiled model on disk, ready to be loaded and measured."""

    backend: str
    path: Path
    size_bytes: int
    compile_s: float
    details: dict = field(default_factory=dict)


class Backend(Protocol):
    """One compiler/runtime. Implementations import their runtime lazily, inside methods.

    Class attributes: ``name`` (the registry's, the CLI's and the target file's table name);
    ``packages``, the distributions whose versions make this backend's results (recorded with
    every trial); ``worker_packages``, those a ``--runtime`` environment installs for a worker
    to run this backend (and may swap for another version); ``target_needs``, what a target
    file must give for this backend, in words (for the error when it gives no backend's).
    """

    name: str
    packages: tuple[str, ...]
    worker_packages: tuple[str, ...]
    target_needs: str

    def check_target_table(self, table: Table) -> bool:
        """Check this backend's table of a target file (``[name]``, empty when absent): read
        each key with ``table.get`` (which raises InputError naming the file and key); the
        caller then rejects any key left unread. True when the table says enough for this
        backend to compile for the target."""

    def available(self, target: Target) -> Availability:
        """Whether ``target`` can be compiled for and measured here (cheap; no compile)."""

    def versions(self) -> dict[str, str]:
        """The versions of the runtime packages that make this backend's results."""

    def compile(self, model: QuantizedModel, target: Target, workdir: Path,
                options: CompileOptions = DEFAULT_OPTIONS) -> Artifact:
        """Compile ``model`` for ``target`` into ``workdir``; raise UnsupportedConfig when the
        backend cannot express the config."""

    def measure(self, artifact: Artifact, evaluation: Sequence[Feeds], target: Target,
                protocol: MeasurementProtocol) -> Measurement:
        """Load and run ``artifact`` under ``protocol``; outputs of every evaluation input."""

"""The Backend protocol: what a compiler/runtime must offer to take part in a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from autotune.measure import Feeds, Measurement, MeasurementProtocol
from autotune.outcome import Note, ThroughputFacts, TuningFacts
from autotune.quantize import QuantizedModel
from autotune.target_spec import Target
from autotune.tomlfile import Table

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run on a target here, and why not when it cannot."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Requirement:
    """One thing a backend needs on this machine to run on a target, as found here.

    ``autotune doctor`` lists them; a backend's ``available`` is the first one missing.
    """

    what: str  # "C/C++ compiler", "OpenVINO device CPU", "tracker 127.0.0.1:9190 key K"
    ok: bool
    found: str  # what is there (a path, a version), or why it is missing
    fix: str = ""  # a command or package that provides it, when missing

    @property
    def reason(self) -> str:
        """Why a backend is unavailable when this is missing, with the fix."""
        return f"{self.found} ({self.fix})" if self.fix else self.found


def availability_of(requirements: Sequence[Requirement]) -> Availability:
    """Available when every requirement is met; else the first one missing says why."""
    for requirement in requirements:
        if not requirement.ok:
            return Availability(False, requirement.reason)
    return Availability(True)


@dataclass(frozen=True)
class CompileOptions:
    """How hard a backend may work at compile time, and where it keeps what it learns."""

    tuning_trials: int = 0  # 0: no tuning (the artifact is labelled untuned where it matters)
    cache_dir: Path = Path("results/cache")  # shared caches, e.g. TVM's tuning database


DEFAULT_OPTIONS = CompileOptions()


@dataclass
class Artifact:
    """A compiled model on disk, ready to be loaded and measured.

    ``state`` is the backend's own (what its ``measure`` needs: input names, the precision
    hint); ``details`` are facts for display only; what reports and other stages read is
    typed: ``tuning``, and the notes the backend's ``notes`` derives.
    """

    backend: str
    path: Path
    size_bytes: int
    compile_s: float
    state: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    tuning: TuningFacts | None = None

    def to_json(self) -> dict:
        """The artifact's record (it crosses processes: a later pass measures it again)."""
        return {"backend": self.backend, "path": str(self.path), "size_bytes": self.size_bytes,
                "compile_s": self.compile_s, "state": self.state, "details": self.details,
                "tuning": None if self.tuning is None else self.tuning.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> Artifact:
        return cls(backend=data["backend"], path=Path(data["path"]),
                   size_bytes=int(data["size_bytes"]), compile_s=float(data["compile_s"]),
                   # Artifacts kept by a run from before ``state`` kept it in details.
                   state=dict(data.get("state") or data.get("details") or {}),
                   details=dict(data.get("details") or {}),
                   tuning=TuningFacts.from_json(data.get("tuning")))


@dataclass(frozen=True)
class Exported:
    """What a backend wrote into an export folder (``autotune export``): file names inside
    it, the one that ``measure`` loads (the artifact that was measured), and what a program
    of the user's needs to load it (device, runtime settings, input names, compiler target),
    as the manifest shows it."""

    files: tuple[str, ...]
    measured: str
    loader: dict


class Backend(Protocol):
    """One compiler/runtime. Implementations import their runtime lazily, inside methods.

    Class attributes: ``name`` (the registry's, the CLI's and the target file's table name);
    ``packages``, the distributions whose versions make this backend's results (recorded with
    every trial); ``worker_packages``, every distribution a worker imports to run this backend
    (its ``packages`` and what they need at run time but do not declare), which a
    ``--runtime`` environment installs, pinned as here unless a spec swaps one;
    ``target_needs``, what a target file must give for this backend, in words (for the error
    when it gives no backend's).
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

    def requirements(self, target: Target) -> list[Requirement]:
        """What compiling for and measuring on ``target`` needs here (runtime package,
        compiler, device, tracker), each checked (cheap; no compile; a tracker is asked with
        a short timeout). A target without this backend's table needs nothing more."""

    def available(self, target: Target) -> Availability:
        """Whether ``target`` can be compiled for and measured here: the first of its
        ``requirements`` that is missing says why not. Backends subclass this protocol to
        inherit it."""
        return availability_of(self.requirements(target))

    def versions(self) -> dict[str, str]:
        """The versions of the runtime packages that make this backend's results."""

    def runtime_companions(self, swapped: Mapping[str, SpecifierSet]) -> list[str]:
        """Requirements for those of this backend's ``worker_packages`` that must change
        with the packages a ``--runtime`` spec swaps (``swapped``: canonical name -> the
        spec's version specifier); the others stay pinned as installed here. Raise
        InputError when the companion cannot be told. None must change, unless a backend
        says so."""
        return []

    def compile(self, model: QuantizedModel, target: Target, workdir: Path,
                options: CompileOptions = DEFAULT_OPTIONS) -> Artifact:
        """Compile ``model`` for ``target`` into ``workdir``; raise UnsupportedConfig when the
        backend cannot express the config."""

    def measure(self, artifact: Artifact, evaluation: Sequence[Feeds], target: Target,
                protocol: MeasurementProtocol) -> Measurement:
        """Load and run ``artifact`` under ``protocol``; outputs of every evaluation input."""

    def measure_throughput(self, model: QuantizedModel, artifact: Artifact,
                           evaluation: Sequence[Feeds], target: Target,
                           protocol: MeasurementProtocol, batches: Sequence[int],
                           workdir: Path, options: CompileOptions = DEFAULT_OPTIONS
                           ) -> ThroughputFacts:
        """Inferences per second at each batch size (``autotune.throughput``), with the
        runtime kept as busy as it can be: ``artifact`` as measured, or ``model`` rebuilt
        for the batch in ``workdir``. A backend without a throughput mode says so."""
        return ThroughputFacts(error=f"{self.name} has no throughput mode")

    def export(self, artifact: Artifact, model: QuantizedModel, target: Target,
               folder: Path) -> Exported:
        """Write what deploys ``artifact`` (compiled from ``model`` for ``target``) into
        ``folder``: the measured artifact itself, and the backend's portable form of the
        model where it has one; the quantized ONNX is written by the caller."""

    def notes(self, artifact: Artifact) -> tuple[Note, ...]:
        """What a user should know about a trial of ``artifact`` (float fallback, untuned,
        layers left in float), in words reports show as they are. Pure: derived from the
        artifact's ``details`` and ``tuning``, so trials stored before notes existed get
        theirs from their stored details too."""

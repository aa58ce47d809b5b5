"""The typed facts of a trial's outcome, as they cross the worker boundary and reach the store.

A worker hands back one ``WorkerOutcome``; the driver turns it into a ``Trial`` field by
field; the store keeps the typed facts in one JSON column and reads them back as these
records. Nothing here imports a runtime: every record is plain data with ``to_json`` and
``from_json``, as MetaSchedule's ``RunnerResult`` and optuna's ``FrozenTrial`` are.

``details`` dicts that remain (on an artifact, a measurement, a trial) are for display only:
no module reads a key out of them to decide anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# What a trial can end as. ``ok`` is the only success; ``unavailable`` means it was never
# tried (the target or backend could not be reached), so it costs no budget and teaches a
# cost model nothing; the others are failures of the config on that backend and target.
UNAVAILABLE = "unavailable"
FAILURE_STATUSES = ("compile_error", "runtime_error", "timeout", "oom", "unsupported")
STATUSES = ("ok", *FAILURE_STATUSES, UNAVAILABLE)

# The roles of a note: a flag every report shows next to the trial; a cause, shown only as the
# reason when a quantized config is not faster than fp32; information for the trial's details.
FLAG, CAUSE, INFO = "flag", "cause", "info"
NOTE_ROLES = (FLAG, CAUSE, INFO)
# The note kinds other stages act on: a quantized config whose layers (some or all) were
# computed in float, whatever the backend's words for it (a fallback, a layer left in float);
# a trial whose judged pass was measured under contention (``autotune.machine_state``).
FLOAT_FALLBACK = "float_fallback"
CONTENDED = "contended"


@dataclass(frozen=True)
class Note:
    """What a backend says about one trial, in words a user reads (reports show ``text``
    without knowing which backend wrote it). ``kind`` is a stable tag for CSV and JSON."""

    kind: str
    text: str
    role: str = FLAG

    def __post_init__(self) -> None:
        if self.role not in NOTE_ROLES:
            raise ValueError(f"unknown note role {self.role!r} (known: {NOTE_ROLES})")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Note:
        return cls(**data)


@dataclass(frozen=True)
class TuningFacts:
    """What a tuning compiler did for one artifact (MetaSchedule for TVM)."""

    trials_requested: int
    trials_run: int = 0
    tuning_s: float = 0.0
    records_applied: int = 0

    @property
    def tuned(self) -> bool:
        return self.records_applied > 0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TuningFacts | None:
        return None if data is None else cls(**_known(cls, data))


@dataclass(frozen=True)
class DeviceFacts:
    """A remote device's description of itself (``autotune.device_info`` over RPC)."""

    served_by: str = ""
    machine: str = ""
    cpu_model: str = ""
    cores: int = 0
    emulated: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    emulator: str = ""  # the device's own words for how it is emulated ("" on real hardware)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DeviceFacts | None:
        if data is None:
            return None
        known = _known(cls, data)
        said = known.get("emulated")  # the device answers "" or its emulator, e.g. "qemu-..."
        if isinstance(said, str):
            known.setdefault("emulator", said)
        known["emulated"] = bool(said)
        known["cores"] = int(known.get("cores") or 0)
        return cls(**known)


@dataclass(frozen=True)
class MachineState:
    """The machine during one measurement's timed window (``autotune.machine_state``): as the
    process that timed it saw it, on a remote device the device's. None: not readable there.

    Shares are fractions of the window's wall time times ``cpus`` (the CPUs the measuring
    process may run on); ``load_1m`` and ``freq_mhz`` are the machine's as the kernel says.
    """

    wall_s: float
    cpus: int
    other_share: float | None = None  # other processes' CPU time on those CPUs
    steal_share: float | None = None  # time the hypervisor gave those vCPUs to other guests
    own_share: float | None = None  # the measuring process's own CPU time
    load_1m: float | None = None  # one-minute load average, at the window's end
    freq_mhz: float | None = None  # mean current frequency of those CPUs
    # The reference kernel (autotune.canary) around the window: its slower reading in ms, and
    # that over the fastest reading on those CPUs (1.0: as fast as ever seen here).
    canary_ms: float | None = None
    canary_ratio: float | None = None

    def summary(self) -> str:
        """The figures in words, e.g. ``other processes used 34% of 2 cores, steal 2%``."""
        parts = []
        if self.other_share is not None:
            parts.append(f"other processes used {self.other_share:.0%} of "
                         f"{self.cpus} core{'s' if self.cpus != 1 else ''}")
        if self.steal_share is not None:
            parts.append(f"steal {self.steal_share:.0%}")
        if self.load_1m is not None:
            parts.append(f"load {self.load_1m:.2f}")
        if self.freq_mhz is not None:
            parts.append(f"{self.freq_mhz:.0f} MHz")
        if self.canary_ratio is not None:
            parts.append(f"reference kernel {self.canary_ratio:.2f}x its fastest")
        return ", ".join(parts) or "machine state unknown"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> MachineState | None:
        return None if not data else cls(**_known(cls, data))


@dataclass(frozen=True)
class PassRecord:
    """One measurement pass of a trial: its median and sample count, or why it failed; the
    machine's state during its timed window, and whether the run judged it contended
    (``autotune.machine_state.ContentionLimits``) after ``remeasured`` fresh measurements."""

    median_ms: float | None = None
    spread: float | None = None
    samples: int = 0
    status: str = "ok"
    error: str = ""
    machine: MachineState | None = None
    contended: bool = False
    remeasured: int = 0  # measured again this many times (noise or contention) before kept

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.median_ms is not None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PassRecord:
        known = _known(cls, data)
        known["machine"] = MachineState.from_json(known.get("machine"))
        return cls(**known)


@dataclass(frozen=True)
class RooflinePlacement:
    """Where a trial sits against its target's roofline (``autotune.roofline``).

    ``ops`` and ``bytes`` are always known for a successful trial; the bound and its parts
    only where the target has peaks (measured or from its TOML). The memory time is
    cache-aware: each layer at the bandwidth of the level its working set fits in
    (``layer_levels``); ``memory_level`` is the level with the most memory time.
    """

    ops: int
    bytes: int
    precision: str
    bound_ms: float | None = None
    compute_ms: float | None = None
    memory_ms: float | None = None
    bound: str = ""  # "compute" or "memory"
    peaks_source: str = ""
    peaks_measured_at: str = ""
    peak_gops: dict[str, float] = field(default_factory=dict)
    memory_bandwidth_gbs: float | None = None
    attained_fraction: float | None = None  # bound / latency: above 1, a peak is too low
    memory_level: str = ""  # "L1", "L2", "L3" or "DRAM"
    memory_ms_by_level: dict[str, float] = field(default_factory=dict)
    layer_levels: dict[str, str] = field(default_factory=dict)  # layer name -> its level
    level_bandwidth_gbs: dict[str, float] = field(default_factory=dict)  # the level roofs
    estimated_levels: list[str] = field(default_factory=list)  # roofs not measured

    @property
    def intensity(self) -> float:
        """Operations per byte moved."""
        return self.ops / self.bytes if self.bytes else 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RooflinePlacement | None:
        if not data:
            return None
        known = _known(cls, data)
        for name in ("peak_gops", "memory_ms_by_level", "layer_levels", "level_bandwidth_gbs"):
            if not isinstance(known.get(name), dict):
                known.pop(name, None)
        return cls(**known)


@dataclass(frozen=True)
class Sensitivity:
    """Per-layer accuracy drop of a sensitivity scan (``autotune.sensitivity``)."""

    metric: str
    drops: dict[str, float]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Sensitivity | None:
        if not data:
            return None
        return cls(str(data.get("metric", "")),
                   {str(k): float(v) for k, v in dict(data.get("drops", {})).items()})


@dataclass(frozen=True)
class CompileFacts:
    """What the quantize and compile stages of a worker found."""

    compile_s: float
    artifact_size_bytes: int
    quantize_s: float | None = None
    compile_memory_bytes: int | None = None
    tuning: TuningFacts | None = None
    notes: tuple[Note, ...] = ()
    details: dict = field(default_factory=dict)
    # Calibration samples the config's quantizer read (0: none, a float or RTN weight-only).
    calibration_samples: int = 0
    # Activations clipped by the quantized model's ranges (found after quantizing).
    saturation: Saturation | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["tuning"] = None if self.tuning is None else self.tuning.to_json()
        data["notes"] = [note.to_json() for note in self.notes]
        data["saturation"] = None if self.saturation is None else self.saturation.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CompileFacts | None:
        if data is None:
            return None
        known = _known(cls, data)
        known["tuning"] = TuningFacts.from_json(known.get("tuning"))
        known["notes"] = tuple(Note.from_json(note) for note in known.get("notes", ()))
        known["saturation"] = Saturation.from_json(known.get("saturation"))
        return cls(**known)


@dataclass(frozen=True)
class MeasureFacts:
    """What the measure stage of a worker found (outputs travel apart, as arrays)."""

    load_s: float
    first_inference_ms: float
    latencies_ms: tuple[float, ...]
    peak_memory_bytes: int | None = None
    memory_bytes: int | None = None
    device: DeviceFacts | None = None
    machine: MachineState | None = None  # during the timed window
    details: dict = field(default_factory=dict)
    # ``first_inference_ms`` was a warm run (see ``Measurement.first_inference_warm``).
    first_inference_warm: bool = False
    # The CPUs of this host the worker was pinned to while timing (local targets only).
    core_set: tuple[int, ...] = ()

    def to_json(self) -> dict:
        data = asdict(self)
        data["latencies_ms"] = list(self.latencies_ms)
        data["core_set"] = list(self.core_set)
        data["device"] = None if self.device is None else self.device.to_json()
        data["machine"] = None if self.machine is None else self.machine.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> MeasureFacts | None:
        if data is None:
            return None
        known = _known(cls, data)
        known["latencies_ms"] = tuple(float(v) for v in known["latencies_ms"])
        known["core_set"] = tuple(int(v) for v in known.get("core_set", ()))
        known["device"] = DeviceFacts.from_json(known.get("device"))
        known["machine"] = MachineState.from_json(known.get("machine"))
        return cls(**known)


class HasStatus:
    """A trial's status, checked on creation (a mixin of ``WorkerOutcome`` and ``Trial``)."""

    status: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown trial status {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class ThroughputPoint:
    """One batch size's throughput, or why it could not be measured (``error``).

    ``batch`` is the batch the model ran at: the one asked for (``requested``), or the
    model's own where its batch dimension is fixed at another size (``note`` says so).
    """

    requested: int
    batch: int
    inferences_per_s: float | None = None
    inferences: int = 0
    wall_s: float = 0.0
    mode: str = ""  # how the runtime was kept busy, in words ("THROUGHPUT hint, 2 streams")
    streams: int | None = None
    requests: int = 1  # infer requests in flight at once
    note: str = ""
    error: str = ""
    machine: MachineState | None = None  # during the timed window

    @property
    def ok(self) -> bool:
        return not self.error and self.inferences_per_s is not None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThroughputPoint:
        known = _known(cls, data)
        known["machine"] = MachineState.from_json(known.get("machine"))
        return cls(**known)


@dataclass(frozen=True)
class ThroughputFacts:
    """A trial's throughput mode (``autotune.throughput``): one point per batch size asked
    for (``--batch``)."""

    points: tuple[ThroughputPoint, ...] = ()
    error: str = ""  # the whole mode failed or does not apply (a remote target)

    @property
    def best(self) -> ThroughputPoint | None:
        """The point with the most inferences per second (the trial's throughput)."""
        ok = [point for point in self.points if point.ok]
        return max(ok, key=lambda point: point.inferences_per_s) if ok else None

    def to_json(self) -> dict:
        return {"points": [point.to_json() for point in self.points], "error": self.error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ThroughputFacts | None:
        if not data:
            return None
        return cls(tuple(ThroughputPoint.from_json(point) for point in data.get("points", ())),
                   str(data.get("error", "")))


# Deployment metrics (the SRE view's M6, M7, M9): saturation rate and per-class accuracy.


@dataclass(frozen=True)
class Saturation:
    """The share of activation values a quantized model's ranges clip on evaluation inputs
    (``autotune.saturation``): overall (``rate``) and per quantized tensor. ``rate`` None:
    not measured, ``note`` says why (weight-only configs, or the error)."""

    rate: float | None = None
    tensors: dict[str, float] = field(default_factory=dict)  # tensor name -> its rate
    samples: int = 0  # evaluation samples counted
    note: str = ""

    @property
    def worst(self) -> tuple[str, float] | None:
        """The tensor clipped most often, with its rate."""
        if not self.tensors:
            return None
        name = max(self.tensors, key=self.tensors.get)
        return name, self.tensors[name]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Saturation | None:
        if not data:
            return None
        known = _known(cls, data)
        known["tensors"] = {str(k): float(v) for k, v in dict(known.get("tensors", {})).items()}
        return cls(**known)


@dataclass(frozen=True)
class ClassAccuracy:
    """Top-1 accuracy per class of the labels, and the class that lost the most against
    fp32's own accuracy on it: an aggregate can hold while one class (cohort) drops."""

    per_class: dict[str, float]
    worst_class: str
    worst_drop: float  # fp32's accuracy on that class minus this trial's (0..1)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ClassAccuracy | None:
        if not data:
            return None
        return cls({str(k): float(v) for k, v in dict(data.get("per_class", {})).items()},
                   str(data.get("worst_class", "")), float(data.get("worst_drop", 0.0)))


@dataclass(frozen=True)
class WorkerOutcome(HasStatus):
    """Everything one isolated worker hands back, as one frozen value.

    ``compiled`` is set once the compile stage finished (also when measuring then failed);
    ``measured`` once measuring finished; ``artifact`` is the compiled artifact's own record
    (``Artifact.to_json``), kept so later passes can measure it again.
    """

    status: str
    error: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    compiled: CompileFacts | None = None
    measured: MeasureFacts | None = None
    artifact: dict | None = None
    # The throughput mode's figures (``autotune.throughput``), measured by the first worker
    # only: a re-measure replaces ``measured`` and keeps these.
    throughput: ThroughputFacts | None = None

    def to_json(self) -> dict:
        return {"status": self.status, "error": self.error, "versions": dict(self.versions),
                "compiled": None if self.compiled is None else self.compiled.to_json(),
                "measured": None if self.measured is None else self.measured.to_json(),
                "artifact": self.artifact,
                "throughput": None if self.throughput is None else self.throughput.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkerOutcome:
        return cls(status=data["status"], error=data.get("error", ""),
                   versions=dict(data.get("versions") or {}),
                   compiled=CompileFacts.from_json(data.get("compiled")),
                   measured=MeasureFacts.from_json(data.get("measured")),
                   artifact=data.get("artifact"),
                   throughput=ThroughputFacts.from_json(data.get("throughput")))


def json_default(value):
    """``json.dumps`` default for numpy scalars and paths, the two odd types facts carry."""
    if hasattr(value, "item"):
        return value.item()
    from pathlib import PurePath

    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__} as JSON")


def _known(cls, data: Mapping[str, Any]) -> dict:
    """The fields of ``cls`` in ``data``: a newer writer's extra keys never break a reader."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}

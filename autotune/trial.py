"""Trial: one model x config x backend x target measurement, successful or not.

Failures are results: a trial always has a status, and the error text when it failed. Every
fact another module reads is a typed field; ``details`` is the backend's own facts for
display (op precisions, packed convolutions, weight compression), read by no module.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field, fields

from autotune.accuracy import fidelity_error
from autotune.config import QuantConfig
from autotune.outcome import (
    FAILURE_STATUSES,
    STATUSES,
    UNAVAILABLE,
    ClassAccuracy,
    DeviceFacts,
    HasStatus,
    Note,
    PassRecord,
    RooflinePlacement,
    Saturation,
    Sensitivity,
    ThroughputFacts,
    TuningFacts,
)

__all__ = ["FAILURE_STATUSES", "STATUSES", "Trial"]

# The typed facts kept in the store's one JSON column (``Trial.facts_json``).
_FACTS = ("quantize_s", "compile_memory_bytes", "tuning", "notes", "device", "passes",
          "spreads", "noisy", "passes_skipped", "roofline", "sensitivity",
          "first_inference_warm", "core_set", "tuning_trials", "artifact_sha256",
          "throughput",
          # Deployment metrics (M6, M7, M9 of the SRE view).
          "saturation", "class_accuracy", "price_per_hour",
          "calibration_samples", "dataset_hash")


@dataclass
class Trial(HasStatus):
    run_id: str
    model: str
    model_hash: str
    config: QuantConfig
    backend: str
    target: str
    status: str
    error: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    cpu_model: str = ""
    cores: int = 0
    emulated: bool = False
    compile_s: float | None = None
    load_s: float | None = None
    first_inference_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    latency_median_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_spread: float | None = None
    peak_memory_bytes: int | None = None
    # Peak RSS of the measuring process above its RSS with the runtime and data loaded: what
    # loading and running the artifact costs (compiling happens in another process image).
    memory_bytes: int | None = None
    artifact_size_bytes: int | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None
    top1_agreement: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None
    details: dict = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    # Typed facts (stored together in one JSON column).
    quantize_s: float | None = None
    # The calibration and evaluation data it was scored on (``Dataset.digest``; "": stored
    # before trials carried it): part of what a trial is compared by, as a score on other
    # data (a zoo split made harder, a user's new .npz) says nothing about a regression.
    dataset_hash: str = ""
    # Calibration samples its quantizer read (the calibration split only; 0: none).
    calibration_samples: int = 0
    compile_memory_bytes: int | None = None
    tuning: TuningFacts | None = None  # set by backends that tune
    notes: tuple[Note, ...] = ()  # the backend's words about this trial
    device: DeviceFacts | None = None  # a remote device's description of itself
    passes: list[PassRecord] = field(default_factory=list)
    spreads: list[float] = field(default_factory=list)  # of each noisy-guard measurement
    noisy: bool = False  # the spread stayed above the limit after every re-measure
    passes_skipped: str = ""  # why a trial got one pass only (emulated devices)
    roofline: RooflinePlacement | None = None
    sensitivity: Sensitivity | None = None
    first_inference_warm: bool = False  # the device could time a warm first run only
    core_set: tuple[int, ...] = ()  # the host CPUs a local trial was pinned to
    # The run's compiler tuning budget (--tuning-trials): part of what a trial is compared
    # by, as a tuned kernel and an untuned one are different programs.
    tuning_trials: int = 0
    # sha256 of the artifact file that was measured: an export re-created from the cached
    # quantized model is checked against it (``autotune.export``).
    artifact_sha256: str = ""
    # The throughput mode's figures (--batch; ``autotune.throughput``); None: not asked for.
    throughput: ThroughputFacts | None = None
    # Deployment metrics. Activations clipped by the quantized ranges (None: no figure).
    saturation: Saturation | None = None
    # Top-1 accuracy per class and the worst class's drop vs fp32 (labelled top1 data only).
    class_accuracy: ClassAccuracy | None = None
    # The target's price in USD per hour (its TOML's ``[cost] price_per_hour``), if given.
    price_per_hour: float | None = None

    @property
    def failed(self) -> bool:
        """Tried and failed (``unavailable`` trials were never tried)."""
        return self.status in FAILURE_STATUSES

    @property
    def attempted(self) -> bool:
        """Whether the config was tried at all (it costs budget; it says something about the
        runtime); an ``unavailable`` trial's target or backend was never reached."""
        return self.status != UNAVAILABLE

    @property
    def backend_unavailable(self) -> bool:
        """The backend could not run at all, so the trial says nothing about the config:
        never attempted, or (a trial stored before workers said ``unavailable`` for it)
        failed on a module missing from the workers' environment: "No module named 'tvm'",
        or nncf's for a weight-only config."""
        return not self.attempted or (self.failed and "No module named '" in self.error
                                      and "No module named 'autotune" not in self.error)

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes a trial unique within a run (and comparable across runs)."""
        return (self.config.id, self.backend, self.target)

    @property
    def pass_medians_ms(self) -> list[float]:
        """The median latency of each successful measurement pass (see RunSettings.passes)."""
        return [entry.median_ms for entry in self.passes if entry.ok]

    @property
    def fastest_pass(self) -> PassRecord | None:
        """The successful pass with the lowest median: the one ``latency_ms`` and ``autotune
        compare`` judge the trial by."""
        ok = [entry for entry in self.passes if entry.ok]
        return min(ok, key=lambda entry: entry.median_ms) if ok else None

    @property
    def contended(self) -> bool:
        """Whether the pass the trial is judged by was measured under contention (other
        processes or a hypervisor took the trial's cores; ``autotune.machine_state``)."""
        fastest = self.fastest_pass
        return fastest is not None and fastest.contended

    @property
    def latency_ms(self) -> float | None:
        """The trial's latency, as every ranking, front, pick and comparison uses it: the
        median of its fastest pass, the latency this machine gives when no neighbour slows
        it (slow spells only ever add time); ``latency_median_ms`` (all passes pooled) for
        trials stored without passes. The pooled median stays a displayed figure."""
        medians = self.pass_medians_ms
        return min(medians) if medians else self.latency_median_ms

    def pass_samples_ms(self) -> list[list[float]]:
        """The samples of each successful pass, in the order measured (``latencies_ms`` holds
        them back to back); one list of every sample where the passes do not say how many."""
        counts = [entry.samples for entry in self.passes if entry.ok]
        if not counts or sum(counts) != len(self.latencies_ms):
            return [list(self.latencies_ms)]
        bounds = [0, *itertools.accumulate(counts)]
        return [list(self.latencies_ms[start:end])
                for start, end in itertools.pairwise(bounds)]

    @property
    def throughput_ips(self) -> float | None:
        """Inferences per second of the throughput mode's best batch size (None without
        one): what ``pick --objective throughput`` and the throughput front maximize."""
        best = None if self.throughput is None else self.throughput.best
        return None if best is None else best.inferences_per_s

    @property
    def saturation_rate(self) -> float | None:
        """The share of activation values clipped (0 for float configs, None: no figure)."""
        return None if self.saturation is None else self.saturation.rate

    @property
    def worst_class_drop(self) -> float | None:
        """The worst class's accuracy drop vs fp32 (0..1), None without labelled classes."""
        return None if self.class_accuracy is None else self.class_accuracy.worst_drop

    @property
    def cost_per_million_usd(self) -> float | None:
        """USD per million inferences at the target's price: one stream, back to back at the
        trial's latency (price per hour / 3600 x latency in s x 1e6)."""
        if self.price_per_hour is None or self.latency_ms is None:
            return None
        return self.price_per_hour / 3600 * self.latency_ms / 1000 * 1e6

    @property
    def fidelity_error(self) -> float | None:
        """1 - cosine of the outputs vs fp32's (``accuracy.fidelity_error``)."""
        return fidelity_error(self.cosine)

    def notes_with(self, role: str) -> list[Note]:
        return [note for note in self.notes if note.role == role]

    def facts_json(self) -> dict:
        """The typed facts as JSON (the store's ``facts_json`` column)."""
        data = {name: getattr(self, name) for name in _FACTS}
        for name in ("tuning", "device", "roofline", "sensitivity", "throughput",
                     "saturation", "class_accuracy"):
            data[name] = None if data[name] is None else data[name].to_json()
        data["notes"] = [note.to_json() for note in self.notes]
        data["passes"] = [entry.to_json() for entry in self.passes]
        data["core_set"] = list(self.core_set)
        return data

    @staticmethod
    def facts_from_json(data: dict) -> dict:
        """Keyword arguments of ``Trial`` from ``facts_json``'s output."""
        return {
            "quantize_s": data.get("quantize_s"),
            "calibration_samples": int(data.get("calibration_samples", 0)),
            "compile_memory_bytes": data.get("compile_memory_bytes"),
            "tuning": TuningFacts.from_json(data.get("tuning")),
            "notes": tuple(Note.from_json(note) for note in data.get("notes", ())),
            "device": DeviceFacts.from_json(data.get("device")),
            "passes": [PassRecord.from_json(entry) for entry in data.get("passes", ())],
            "spreads": [float(value) for value in data.get("spreads", ())],
            "noisy": bool(data.get("noisy", False)),
            "passes_skipped": str(data.get("passes_skipped", "")),
            "roofline": RooflinePlacement.from_json(data.get("roofline")),
            "sensitivity": Sensitivity.from_json(data.get("sensitivity")),
            "first_inference_warm": bool(data.get("first_inference_warm", False)),
            "core_set": tuple(int(cpu) for cpu in data.get("core_set", ())),
            "tuning_trials": data.get("tuning_trials"),  # None: stored before it was kept
            "artifact_sha256": str(data.get("artifact_sha256", "")),
            "throughput": ThroughputFacts.from_json(data.get("throughput")),
            "saturation": Saturation.from_json(data.get("saturation")),
            "class_accuracy": ClassAccuracy.from_json(data.get("class_accuracy")),
            "price_per_hour": data.get("price_per_hour"),
            "dataset_hash": str(data.get("dataset_hash", "")),  # "": stored before it was kept
        }

    def to_dict(self) -> dict:
        # Copies of the plain fields only: ``asdict`` would also deep-copy every fact,
        # to be thrown away (it was most of the cost of storing a trial).
        data = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                if f.name not in _FACTS and f.name != "config"}
        data["config"] = self.config.to_dict()
        data["config_id"] = self.config.id
        data["config_text"] = self.config.text
        data["facts"] = self.facts_json()
        return data

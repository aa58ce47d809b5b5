"""Trial: one model x config x backend x target measurement, successful or not.

Failures are results: a trial always has a status, and the error text when it failed.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

from autotune.config import QuantConfig

STATUSES = ("ok", "compile_error", "runtime_error", "timeout", "oom", "unsupported",
            "unavailable")


@dataclass
class Trial:
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

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown trial status {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes a trial unique within a run (and comparable across runs)."""
        return (self.config.id, self.backend, self.target)

    @property
    def pass_medians_ms(self) -> list[float]:
        """The median latency of each successful measurement pass (see RunSettings.passes)."""
        return [entry["median_ms"] for entry in self.details.get("passes", [])
                if "median_ms" in entry]

    @property
    def steady_latency_ms(self) -> float | None:
        """The median of the fastest pass: the latency this machine gives when no neighbour
        slows it (slow spells only ever add time). What the cost model learns and is scored
        on; ``latency_median_ms`` (all passes pooled) where the passes are not known."""
        medians = self.pass_medians_ms
        return min(medians) if medians else self.latency_median_ms

    def pass_samples_ms(self) -> list[list[float]]:
        """The samples of each successful pass, in the order measured (``latencies_ms`` holds
        them back to back); one list of every sample where the passes do not say how many."""
        counts = [entry["samples"] for entry in self.details.get("passes", [])
                  if "samples" in entry]
        if not counts or sum(counts) != len(self.latencies_ms):
            return [list(self.latencies_ms)]
        bounds = [0, *itertools.accumulate(counts)]
        return [list(self.latencies_ms[start:end])
                for start, end in itertools.pairwise(bounds)]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        data["config_id"] = self.config.id
        data["config_text"] = self.config.text
        return data

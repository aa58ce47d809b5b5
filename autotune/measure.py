"""The measurement protocol shared by every backend, and the statistics of its samples.

Cold start (load, first inference) is recorded apart from the warm samples; warm-up runs are
discarded; then the artifact runs until both a minimum count and a minimum time are reached.
Inputs cycle through the evaluation samples so no cache sees one input repeated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from autotune.canary import judge as judge_canary
from autotune.canary import time_canary
from autotune.machine_state import snapshot, window
from autotune.outcome import DeviceFacts, MachineState

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class MeasurementProtocol:
    warmup_runs: int = 10
    min_repeats: int = 50
    min_time_s: float = 1.0
    # A cap so that a pathologically slow artifact cannot hold the run forever; the count
    # may then stay under min_repeats, which the stored samples show.
    max_time_s: float = 30.0
    # Benchmarks only (``AUTOTUNE_INJECT_SLOWDOWN``, see autotune.worker): busy-wait this
    # fraction of each timed inference's own duration inside its timed region, so the
    # artifact really measures that much slower. 0 in normal use.
    injected_slowdown: float = 0.0

    def __post_init__(self) -> None:
        if not self.injected_slowdown >= 0:
            raise ValueError(f"injected_slowdown must not be negative; got "
                             f"{self.injected_slowdown}")

    def window_done(self, timed: int, elapsed_s: float) -> bool:
        """Whether a timed window of ``timed`` runs over ``elapsed_s`` seconds may stop:
        enough runs and time, or past the cap with at least three runs."""
        return ((timed >= self.min_repeats and elapsed_s >= self.min_time_s)
                or (elapsed_s >= self.max_time_s and timed >= 3))

    def to_dict(self) -> dict:
        data = {"warmup_runs": self.warmup_runs, "min_repeats": self.min_repeats,
                "min_time_s": self.min_time_s, "max_time_s": self.max_time_s}
        if self.injected_slowdown:
            data["injected_slowdown"] = self.injected_slowdown
        return data


@dataclass
class Measurement:
    """What running an artifact gives: timings, and the outputs of every evaluation input."""

    load_s: float
    first_inference_ms: float
    latencies_ms: list[float]
    outputs: list[list[np.ndarray]]
    details: dict = field(default_factory=dict)  # for display only
    device: DeviceFacts | None = None  # set where a remote device measured it
    machine: MachineState | None = None  # during the timed warm runs, where they ran here
    # The "first inference" is a warm run: the device could only time a call after an untimed
    # one (TVM's time evaluator). Reports then never call it cold.
    first_inference_warm: bool = False


class Session:
    """A loaded artifact that runs one set of inputs; backends subclass it."""

    # Whether the timed code runs on this machine, so this machine's state is the one it was
    # measured under; False where a remote device runs and times it.
    runs_here: bool = True

    def set_inputs(self, feeds: Feeds) -> None:
        raise NotImplementedError

    def run(self) -> None:
        """Run on the inputs last set; only this call is timed."""
        raise NotImplementedError

    def outputs(self) -> list[np.ndarray]:
        raise NotImplementedError

    # Whether ``timed_first_run`` timed a warm call; set by a session that cannot time the
    # first call of a freshly loaded artifact.
    first_run_warm: bool = False

    def timed_run(self) -> float:
        """Run once; the latency in ms. A session whose device times itself (a remote device
        through RPC, a GPU) overrides this to report the device's time."""
        start = time.perf_counter()
        self.run()
        return (time.perf_counter() - start) * 1e3

    def timed_first_run(self) -> float:
        """The first run of the freshly loaded artifact, timed (ms): the cold start. A session
        whose ``timed_run`` runs an untimed call first overrides this, or sets
        ``first_run_warm``."""
        return self.timed_run()


def measure_session(load: Callable[[], Session], evaluation: Sequence[Feeds],
                    protocol: MeasurementProtocol) -> Measurement:
    """Load, run once cold, run every evaluation input for its outputs, then time warm runs.

    The machine's state is recorded around the timed warm runs only (``autotune.machine_state``):
    loading and warming up are not what the samples are. Where the timed code runs here, the
    reference kernel (``autotune.canary``) is timed just before and after them."""
    if not evaluation:
        raise ValueError("measurement needs at least one input")
    start = time.perf_counter()
    session = load()
    load_s = time.perf_counter() - start

    session.set_inputs(evaluation[0])
    first_ms = session.timed_first_run()

    outputs = []
    for feeds in evaluation:
        session.set_inputs(feeds)
        session.run()
        outputs.append([np.array(out, copy=True) for out in session.outputs()])

    for index in range(protocol.warmup_runs):
        session.set_inputs(evaluation[index % len(evaluation)])
        session.run()

    samples: list[float] = []
    canary_before = time_canary() if session.runs_here else None
    before = snapshot() if session.runs_here else None
    began = time.perf_counter()
    while not protocol.window_done(len(samples), time.perf_counter() - began):
        session.set_inputs(evaluation[len(samples) % len(evaluation)])
        sample_ms = session.timed_run()
        if protocol.injected_slowdown:
            sample_ms += _spin(sample_ms * protocol.injected_slowdown)
        samples.append(sample_ms)
    machine = None if before is None else window(before, snapshot())
    if machine is not None:  # the slower reading: a slow spell may start or end mid-window
        canary_ms = max(canary_before, time_canary())
        machine = replace(machine, canary_ms=round(canary_ms, 4),
                          canary_ratio=round(judge_canary(canary_ms, before.cpus), 4))
    return Measurement(load_s=load_s, first_inference_ms=first_ms, latencies_ms=samples,
                       outputs=outputs, machine=machine,
                       first_inference_warm=session.first_run_warm)


def _spin(duration_ms: float) -> float:
    """Busy-wait (a core kept busy, as a slower kernel would, not a sleep that frees it)
    for ``duration_ms``; the time actually spent, in ms, which the timed sample includes."""
    start = time.perf_counter()
    end = start + duration_ms / 1e3
    while time.perf_counter() < end:
        pass
    return (time.perf_counter() - start) * 1e3


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    # Robust spread: interquartile range over the median (a ratio, 0.02 = 2%).
    spread: float
    count: int


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latency samples")
    q25, median, q75, p90, p99 = np.percentile(values, [25, 50, 75, 90, 99])
    return LatencyStats(median_ms=float(median), p90_ms=float(p90), p99_ms=float(p99),
                        mean_ms=float(values.mean()), std_ms=float(values.std()),
                        min_ms=float(values.min()), spread=float((q75 - q25) / median),
                        count=int(values.size))

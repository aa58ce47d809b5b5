"""Trial isolation: each trial runs in its own process with a time and a memory limit.

A compiler that segfaults, hangs or eats all memory costs one trial, never the run. The
parent (``run_isolated``) watches the child; the child (``python -m autotune.worker JOB``)
quantizes, compiles and measures, writing its phase to a file first so that a crash can be
attributed to the stage that caused it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from autotune.hostlock import EXCLUSIVE, SHARED, Held, host_lock, times_on_this_host
from autotune.outcome import (
    UNAVAILABLE,
    CompileFacts,
    MeasureFacts,
    Saturation,
    WorkerOutcome,
    json_default,
)
from autotune.outputs import load_outputs, save_outputs
from autotune.paths import import_root

PHASES = ("start", "quantize", "compile", "measure", "done")
_PHASE_STATUS = {"start": "compile_error", "quantize": "compile_error",
                 "compile": "compile_error", "measure": "runtime_error", "done": "runtime_error"}


@dataclass(frozen=True)
class Job:
    """Everything the child needs, as plain data (it is written to a JSON file)."""

    model_path: str
    config: dict
    backend: str
    target_path: str
    dataset_path: str
    cache_dir: str
    protocol: dict
    tuning_trials: int = 0
    # Where the compiled artifact is kept (None: the trial's scratch folder, deleted after it).
    artifact_dir: str | None = None
    # An artifact compiled by an earlier worker (``Artifact.to_json``): measure it again,
    # skipping quantize/compile.
    artifact: dict | None = None
    # The CPUs a local target's worker is pinned to (``autotune.cores.target_cpus``, chosen
    # by the driver before it moved off them); None: chosen by the worker from its own.
    cpus: list[int] | None = None
    # Batch sizes of the throughput mode (``autotune.throughput``; --batch); None: off.
    batches: list[int] | None = None


@dataclass(frozen=True)
class WorkerResult:
    """The outcome a worker handed back (or the one its death made), and its outputs."""

    outcome: WorkerOutcome
    outputs: list[list[np.ndarray]] | None = None

    @property
    def status(self) -> str:
        return self.outcome.status

    @property
    def error(self) -> str:
        return self.outcome.error

    @classmethod
    def failed(cls, status: str, error: str) -> WorkerResult:
        return cls(WorkerOutcome(status, error))


def run_isolated(job: Job, timeout_s: float, memory_limit_bytes: int,
                 poll_s: float = 0.2, python: str | None = None,
                 env: Mapping[str, str] | None = None) -> WorkerResult:
    """Run ``job`` in a child process (``python``: another runtime's interpreter; ``env``:
    environment variables set for it alone); never raises for anything the child does."""
    with _child(job.__dict__, [], timeout_s, memory_limit_bytes, poll_s, python,
                env) as (scratch_path, failure):
        if failure is not None:
            return WorkerResult.failed(*failure)
        outcome = WorkerOutcome.from_json(json.loads((scratch_path / "result.json").read_text()))
        outputs = None
        if (scratch_path / "outputs.npz").exists():
            outputs = load_outputs(scratch_path / "outputs.npz")
        return WorkerResult(outcome, outputs)


@dataclass(frozen=True)
class RooflineJob:
    """The roofline micro-benchmarks of one target (``autotune.roofline.measure_peaks``)."""

    target_path: str
    backend: str
    min_time_s: float
    matmul_size: int = 1024
    copy_bytes: int = 256 << 20


def run_roofline_isolated(job: RooflineJob, timeout_s: float,
                          memory_limit_bytes: int) -> tuple[dict | None, str]:
    """Run the micro-benchmarks in a child process pinned and threaded as a trial's worker
    is: (``PeakMeasurement.to_json()``, "") or (None, why it failed)."""
    with _child(job.__dict__, ["--roofline"], timeout_s, memory_limit_bytes, 0.2, None,
                None) as (scratch_path, failure):
        if failure is not None:
            return None, failure[1]
        result = json.loads((scratch_path / "result.json").read_text())
        return result.get("found"), result.get("error", "")


@contextmanager
def _child(job: dict, mode: list[str], timeout_s: float, memory_limit_bytes: int,
           poll_s: float, python: str | None, env: Mapping[str, str] | None):
    """Run ``python -m autotune.worker [MODE] JOB`` watched for time and memory; yields its
    scratch folder and (status, error) when it died or left no ``result.json``."""
    with tempfile.TemporaryDirectory(prefix="autotune-trial-") as scratch:
        scratch_path = Path(scratch)
        job_path = scratch_path / "job.json"
        job_path.write_text(json.dumps(job))
        log_path = scratch_path / "worker.log"
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                [python or sys.executable, "-m", "autotune.worker", *mode, str(job_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=child_env(env),
            )
            _IN_FLIGHT.add(child)
            try:
                killed_for = _watch(child, timeout_s, memory_limit_bytes, poll_s,
                                    scratch_path / WAITING_FLAG)
            except BaseException:
                _kill(child)  # Ctrl-C or SIGTERM in the run: the trial in flight dies with it
                raise
            finally:
                _IN_FLIGHT.discard(child)
        phase = _read(scratch_path / "phase") or "start"
        if killed_for == "timeout":
            yield scratch_path, ("timeout", f"no result after {timeout_s:g} s (in {phase}); "
                                            "worker killed")
        elif killed_for == "oom":
            yield scratch_path, ("oom", f"worker exceeded the memory limit of "
                                        f"{memory_limit_bytes / 2**20:.0f} MiB (in {phase}); "
                                        "killed")
        elif child.returncode != 0 or not (scratch_path / "result.json").exists():
            yield scratch_path, (_PHASE_STATUS[phase],
                                 _death_message(child.returncode, phase, _tail(log_path)))
        else:
            yield scratch_path, None


# Workers running now, from any thread (autotune.scheduling measures targets in parallel).
_IN_FLIGHT: set[subprocess.Popen] = set()


def kill_in_flight() -> None:
    """Kill every worker in flight (an interrupted run with several targets measuring)."""
    for child in list(_IN_FLIGHT):
        _kill(child)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: this process's, ``extra`` on top, and what makes the
    child import this autotune and die with its parent."""
    env = {**os.environ, **(extra or {})}
    # The child must import the same autotune as the parent, wherever the parent was started.
    root = str(import_root())
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[PARENT_ENV] = str(os.getpid())
    return env


# A file in the trial's scratch folder that exists while the worker waits for the host lock
# (autotune.hostlock): waiting for another target's compile or timing is not the trial's
# time, so the watchdog's clock stops meanwhile.
WAITING_FLAG = "waiting-for-host-lock"


def _watch(child: subprocess.Popen, timeout_s: float, memory_limit_bytes: int,
           poll_s: float, waiting_flag: Path) -> str | None:
    import psutil

    deadline = time.monotonic() + timeout_s
    try:
        process = psutil.Process(child.pid)
    except psutil.NoSuchProcess:
        process = None
    last = time.monotonic()
    while child.poll() is None:
        now = time.monotonic()
        if waiting_flag.exists():
            deadline += now - last
        last = now
        if now > deadline:
            _kill(child)
            return "timeout"
        if process is not None and tree_rss(process) > memory_limit_bytes:
            _kill(child)
            return "oom"
        time.sleep(poll_s)
    return None


def tree_rss(process) -> int:
    """Resident memory of ``process`` and all its descendants, in bytes (0 once gone)."""
    import psutil

    try:
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return 0


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def _death_message(returncode: int, phase: str, log_tail: str) -> str:
    if returncode < 0:
        try:
            cause = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            cause = f"killed by signal {-returncode}"
    else:
        cause = f"exited with code {returncode} and no result"
    message = f"worker {cause} during {phase}"
    return f"{message}: {log_tail}" if log_tail else message


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


# The child side.


def _rss_bytes(field: str) -> int:
    """VmRSS or VmHWM (peak) of this process, from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _child_main(job_path: Path) -> int:
    """Quantize, compile and measure, each stage in a fresh process image.

    The child re-executes itself between stages (``os.execv`` keeps the pid the parent
    watches, and resets the peak-RSS counter), so the memory of a measurement is what loading
    and running the artifact costs, never what the quantizer or the compiler needed. State
    passes between stages through ``state.json`` in the trial's scratch folder.
    """
    scratch = job_path.parent
    phase_path = scratch / "phase"
    state_path = scratch / "state.json"

    def enter(phase: str) -> None:
        phase_path.write_text(phase)

    def locked(why: str):
        return host_lock(SHARED, why, scratch / WAITING_FLAG)

    _die_with_parent()
    job = Job(**json.loads(job_path.read_text()))
    from autotune.backends import get_backend
    from autotune.backends.base import Artifact, CompileOptions
    from autotune.config import QuantConfig
    from autotune.data import Dataset
    from autotune.errors import UnsupportedConfig
    from autotune.measure import MeasurementProtocol
    from autotune.quantize import QuantizedModel, quantize
    from autotune.runtimes import package_versions
    from autotune.target import load_target

    config = QuantConfig.from_dict(job.config)
    target = _on_cpus(load_target(job.target_path), job.cpus)
    backend = get_backend(job.backend)
    if state_path.exists():
        state = json.loads(state_path.read_text())
    else:
        enter("start")
        _pin(target, job.cpus)
        state = {"stage": "quantize"}
        if job.artifact is not None:
            state = {"stage": "measure", "artifact": job.artifact}
    # Before the memory baselines, so a trial's memory is the model's, not the runtime's.
    missing = _load_runtime(target, backend)
    # Versions first: a failed trial must record the runtime it failed on, too.
    versions = {**package_versions(), **backend.versions()}
    fault = _injected_fault(config.id)
    status, error = "ok", ""
    compiled = CompileFacts.from_json(state.get("compiled"))
    measured = None
    throughput = None
    phase = state["stage"]
    try:
        if missing is not None:
            raise _Unavailable(missing)
        if phase == "quantize":
            enter("quantize")
            _maybe_fault(fault, "quantize")
            dataset = Dataset.load(Path(job.dataset_path))
            with locked("quantize") as held:
                start = time.perf_counter()
                model = quantize(Path(job.model_path), config, dataset.calibration,
                                 Path(job.cache_dir))
                state["quantize_s"] = time.perf_counter() - start
                state["saturation"] = _saturation(config, job, model, dataset).to_json()
            state["host_lock_wait_s"] = held.waited_s
            state["model"] = model.to_json()
            _next_stage(job_path, state, "compile", reexec=model.fresh)
        if phase == "compile" or state["stage"] == "compile":
            enter(phase := "compile")
            model = QuantizedModel.from_json(state["model"], config)
            rss_before = _rss_bytes("VmRSS")
            workdir = Path(job.artifact_dir) if job.artifact_dir else scratch / "artifact"
            workdir.mkdir(parents=True, exist_ok=True)
            _maybe_fault(fault, "compile")
            with locked("compile") as held:
                artifact = backend.compile(model, target, workdir, CompileOptions(
                    tuning_trials=job.tuning_trials, cache_dir=Path(job.cache_dir)))
            state["host_lock_wait_s"] = state.get("host_lock_wait_s", 0.0) + held.waited_s
            compiled = CompileFacts(
                compile_s=artifact.compile_s, artifact_size_bytes=artifact.size_bytes,
                quantize_s=state.get("quantize_s"),
                calibration_samples=state["model"].get("calibration_samples", 0),
                compile_memory_bytes=max(0, _rss_bytes("VmHWM") - rss_before),
                tuning=artifact.tuning, notes=backend.notes(artifact), details=artifact.details,
                saturation=Saturation.from_json(state.get("saturation")))
            state["compiled"] = compiled.to_json()
            state["artifact"] = artifact.to_json()  # a later pass measures it again
            _next_stage(job_path, state, "measure", reexec=True)
        enter(phase := "measure")
        artifact = Artifact.from_json(state["artifact"])
        dataset = Dataset.load(Path(job.dataset_path))
        rss_before = _rss_bytes("VmRSS")
        _maybe_fault(fault, "measure")
        protocol = _with_injected_slowdown(MeasurementProtocol(**job.protocol))
        with _timing_lock(target, scratch / WAITING_FLAG) as held:
            measurement = backend.measure(artifact, dataset.evaluation, target, protocol)
        peak = _rss_bytes("VmHWM")
        waited_s = state.get("host_lock_wait_s", 0.0) + held.waited_s
        measured = MeasureFacts(
            load_s=measurement.load_s, first_inference_ms=measurement.first_inference_ms,
            latencies_ms=tuple(measurement.latencies_ms), peak_memory_bytes=peak,
            memory_bytes=max(0, peak - rss_before), device=measurement.device,
            machine=measurement.machine,
            details={**measurement.details, "host_lock_wait_s": round(waited_s, 3)},
            first_inference_warm=measurement.first_inference_warm,
            core_set=_core_set(target))
        if compiled is not None and measurement.details:
            # What the device found at measurement (a device-compiled artifact's op
            # precisions) can change what the backend has to say about the trial.
            seen = replace(artifact, details={**artifact.details, **measurement.details})
            compiled = replace(compiled, notes=backend.notes(seen))
        save_outputs(scratch / "outputs.npz", measurement.outputs)
        if job.batches and "model" in state:  # the first worker of a trial, not a re-measure
            throughput = _throughput(backend, config, state, artifact, dataset, target,
                                     protocol, job, scratch)
    except UnsupportedConfig as exc:
        status, error = "unsupported", str(exc)
    except _Unavailable as exc:
        status, error = UNAVAILABLE, str(exc)
    except ModuleNotFoundError as exc:
        if (exc.name or "autotune").split(".")[0] == "autotune":
            status, error = "runtime_error" if phase == "measure" else "compile_error", \
                _describe(exc)
        else:  # a module this interpreter's environment lacks: no verdict on the backend
            status, error = UNAVAILABLE, f"{_describe(exc)}, in the workers' environment " \
                                         f"{sys.prefix}"
    except MemoryError:
        status, error = "oom", f"MemoryError during {phase}"
    except Exception as exc:  # noqa: BLE001 - any backend failure is this trial's result
        status = "runtime_error" if phase == "measure" else "compile_error"
        error = _describe(exc)
    enter("done")
    outcome = WorkerOutcome(status, error, versions, compiled,
                            measured if status == "ok" else None, state.get("artifact"),
                            throughput if status == "ok" else None)
    (scratch / "result.json").write_text(json.dumps(outcome.to_json(), default=json_default))
    return 0


def _throughput(backend, config, state: dict, artifact, dataset, target, protocol, job: Job,
                scratch: Path):
    """The throughput mode's figures, after the latency samples and their peak memory,
    under the same timing lock and pinning; a failure is its error, never the trial's."""
    from autotune.backends.base import CompileOptions
    from autotune.outcome import ThroughputFacts
    from autotune.quantize import QuantizedModel

    model = QuantizedModel.from_json(state["model"], config)
    try:
        with _timing_lock(target, scratch / WAITING_FLAG):
            return backend.measure_throughput(
                model, artifact, dataset.evaluation, target, protocol, job.batches,
                scratch / "throughput", CompileOptions(tuning_trials=job.tuning_trials,
                                                       cache_dir=Path(job.cache_dir)))
    except Exception as exc:  # noqa: BLE001 - the mode failed; the latency figures stand
        return ThroughputFacts(error=_describe(exc))


def _saturation(config, job: Job, model, dataset) -> Saturation:
    """The quantized model's saturation rate on the evaluation inputs (cached by its hash,
    as the quantized model is); a failure is its note, never the trial's."""
    from autotune.saturation import saturation_of

    try:
        return saturation_of(config, Path(job.model_path), model.path, dataset.evaluation,
                             Path(job.cache_dir))
    except Exception as exc:  # noqa: BLE001 - the figure is missing; the trial stands
        return Saturation(note=f"not measured: {_describe(exc)}")


class _Unavailable(Exception):
    """The backend cannot run in this interpreter at all (its runtime is not installed)."""


def _load_runtime(target, backend) -> str | None:
    """Size the runtimes' thread pools to the target (they read these variables when first
    imported, TVM's included), then load the backend's runtime (its ``requirements`` import
    it). Returns why the backend cannot run here when one of its own packages is missing (a
    ``--runtime`` environment without it), else None: the rest a trial finds out itself."""
    if target.is_local:
        for name in ("TVM_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(target.threads)
    for requirement in backend.requirements(target):
        if not requirement.ok and requirement.what in backend.packages:
            return f"{requirement.found}, in the workers' environment {sys.prefix}"
    return None


def _on_cpus(target, cpus: list[int] | None):
    """``target`` with its core count set to the CPUs the driver chose for it, where it chose
    any: a re-executed worker is already pinned, and counting its own affinity again (as
    ``cores = 0`` and ``spare_cores`` do) would give a smaller set."""
    if not cpus or not target.is_local:
        return target
    return replace(target, cores=len(cpus), cpu_list=tuple(cpus))


def _pin(target, cpus: list[int] | None) -> None:
    """Pin the worker to the target's core set (``cpus``, or chosen here when the job names
    none), so every config measured on the target gets the same cores (inherited across
    re-executions). Remote targets' workers stay where the driver runs."""
    if target.is_local and hasattr(os, "sched_setaffinity"):
        from autotune.cores import allowed_cpus, pin_process, target_cpus

        pin_process(cpus if cpus else target_cpus(target, allowed_cpus()))


def _core_set(target) -> tuple[int, ...]:
    """The CPUs this worker measured on (a local target's; a remote device's are its own)."""
    if not target.is_local or not hasattr(os, "sched_getaffinity"):
        return ()
    return tuple(sorted(os.sched_getaffinity(0)))


def _timing_lock(target, waiting_flag: Path | None = None):
    """The host lock a measurement (load, warm-up and timed runs) holds: exclusive where it
    times on this host's cores; none for a device elsewhere, whose timing nothing here
    disturbs."""
    if times_on_this_host(target):
        return host_lock(EXCLUSIVE, f"time on {target.name}", waiting_flag)
    return nullcontext(Held("none"))


# Inputs a serving worker cycles through: enough that no cache sees one input repeated, few
# enough that a round does not spend its time computing outputs nobody reads.
SERVE_INPUTS = 16


def _serve_main(job_path: Path) -> int:
    """Measure ``job.artifact`` once per ``measure`` line on stdin, one JSON line each.

    The long-lived worker of paired measurement (autotune.paired): loaded once, it answers
    each round with ``{"status": "ok", "latencies_ms": [...]}`` or the round's error, until
    stdin closes. Each round loads the artifact afresh (``Backend.measure``), pinned and
    threaded as a trial's worker is. The reply goes to the original stdout; anything a runtime
    prints goes to stderr (the log), so it cannot corrupt a reply.
    """
    _die_with_parent()
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    job = Job(**json.loads(job_path.read_text()))
    from autotune.backends import get_backend
    from autotune.backends.base import Artifact
    from autotune.data import Dataset
    from autotune.measure import MeasurementProtocol
    from autotune.target import load_target

    target = _on_cpus(load_target(job.target_path), job.cpus)
    backend = get_backend(job.backend)
    _pin(target, job.cpus)
    _load_runtime(target, backend)
    artifact = Artifact.from_json(job.artifact)
    evaluation = Dataset.load(Path(job.dataset_path)).evaluation[:SERVE_INPUTS]
    protocol = _with_injected_slowdown(MeasurementProtocol(**job.protocol))
    for line in sys.stdin:
        if line.strip() != "measure":
            break
        try:
            with _timing_lock(target):
                measurement = backend.measure(artifact, evaluation, target, protocol)
            reply = {"status": "ok", "latencies_ms": list(measurement.latencies_ms)}
        except Exception as exc:  # noqa: BLE001 - a failed round is the comparison's result
            reply = {"status": "runtime_error", "error": _describe(exc)}
        replies.write(json.dumps(reply) + "\n")
    return 0


def _roofline_main(job_path: Path) -> int:
    """Time the roofline micro-benchmarks of ``RooflineJob`` (pinned and threaded as a
    trial's worker is, so the peaks are the ones trials can reach); writes ``result.json``."""
    _die_with_parent()
    job = RooflineJob(**json.loads(job_path.read_text()))
    from autotune.backends import get_backend
    from autotune.roofline import measure_peaks
    from autotune.target import load_target

    target = load_target(job.target_path)
    backend = get_backend(job.backend)
    (job_path.parent / "phase").write_text("measure")
    _pin(target, None)
    _load_runtime(target, backend)
    try:
        # Timing, like a trial's: nothing else of autotune's runs on these cores meanwhile.
        with (_timing_lock(target, job_path.parent / WAITING_FLAG),
              tempfile.TemporaryDirectory(prefix="autotune-roofline-") as workdir):
            found = measure_peaks(target, job.backend, Path(workdir), job.matmul_size,
                                  job.copy_bytes, job.min_time_s)
        result = {"found": found.to_json()}
    except Exception as exc:  # noqa: BLE001 - the command reports it as the target's result
        result = {"found": None, "error": _describe(exc)}
    (job_path.parent / "result.json").write_text(json.dumps(result, default=json_default))
    return 0


def _next_stage(job_path: Path, state: dict, stage: str, reexec: bool) -> None:
    """Record the next stage; re-execute this worker for it (same pid, fresh memory)."""
    state["stage"] = stage
    (job_path.parent / "state.json").write_text(json.dumps(state, default=json_default))
    if reexec:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "autotune.worker", str(job_path)])


FAULT_ENV = "AUTOTUNE_INJECT_FAULT"
FAULTS = ("segfault", "hang", "oom", "raise", "exit")
# Slowdown injection for the regression benchmarks (benchmarks/false_positives.py): a fraction,
# e.g. ``0.10``, of each timed inference's own duration that the worker busy-waits inside the
# timed region, so the real artifact measures that much slower. Unset in normal use.
SLOWDOWN_ENV = "AUTOTUNE_INJECT_SLOWDOWN"
PARENT_ENV = "AUTOTUNE_WORKER_PARENT"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Make this worker die with the run that started it, even when the run is SIGKILLed.

    The worker runs in its own session (so the watchdog can kill its whole group), which also
    keeps it out of a killed run's process group: without this, an orphan would keep a core
    busy, skew the next run's timings, or hang forever. Linux's parent-death signal survives
    the stage re-executions; elsewhere a thread polls the parent pid.
    """
    parent = int(os.environ.get(PARENT_ENV) or 0)
    if not parent:
        return  # started by hand, not by run_isolated
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError):
        import threading

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    if os.getppid() != parent:  # the run died before the signal was armed
        os._exit(1)


def _injected_fault(config_id: str) -> tuple[str, str] | None:
    """Fault injection for the reliability tests: ``KIND@PHASE[:CONFIG_ID[,CONFIG_ID...]]``.

    KIND is one of FAULTS, PHASE one of quantize/compile/measure. Several specs may be joined
    by ``;`` (the soak benchmark injects several kinds in one run); the first spec that names
    this config (or names none) applies. Unset in normal use.
    """
    for spec in filter(None, (part.strip() for part in os.environ.get(FAULT_ENV, "").split(";"))):
        where, _, ids = spec.partition(":")
        kind, _, phase = where.partition("@")
        if kind not in FAULTS or phase not in ("quantize", "compile", "measure"):
            raise ValueError(f"{FAULT_ENV}={spec!r}: expected KIND@PHASE[:CONFIG_IDS] with KIND "
                             f"in {FAULTS}")
        if not ids or config_id in ids.split(","):
            return kind, phase
    return None


def _with_injected_slowdown(protocol):
    """``protocol`` with the slowdown ``AUTOTUNE_INJECT_SLOWDOWN`` asks for (if set)."""
    text = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not text:
        return protocol
    try:
        fraction = float(text)
    except ValueError:
        raise ValueError(f"{SLOWDOWN_ENV}={text!r}: expected a fraction such as 0.10") from None
    if not fraction >= 0:
        raise ValueError(f"{SLOWDOWN_ENV}={text!r}: must not be negative")
    return replace(protocol, injected_slowdown=fraction)


def _maybe_fault(fault: tuple[str, str] | None, phase: str) -> None:
    if fault is None or fault[1] != phase:
        return
    kind = fault[0]
    if kind == "segfault":
        import ctypes

        ctypes.string_at(0)  # a real invalid read: the kernel sends SIGSEGV
    elif kind == "hang":
        while True:
            time.sleep(1)
    elif kind == "oom":
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
            hog[-1][::4096] = b"x" * len(hog[-1][::4096])  # touch every page
    elif kind == "raise":
        raise RuntimeError(f"injected failure in {phase}")
    elif kind == "exit":
        os._exit(3)


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = str(exc).strip()
    if len(text) > 2000:
        text = text[:2000] + " ..."
    return f"{type(exc).__name__}: {text}{where}"


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        sys.exit(_serve_main(Path(sys.argv[2])))
    if sys.argv[1] == "--roofline":
        sys.exit(_roofline_main(Path(sys.argv[2])))
    sys.exit(_child_main(Path(sys.argv[1])))

"""The search driver: one benchmark run, from model and space to stored trials and a report.

It resolves nothing by name (the CLI does); it takes objects, asks the strategy what to
measure, runs each trial in an isolated worker, scores it against the fp32 reference and
commits it to the store at once.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from autotune.accuracy import (
    accuracy_drop,
    fidelity_error,
    first_outputs,
    onnxruntime_outputs,
    per_class_accuracy,
    quality,
    task_score,
    worst_class,
)
from autotune.backends import get_backend
from autotune.cores import allowed_cpus, driver_kept_off, target_cpus
from autotune.data import Dataset
from autotune.errors import InputError
from autotune.host import host_info
from autotune.hostlock import SHARED, host_lock
from autotune.machine_state import CONTENTION_LIMITS, ContentionLimits
from autotune.measure import MeasurementProtocol, latency_stats
from autotune.outcome import (
    CONTENDED,
    FLAG,
    ClassAccuracy,
    MeasureFacts,
    Note,
    PassRecord,
    WorkerOutcome,
)
from autotune.outputs import RECORDED_COUNT, recorded_outputs_path, save_outputs
from autotune.progress import TrialProgress, pass_result
from autotune.quantize import file_hash, sha256_file
from autotune.roofline import attach_roofline
from autotune.runtimes import versions_for
from autotune.scheduling import per_target
from autotune.search import Candidate, CandidateSpace, SearchStrategy
from autotune.sensitivity import attach_sensitivity, expand_mixed
from autotune.settings import RunSpec
from autotune.space import SearchSpace
from autotune.store import Run, Store, new_run_id, now
from autotune.target import Target
from autotune.trial import Trial
from autotune.worker import Job, WorkerResult, run_isolated
from autotune.zoo import ModelSource

log = logging.getLogger("autotune")


@dataclass
class RunSettings:
    """Everything that shapes a run besides the model, space and targets."""

    backends: tuple[str, ...]
    budget: int | None = None
    trial_timeout_s: float = 600.0
    memory_limit_bytes: int = 8 << 30
    tuning_trials: int = 0
    protocol: MeasurementProtocol = field(default_factory=MeasurementProtocol)
    workspace: Path = Path("results")
    progress: bool = True
    python: str | None = None  # the workers' interpreter (``--runtime``); None: this one
    # Flaky-measurement guard: a trial whose latency spread (IQR / median) exceeds this is
    # measured again in a fresh worker, up to ``remeasures`` times. Off (0) here, so callers
    # that study variability (benchmarks/repeatability.py) see every pass; `autotune run`
    # turns it on (--max-spread, 0.10).
    max_spread: float = 0.0
    remeasures: int = 2
    # Contention guard: a trial whose timed window saw other processes (or the hypervisor)
    # take more of its cores than these limits is measured again in a fresh worker, within
    # the same ``remeasures``, then flagged if it stays so (``autotune.machine_state``). A
    # limit of 0 turns its check off.
    contention: ContentionLimits = CONTENTION_LIMITS
    # Measurement passes per trial. Passes after the first re-measure every successful trial's
    # artifact in a fresh worker, in a shuffled order, once all trials are done: a burst on a
    # shared machine lasts seconds to minutes, so it hits one pass of a trial, not all of
    # them. The trial's latency is the median of all passes' samples pooled; `autotune
    # compare` judges its fastest pass, and the spread of the fastest pass medians is the
    # run-to-run noise it must see before calling a change.
    passes: int = 1
    # Batch sizes of the throughput mode (--batch; ``autotune.throughput``); (): off.
    batches: tuple[int, ...] = ()

    @classmethod
    def from_spec(cls, spec: RunSpec, workspace: Path, progress: bool = False,
                  python: str | None = None) -> RunSettings:
        """The settings a run asked for (``RunSpec``, with ``autotune run``'s defaults) as
        the driver takes them (no backends named: every registered one); ``workspace`` holds
        run data and caches."""
        from autotune.backends import backend_names

        return cls(
            backends=tuple(spec.backends or backend_names()), budget=spec.budget,
            trial_timeout_s=spec.timeout_s,
            memory_limit_bytes=(default_memory_limit_bytes() if spec.trial_memory_mib is None
                                else spec.trial_memory_mib << 20),
            tuning_trials=spec.tuning_trials,
            protocol=MeasurementProtocol(min_repeats=spec.min_repeats,
                                         min_time_s=spec.min_time_s),
            workspace=workspace, progress=progress, python=python,
            max_spread=spec.max_spread, passes=spec.passes,
            contention=ContentionLimits(spec.max_other_cpu, spec.max_steal,
                                        spec.max_canary_slowdown),
            batches=tuple(spec.batches))


def default_memory_limit_bytes() -> int:
    """A trial worker's memory limit when none is given: 60% of RAM, at most 8 GiB."""
    import psutil

    return min(int(psutil.virtual_memory().total * 0.6), 8 << 30)


@dataclass
class RunOutcome:
    run_id: str
    trials: list[Trial]
    interrupted: bool = False
    in_flight: str | None = None  # the trial an interruption dropped (it runs again on resume)

    @property
    def succeeded(self) -> int:
        return sum(trial.ok for trial in self.trials)


def start_run(store: Store, model: ModelSource, space: SearchSpace, targets: Sequence[Target],
              settings: RunSettings, strategy: SearchStrategy | None,
              spec: RunSpec | None = None, campaign: str | None = None) -> str:
    """Create the run record and its data files; returns the run id.

    ``spec`` is what the run was asked to do, stored with it (``--resume`` reads it back);
    callers that build ``settings`` themselves (benchmarks) may leave it out. ``campaign``:
    the run file invocation the run is a cell of."""
    run_id = new_run_id()
    reference = reference_outputs(model.path, model.dataset)  # a bad model leaves no files
    run_dir = settings.workspace / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    model.dataset.save(run_dir / "dataset.npz")
    np.save(run_dir / "reference.npy", reference)
    # The fp32 model's own score on the task metric: every config's drop is measured from it.
    reference_accuracy = task_score(reference, model.dataset.labels, model.dataset.metric,
                                    reference)
    store.create_run(Run(
        id=run_id, created_at=now(), finished_at=None, status="running", model=model.name,
        model_path=str(model.path), model_hash=file_hash(model.path), space=space.name,
        metric=model.dataset.metric, synthetic_data=model.dataset.synthetic,
        reference_accuracy=reference_accuracy, host=host_info(),
        settings=spec if spec is not None else _spec_of(model, space, targets, settings),
        versions=versions_for(settings.python), campaign=campaign))
    from autotune.transfer import remember_profile

    # The cost model learns from this run's trials later, with or without the model file.
    remember_profile(store, file_hash(model.path), model.name, model.path)
    return run_id


def _spec_of(model: ModelSource, space: SearchSpace, targets: Sequence[Target],
             settings: RunSettings) -> RunSpec:
    """The stored settings of a run started from objects rather than flags."""
    return RunSpec(model=model.name, space=space.name,
                   targets=tuple(target.name for target in targets),
                   backends=tuple(settings.backends), budget=settings.budget,
                   trial_timeout_s=settings.trial_timeout_s,
                   tuning_trials=settings.tuning_trials,
                   min_repeats=settings.protocol.min_repeats,
                   min_time_s=settings.protocol.min_time_s, max_spread=settings.max_spread,
                   max_other_cpu=settings.contention.other_share,
                   max_steal=settings.contention.steal_share,
                   max_canary_slowdown=settings.contention.canary_slowdown,
                   passes=settings.passes, batches=tuple(settings.batches))


def execute_run(store: Store, run_id: str, space: SearchSpace, targets: Sequence[Target],
                settings: RunSettings, strategy: SearchStrategy) -> RunOutcome:
    """Measure the run's remaining trials; finished trials (from an earlier attempt) are kept."""
    run = store.get_run(run_id)
    run_dir = settings.workspace / "runs" / run_id
    dataset = Dataset.load(run_dir / "dataset.npz")
    reference = np.load(run_dir / "reference.npy")
    # Each local target's CPUs, chosen before the driver moves off them (autotune.cores).
    allowed = allowed_cpus()
    core_sets = {target.name: target_cpus(target, allowed) for target in targets
                 if target.is_local}
    # Mixed-precision configs exist once the model is known (a sensitivity scan ranks layers).
    try:
        with host_lock(SHARED, "scan layer sensitivity"):  # heavy host work: no one times
            expanded = expand_mixed(space, Path(run.model_path), dataset,
                                    settings.workspace / "cache")
    except KeyboardInterrupt:  # during the scan: nothing measured yet, the run resumes
        store.set_run_status(run_id, "interrupted")
        return RunOutcome(run_id, store.trials(run_id), interrupted=True)
    space = expanded.space
    history = store.trials(run_id)
    candidates, unavailable = space_candidates(space, targets, settings.backends)
    for candidate, reason in unavailable:
        if candidate.key not in {trial.key for trial in history}:
            trial = _base_trial(run, candidate, dataset, "unavailable", reason)
            store.add_trial(trial)
            history.append(trial)

    measured = sum(trial.attempted for trial in history)
    budget_left = (settings.budget if settings.budget is not None else len(candidates)) - measured
    store.set_run_status(run_id, "running")
    planned = candidates.unmeasured_count(history)
    _note_search(store, run_id, space_size=len(candidates))
    total = min(planned, max(budget_left, 0))
    progress = TrialProgress(total, settings.progress)
    interrupted, in_flight = False, set()
    gone: dict[tuple[str, str], str] = {}  # (target, backend) that stopped answering: why

    def measure(candidate: Candidate) -> Trial:
        progress.started(f"{candidate.config.label} on {candidate.backend}/"
                         f"{candidate.target.name}")
        return _measure_unless_gone(run, candidate, dataset, reference, settings, run_dir, gone,
                                    core_sets.get(candidate.target.name))

    # The driver keeps off the cores that local targets time on, where any are left over.
    with driver_kept_off({cpu for cpus in core_sets.values() for cpu in cpus}):
        try:
            while budget_left > 0:
                batch = strategy.propose(candidates, history, budget_left)
                if not batch:
                    _note_stop(store, run_id, strategy, progress)
                    break
                # Several targets measure at once, each one trial at a time
                # (autotune.scheduling); autotune.hostlock keeps their timing apart.
                with closing(per_target(batch[:budget_left], measure, in_flight)) as results:
                    for candidate, trial in results:
                        attach_roofline(trial, Path(run.model_path), candidate.target, store)
                        attach_sensitivity(trial, expanded.scans)
                        store.add_trial(trial)
                        in_flight.discard(candidate)
                        history.append(trial)
                        if trial.attempted:  # a target gone mid-run measured nothing
                            budget_left -= 1
                        progress.finished(trial, counted=trial.attempted)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            progress.close()
        if not interrupted and settings.passes > 1:
            try:
                measure_passes(store, run, targets, settings, run_dir, core_sets)
            except KeyboardInterrupt:
                interrupted = True
    store.set_run_status(run_id, "interrupted" if interrupted else "finished",
                         finished=not interrupted)
    trials = store.trials(run_id)
    _note_search(store, run_id, measured=sum(trial.attempted for trial in trials))
    stored = {trial.key for trial in trials}
    dropped = [f"{c.config.label} ({c.config.id}) on {c.backend}/{c.target.name}"
               for c in in_flight if c.key not in stored]
    return RunOutcome(run_id, trials, interrupted, ", ".join(dropped) or None)


def _note_stop(store: Store, run_id: str, strategy: SearchStrategy,
               progress: TrialProgress) -> None:
    """Say why a strategy stopped before the budget, when it knows (guided search's
    ``converged``), in the progress output and in the run's record (its report shows it)."""
    converged = getattr(strategy, "converged", None)
    if converged is not None:
        progress.note(converged.text())
        log.info("%s", converged.text())
        _note_search(store, run_id, converged=converged)


def _note_search(store: Store, run_id: str, **facts) -> None:
    """Add ``facts`` to what the run's record says of its search (its report shows them):
    the space's size and how much of it was measured, and why the search stopped."""
    store.set_run_search(run_id, replace(store.get_run(run_id).search, **facts))


def _measure_unless_gone(run: Run, candidate: Candidate, dataset: Dataset,
                         reference: np.ndarray, settings: RunSettings, run_dir: Path,
                         gone: dict[tuple[str, str], str],
                         cpus: tuple[int, ...] | None = None) -> Trial:
    """Measure ``candidate``, unless its remote target stopped answering earlier in the run.

    A remote trial that fails is followed by a reachability check: a device that went away
    marks its remaining trials ``unavailable`` with the reason; the other targets go on.
    """
    where = (candidate.target.name, candidate.backend)
    if where in gone:
        return _base_trial(run, candidate, dataset, "unavailable",
                           f"target stopped answering during the run: {gone[where]}")
    trial = run_trial(run, candidate, dataset, reference, settings, run_dir, cpus)
    if not trial.ok and trial.status != "unsupported" and not candidate.target.is_local:
        availability = get_backend(candidate.backend).available(candidate.target)
        if not availability.ok:
            gone[where] = availability.reason
            trial.error = f"{trial.error} (target unreachable: {availability.reason})"
    return trial


def run_trial(run: Run, candidate: Candidate, dataset: Dataset, reference: np.ndarray,
              settings: RunSettings, run_dir: Path, cpus: tuple[int, ...] | None = None) -> Trial:
    """Measure one candidate in an isolated worker (pinned to ``cpus`` where the target is
    local) and score it."""
    started = now()
    job = _job(run, candidate.config, candidate.backend, candidate.target, settings, run_dir,
               cpus)
    result = run_isolated(job, settings.trial_timeout_s, settings.memory_limit_bytes,
                          python=settings.python)
    result, spreads, remeasured = _remeasure_if_disturbed(job, result, settings)
    trial = _base_trial(run, candidate, dataset, result.status, result.error)
    trial.started_at = started
    outcome = result.outcome
    trial.versions = {**run.versions, **outcome.versions}
    if outcome.compiled is not None:
        compiled = outcome.compiled
        trial.compile_s = compiled.compile_s
        trial.artifact_size_bytes = compiled.artifact_size_bytes
        trial.quantize_s = compiled.quantize_s
        trial.calibration_samples = compiled.calibration_samples
        trial.compile_memory_bytes = compiled.compile_memory_bytes
        trial.tuning = compiled.tuning
        trial.notes = compiled.notes
        trial.details = dict(compiled.details)
        trial.saturation = compiled.saturation
    measured = outcome.measured
    if measured is not None:
        trial.load_s = measured.load_s
        trial.first_inference_ms = measured.first_inference_ms
        trial.first_inference_warm = measured.first_inference_warm
        trial.core_set = measured.core_set
        trial.peak_memory_bytes = measured.peak_memory_bytes
        trial.memory_bytes = measured.memory_bytes
        trial.details = {**trial.details, **measured.details}
        if measured.device is not None:
            # A remote device describes itself: its CPU, and whether it is emulated, in which
            # case the latency is not the device's and is never compared with one.
            trial.device = measured.device
            trial.emulated = trial.emulated or measured.device.emulated
            trial.cpu_model = measured.device.cpu_model or trial.cpu_model
    if trial.emulated and (settings.passes > 1 or settings.max_spread > 0):
        trial.passes_skipped = EMULATED_PASSES
    if len(spreads) > 1:
        trial.spreads = spreads  # one per measurement pass; the last one is kept
    if spreads and spreads[-1] > settings.max_spread:
        trial.noisy = True
    if trial.ok:
        _add_pass(trial, measured, settings.contention, remeasured)
        if outcome.artifact is not None:  # kept for the later passes (and their resume)
            (Path(job.artifact_dir) / "artifact.json").write_text(json.dumps(outcome.artifact))
            trial.artifact_sha256 = sha256_file(Path(outcome.artifact["path"]))
        trial.throughput = outcome.throughput
        if result.outputs:
            _record_outputs(result.outputs, run_dir, trial)
        try:
            _score(trial, first_outputs(result.outputs), reference, dataset, run)
        except ValueError as error:
            trial.status, trial.error = "runtime_error", f"outputs cannot be scored: {error}"
    trial.finished_at = now()
    return trial


def _record_outputs(outputs: list[list[np.ndarray]], run_dir: Path, trial: Trial) -> None:
    """Keep the outputs of the first evaluation inputs: what an export of this trial must
    still give (``autotune verify``)."""
    path = recorded_outputs_path(run_dir, trial.config.id, trial.backend, trial.target)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_outputs(path, outputs[:RECORDED_COUNT])


def _emulated(outcome: WorkerOutcome) -> bool:
    device = outcome.measured.device if outcome.measured is not None else None
    return device is not None and device.emulated


EMULATED_PASSES = ("emulated: measured in one pass, never re-measured (its latency is not the "
                   "device's)")


def _remeasure_if_disturbed(job: Job, result: WorkerResult,
                            settings: RunSettings) -> tuple[WorkerResult, list[float], int]:
    """Measure a trial again, in a fresh worker, while its samples are too spread out or its
    timed window was contended, at most ``settings.remeasures`` times.

    A neighbour's burst or a frequency change during one pass widens the spread or takes the
    trial's cores; another pass usually comes out clean, and comparing two runs needs clean
    samples. Returns the last successful pass (a failed re-measure keeps the pass before it),
    every pass's spread (when the spread guard is on) and how many times it measured again.
    """
    spreads: list[float] = []
    remeasured = 0
    while result.status == "ok" and not _emulated(result.outcome):
        measured = result.outcome.measured
        if settings.max_spread > 0:
            spreads.append(latency_stats(measured.latencies_ms).spread)
        noisy = bool(spreads) and spreads[-1] > settings.max_spread
        contended = settings.contention.exceeded(measured.machine)
        if not (noisy or contended) or remeasured >= settings.remeasures:
            break
        if noisy:
            log.info("spread %.1f%% above %.1f%%: measuring again in a fresh worker",
                     spreads[-1] * 100, settings.max_spread * 100)
        if contended:
            log.info("measured under contention (%s): measuring again in a fresh worker",
                     measured.machine.summary())
        remeasured += 1
        again = run_isolated(replace(job, artifact=result.outcome.artifact),
                             settings.trial_timeout_s, settings.memory_limit_bytes,
                             python=settings.python)
        if again.status != "ok":
            break
        # A measure-only pass: the compile facts are the first pass's.
        result = replace(again, outcome=replace(result.outcome,
                                                measured=again.outcome.measured))
    return result, spreads, remeasured


def _job(run: Run, config, backend: str, target: Target, settings: RunSettings,
         run_dir: Path, cpus: tuple[int, ...] | None = None) -> Job:
    return Job(model_path=run.model_path, config=config.to_dict(), backend=backend,
               target_path=str(target.path), dataset_path=str(run_dir / "dataset.npz"),
               cache_dir=str(settings.workspace / "cache"), protocol=settings.protocol.to_dict(),
               tuning_trials=settings.tuning_trials,
               artifact_dir=str(run_dir / "artifacts" / f"{config.id}-{backend}-{target.name}"),
               cpus=list(cpus) if cpus else None,
               batches=list(settings.batches) or None)


def _add_pass(trial: Trial, measured: MeasureFacts, limits: ContentionLimits,
              remeasured: int = 0) -> None:
    """Add one pass's samples to the trial's; its figures are those of all passes' samples.
    The pass keeps the machine's state during it and whether ``limits`` call it contended."""
    latencies_ms = list(measured.latencies_ms)
    stats = latency_stats(latencies_ms)
    trial.passes.append(PassRecord(median_ms=stats.median_ms, spread=stats.spread,
                                   samples=len(latencies_ms), machine=measured.machine,
                                   contended=limits.exceeded(measured.machine),
                                   remeasured=remeasured))
    trial.latencies_ms = [*trial.latencies_ms, *latencies_ms]
    pooled = latency_stats(trial.latencies_ms)
    trial.latency_median_ms = pooled.median_ms
    trial.latency_p90_ms = pooled.p90_ms
    trial.latency_p99_ms = pooled.p99_ms
    trial.latency_spread = pooled.spread
    _note_contention(trial)


def _note_contention(trial: Trial) -> None:
    """Flag the trial while the pass it is judged by (its fastest) was contended, in figures;
    a later, cleaner fastest pass lifts the flag."""
    notes = tuple(note for note in trial.notes if note.kind != CONTENDED)
    fastest = trial.fastest_pass
    if fastest is not None and fastest.contended:
        again = (f" (still so after {fastest.remeasured} re-measure"
                 f"{'s' if fastest.remeasured != 1 else ''})" if fastest.remeasured else "")
        notes += (Note(CONTENDED, f"measured under contention{again}: "
                                  f"{fastest.machine.summary()}; its latency may be the "
                                  f"machine's, not the config's", FLAG),)
    trial.notes = notes


def measure_passes(store: Store, run: Run, targets: Sequence[Target], settings: RunSettings,
                   run_dir: Path, core_sets: dict[str, tuple[int, ...]] | None = None) -> None:
    """Passes 2..N: every successful trial's artifact measured again in a fresh worker.

    Each pass visits the trials in its own seeded shuffle, so a trial's passes land at
    different times and next to different neighbours. A failed pass is recorded on the trial
    (a flaky runtime is a finding) and not retried. Resumable: a trial's passes are stored.
    """
    by_name = {target.name: target for target in targets}
    for number in range(2, settings.passes + 1):
        due = [trial for trial in store.trials(run.id)
               if _pass_due(trial, number) and trial.target in by_name]
        random.Random(f"{run.id}/{number}").shuffle(due)
        progress = TrialProgress(len(due), settings.progress, f"pass {number}/{settings.passes}")
        try:
            for trial in due:
                progress.started(f"{trial.config.label} on {trial.backend}/{trial.target}")
                job = _job(run, trial.config, trial.backend, by_name[trial.target], settings,
                           run_dir, (core_sets or {}).get(trial.target))
                _measure_pass(trial, job, settings)
                store.update_trial(trial)
                progress.finished(trial, result=pass_result(trial))
        finally:
            progress.close()
    if not any(_pass_due(trial, settings.passes) for trial in store.trials(run.id)):
        shutil.rmtree(run_dir / "artifacts", ignore_errors=True)


def _pass_due(trial: Trial, number: int) -> bool:
    """Whether ``trial`` still lacks its pass ``number``. Emulated trials get one pass: their
    latency is not the device's, so its run-to-run noise is not worth minutes of emulation
    (``Trial.passes_skipped`` says so), and are not re-measured when noisy either."""
    if not trial.ok or not trial.passes:  # runs from before passes: none
        return False
    return not trial.emulated and len(trial.passes) < number


def measure_artifact_pass(trial: Trial, job: Job, settings: RunSettings) -> WorkerResult:
    """One pass of a compiled artifact (``job.artifact``) in a fresh worker, measured again
    while disturbed as a trial's first pass is, and added to ``trial``'s passes (a failed
    pass is recorded as such). ``autotune verify`` measures an export this way."""
    result = run_isolated(job, settings.trial_timeout_s, settings.memory_limit_bytes,
                          python=settings.python)
    result, _, remeasured = _remeasure_if_disturbed(job, result, settings)
    if result.status == "ok":
        _add_pass(trial, result.outcome.measured, settings.contention, remeasured)
        trial.memory_bytes = result.outcome.measured.memory_bytes
        trial.peak_memory_bytes = result.outcome.measured.peak_memory_bytes
    else:
        trial.passes.append(PassRecord(status=result.status, error=result.error[:500]))
    return result


def _measure_pass(trial: Trial, job: Job, settings: RunSettings) -> None:
    artifact_file = Path(job.artifact_dir) / "artifact.json"
    if artifact_file.exists():
        result = run_isolated(replace(job, artifact=json.loads(artifact_file.read_text())),
                              settings.trial_timeout_s, settings.memory_limit_bytes,
                              python=settings.python)
    else:
        result = WorkerResult.failed("runtime_error", f"artifact gone: {artifact_file}")
    if result.status == "ok":
        _add_pass(trial, result.outcome.measured, settings.contention)
    else:
        trial.passes.append(PassRecord(status=result.status, error=result.error[:500]))


def _score(trial: Trial, outputs: np.ndarray, reference: np.ndarray, dataset: Dataset,
           run: Run) -> None:
    scores = quality(outputs, reference, dataset.labels, dataset.metric)
    trial.accuracy = scores.accuracy
    trial.top1_agreement = scores.top1_agreement
    trial.sqnr_db = scores.sqnr_db
    trial.cosine = scores.cosine
    if scores.accuracy is not None and run.reference_accuracy is not None:
        trial.accuracy_drop = accuracy_drop(run.reference_accuracy, scores.accuracy,
                                            dataset.metric)
    else:
        # Without labels, quality is fidelity: the drop is how far outputs are from fp32's.
        trial.accuracy_drop = fidelity_error(scores.cosine)
    trial.class_accuracy = class_accuracy(outputs, reference, dataset)


def class_accuracy(outputs: np.ndarray, reference: np.ndarray,
                   dataset: Dataset) -> ClassAccuracy | None:
    """Per-class top-1 accuracy and the worst class's drop vs the fp32 ``reference``
    outputs; None unless the data is labelled classes (metric top1)."""
    if dataset.metric != "top1" or dataset.labels is None:
        return None
    per_class = per_class_accuracy(outputs, dataset.labels)
    label, drop = worst_class(per_class, per_class_accuracy(reference, dataset.labels))
    return ClassAccuracy(per_class, label, drop)


def _base_trial(run: Run, candidate: Candidate, dataset: Dataset, status: str,
                error: str) -> Trial:
    return Trial(run_id=run.id, model=run.model, model_hash=run.model_hash,
                 dataset_hash=dataset.digest(),
                 config=candidate.config, backend=candidate.backend,
                 target=candidate.target.name, status=status, error=error,
                 versions=dict(run.versions), cpu_model=run.host.get("cpu_model", ""),
                 cores=candidate.target.threads, emulated=candidate.target.emulated,
                 tuning_trials=run.settings.tuning_trials, started_at=now(), finished_at=now(),
                 price_per_hour=candidate.target.price_per_hour)


def space_candidates(space: SearchSpace, targets: Sequence[Target],
                     backends: Sequence[str]) -> tuple[CandidateSpace, list]:
    """The (config, backend, target) candidates of a space, fp32 first (a lazy sequence:
    a per-layer space is never listed), and those whose backend cannot reach their target,
    with the reason: of a per-layer space, its uniform configs only (one trial each says
    the target is out of reach; 10^5 would say nothing more)."""
    reachable, unavailable = [], []
    # A target or backend named twice (``--target a --target a``) is one set of candidates.
    for target in {target.name: target for target in targets}.values():
        for name in dict.fromkeys(backends):
            availability = get_backend(name).available(target)
            configs = space.backend_space(name)
            if availability.ok:
                reachable.append((name, target, configs))
            else:
                unavailable += [(Candidate(config, name, target), availability.reason)
                                for config in getattr(configs, "uniform", configs)]
    return CandidateSpace(reachable), unavailable


def reference_outputs(model_path: Path, dataset: Dataset) -> np.ndarray:
    """fp32 outputs of the original model: what fidelity is measured against."""
    try:
        return onnxruntime_outputs(model_path, dataset.evaluation)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise InputError(f"{model_path}: onnxruntime cannot run the fp32 model to make the "
                         f"reference outputs: {first_line}") from None

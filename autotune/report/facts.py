"""The facts of one run, gathered once: every renderer (Markdown, HTML, CSV, PNG) reads them.

Fronts, picks and regressions come from the pure functions of ``pareto`` and ``regress``;
baselines, speedups and flags are judged here, once. Gathering may read the store
(``gather_from_store``); rendering never does. Nothing here knows which backend wrote a
trial: what a backend wants said arrives as its ``Trial.notes``.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autotune.changepoints import RunChanges, points_of, run_changes
from autotune.config import FP32, QuantConfig
from autotune.drift import DriftItem, frontier_drift
from autotune.gate import previous_comparable_run, run_series
from autotune.outcome import CAUSE, FLAG
from autotune.pareto import frontier, latency_accuracy_front, pick, throughput_front
from autotune.regress import Thresholds, compare_trials, version_changes
from autotune.store import Prediction, Run, Store
from autotune.trial import STATUSES, Trial

DEFAULT_MAX_DROP = 0.01  # one percentage point
LATENCY_MEANING = ("latency = the median of the fastest measurement pass (it ranks, picks "
                   "and draws the frontier); median and p90 pool every pass")


@dataclass(frozen=True)
class TrialFacts:
    """One trial with what the report judged of it."""

    trial: Trial
    speedup: float | None  # fp32 latency / this latency, same backend and target
    flags: tuple[str, ...]  # what a user should know at a glance, with reasons
    on_front: bool = False  # on the (latency, accuracy drop, memory) frontier
    # This throughput / fp32's (same backend and target, Trial.throughput_ips): the
    # throughput mode's twin of ``speedup``; None where either has no throughput figure.
    throughput_vs_fp32: float | None = None


@dataclass(frozen=True)
class Recommendation:
    """The pick at the default accuracy limit, or the nearest misses when none qualifies."""

    max_accuracy_drop: float
    chosen: TrialFacts | None
    reproduce: str  # the command that measures the chosen config again ("" without one)
    nearest: tuple[tuple[TrialFacts, float], ...]  # (trial, how far over the limit)


@dataclass(frozen=True)
class RooflinePoint:
    """A trial placed at its arithmetic intensity and the throughput its latency gives."""

    trial: TrialFacts
    intensity: float  # operations per byte moved
    gops: float  # achieved, from Trial.latency_ms
    precision: str
    bound_ms: float | None  # the placement's own bound (against the peaks it carries)
    bound: str  # "compute" or "memory" (the placement's)
    attained: float | None  # bound_ms / latency_ms; None when the bound was beaten
    roof_share: float | None  # achieved / the drawn roof of its precision and level
    roof_bound: str  # which part of the drawn roof caps it ("" without peaks)
    memory_level: str = ""  # the level with the most of its memory time (L1 ... DRAM)
    beaten: str = ""  # the trial beat its bound: which peak is too low (``beaten_roof``)


@dataclass(frozen=True)
class RooflineFacts:
    """The trials placed on a target's roofline and the peaks they were judged against."""

    points: tuple[RooflinePoint, ...]
    peak_gops: dict[str, float] = field(default_factory=dict)  # empty: no trial carries peaks
    memory_bandwidth_gbs: float | None = None
    sources: tuple[str, ...] = ()  # where the peaks came from (measured, the TOML)
    level_bandwidth_gbs: dict[str, float] = field(default_factory=dict)  # the level roofs
    estimated_levels: tuple[str, ...] = ()  # level roofs that are the TOML's estimates


@dataclass(frozen=True)
class PredictedPoint:
    """A cost-model prediction for a config this run did not try: never a measurement."""

    config: QuantConfig
    backend: str
    target: str
    latency_ms: float
    accuracy_drop: float
    memory_bytes: float | None
    model_version: str
    # The ensemble members' range of latency (a prior prediction's interval); None: not kept.
    latency_low_ms: float | None = None
    latency_high_ms: float | None = None
    failure_probability: float | None = None


@dataclass(frozen=True)
class PredictionCheck:
    """What the cost model predicted before the run measured anything (a guided run's prior,
    else the latest ``--predict-only`` of the model), against what the run measured."""

    stage: str  # "prior" or "predict-only"
    model_version: str
    trained_on: int  # stored trials the cost model learned from
    models: int  # distinct models among them
    candidates: int
    expected_budget: int | None
    front: tuple[PredictedPoint, ...]  # ``predict.predicted_front``: per target and backend
    measured: int  # predicted configs the run measured successfully
    latency_mape: float | None  # mean |predicted - measured| / measured latency over those
    within_interval: int  # measured latencies inside the predicted interval
    front_measured: int  # predicted-front configs the run measured successfully
    front_hits: int  # ... of them on their backend and target's measured (latency, fidelity) front
    # Aligned with ``front``: the measured latency and whether it is on the measured front
    # (None, None: the run did not measure that config).
    outcomes: tuple[tuple[float | None, bool | None], ...] = ()


@dataclass(frozen=True)
class TargetFacts:
    name: str
    trials: tuple[TrialFacts, ...]  # every trial on the target, as stored
    ok: tuple[TrialFacts, ...]  # successful, fastest first (Trial.latency_ms)
    plotted: tuple[TrialFacts, ...]  # successful with an accuracy drop: the plots' points
    front: tuple[TrialFacts, ...]  # the 3-D frontier, fastest first
    line: tuple[TrialFacts, ...]  # the (latency, accuracy drop) front, by accuracy drop
    failed: tuple[TrialFacts, ...]  # not ok (failures and unavailable)
    flagged: tuple[TrialFacts, ...]
    recommendation: Recommendation
    roofline: RooflineFacts
    sensitivity: tuple[TrialFacts, ...]  # trials with a per-layer scan
    predicted: tuple[PredictedPoint, ...] = ()
    # The (throughput, accuracy drop) front (``pareto.throughput_front``); empty without
    # throughput figures (--batch).
    throughput_front: tuple[TrialFacts, ...] = ()
    predicted_front: tuple[PredictedPoint, ...] = ()  # ``PredictionCheck.front`` of the target


@dataclass(frozen=True)
class Regressions:
    """What ``autotune.regress`` found against the previous comparable run.

    ``baseline`` is None when the store holds no earlier run with a comparable trial.
    """

    baseline: Run | None
    compared: int = 0  # trials measured in both runs
    version_changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    rows: tuple[tuple[Trial, str, str], ...] = ()  # (trial, kind, detail)


@dataclass(frozen=True)
class RunFacts:
    run: Run
    trials: tuple[TrialFacts, ...]  # every trial, grouped by target
    targets: tuple[TargetFacts, ...]  # in the order trials name them
    target_names: tuple[str, ...]  # the trials' targets and the ones the run asked for
    backends: tuple[str, ...]  # sorted (renderers colour by position)
    status_counts: tuple[tuple[str, int], ...]  # in STATUSES order, zero counts left out
    backend_counts: tuple[tuple[str, int], ...]
    regressions: Regressions | None = None  # None: not looked up (no store at hand)
    changes: RunChanges | None = None  # change points of the run's series; None: not looked up
    drift: tuple[DriftItem, ...] | None = None  # vs the regressions' baseline; None: none
    max_accuracy_drop: float = DEFAULT_MAX_DROP
    latency_meaning: str = LATENCY_MEANING
    prediction: PredictionCheck | None = None  # None: nothing was predicted before the run


# Gathering


def gather_from_store(store: Store, run_id: str | None) -> RunFacts:
    """The facts of a run (the latest when ``run_id`` is None), regressions and predictions
    included: the only step of the report that reads the store."""
    run = store.get_run(run_id)
    trials = store.trials(run.id)
    regressions = find_regressions(store, run, trials)
    drift = None if regressions.baseline is None else tuple(frontier_drift(
        store.trials(regressions.baseline.id), trials, DEFAULT_MAX_DROP))
    predictions = store.predictions(run.id)
    return gather(run, trials, regressions=regressions, predictions=predictions,
                  changes=find_changes(store, run, trials), drift=drift,
                  prior=prior_predictions(store, run, predictions))


def prior_predictions(store: Store, run: Run,
                      predictions: Sequence[Prediction]) -> list[Prediction]:
    """What was predicted of the run's model before it measured: its own prior (a guided
    run's), else the latest ``--predict-only`` made before the run started."""
    from autotune.store import PREDICT_ONLY, PRIOR

    own = [p for p in predictions if p.stage == PRIOR]
    if own:
        return own
    earlier = [p for p in store.model_predictions(run.model_hash)
               if p.stage == PREDICT_ONLY and p.created_at <= run.created_at]
    if not earlier:
        return []
    latest = earlier[-1].created_at
    return [p for p in earlier if p.created_at == latest]


def gather(run: Run, trials: Sequence[Trial], regressions: Regressions | None = None,
           predictions: Sequence[Prediction] = (),
           max_accuracy_drop: float = DEFAULT_MAX_DROP, changes: RunChanges | None = None,
           drift: Sequence[DriftItem] | None = None,
           prior: Sequence[Prediction] = ()) -> RunFacts:
    """The facts of ``trials`` (one run's); pure: it looks nothing up. ``prior``: what was
    predicted before the run measured (``prior_predictions``)."""
    base = baselines(trials)
    judged = tuple(TrialFacts(t, speedup(t, base), tuple(flags(t, base)),
                              throughput_vs_fp32=throughput_ratio(t, base)) for t in trials)
    groups: dict[str, list[TrialFacts]] = {}
    for facts in judged:
        groups.setdefault(facts.trial.target, []).append(facts)
    check = check_predictions(prior, trials)
    targets = tuple(_target(run, name, group, predictions, max_accuracy_drop, check)
                    for name, group in groups.items())
    counts = Counter(t.status for t in trials)
    names = dict.fromkeys([*groups, *(Path(n).stem for n in run.settings.targets)])
    return RunFacts(
        run=run, trials=tuple(f for target in targets for f in target.trials),
        targets=targets, target_names=tuple(names),
        backends=tuple(sorted({t.backend for t in trials} | set(run.settings.backends))),
        status_counts=tuple((s, counts[s]) for s in STATUSES if counts[s]),
        backend_counts=tuple(Counter(t.backend for t in trials).items()),
        regressions=regressions, changes=changes,
        drift=None if drift is None else tuple(drift), max_accuracy_drop=max_accuracy_drop,
        prediction=check)


def check_predictions(prior: Sequence[Prediction],
                      trials: Sequence[Trial]) -> PredictionCheck | None:
    """The predicted front of ``prior`` (``autotune.predict.predicted_front``) and how far
    the predictions were from ``trials``' measurements."""
    if not prior:
        return None
    from autotune.predict import predicted_front

    front = [_point(p) for p in predicted_front(prior)]
    measured = {t.key: t for t in trials if t.ok and t.latency_ms}
    pairs = [(p, measured[(p.config.id, p.backend, p.target)]) for p in prior
             if p.latency_ms and (p.config.id, p.backend, p.target) in measured]
    errors = [abs(p.latency_ms - t.latency_ms) / t.latency_ms for p, t in pairs]
    inside = sum(p.latency_low_ms is not None
                 and p.latency_low_ms <= t.latency_ms <= p.latency_high_ms for p, t in pairs)
    on_measured = _measured_fronts(trials)
    front_measured = [p for p in front if (p.config.id, p.backend, p.target) in measured]
    outcomes = []
    for p in front:
        key = (p.config.id, p.backend, p.target)
        outcomes.append((measured[key].latency_ms, key in on_measured) if key in measured
                        else (None, None))
    first = prior[0]
    return PredictionCheck(
        stage=first.stage, model_version=first.model_version,
        trained_on=first.trained_on or 0, models=first.models or 0,
        candidates=len(prior), expected_budget=first.expected_budget,
        front=tuple(front), measured=len(pairs),
        latency_mape=sum(errors) / len(errors) if errors else None,
        within_interval=inside, front_measured=len(front_measured),
        front_hits=sum((p.config.id, p.backend, p.target) in on_measured
                       for p in front_measured), outcomes=tuple(outcomes))


def _measured_fronts(trials: Sequence[Trial]) -> set[tuple[str, str, str]]:
    """The keys of the trials on their (backend, target)'s measured front of (latency, log
    fidelity error): the same groups and objectives as the predicted front's."""
    from autotune.pareto import fidelity_objective, pareto_front

    groups: dict[tuple[str, str], list[Trial]] = {}
    for t in trials:
        if t.ok and t.latency_ms and t.fidelity_error is not None:
            groups.setdefault((t.backend, t.target), []).append(t)
    return {members[i].key for members in groups.values()
            for i in pareto_front([(t.latency_ms, fidelity_objective(t.fidelity_error))
                                   for t in members])}


def _point(p: Prediction) -> PredictedPoint:
    return PredictedPoint(p.config, p.backend, p.target, p.latency_ms, p.accuracy_drop,
                          p.memory_bytes, p.model_version, p.latency_low_ms,
                          p.latency_high_ms, p.failure_probability)


def _target(run: Run, name: str, group: list[TrialFacts], predictions: Sequence[Prediction],
            max_accuracy_drop: float, check: PredictionCheck | None = None) -> TargetFacts:
    trials = [f.trial for f in group]
    on_front = {id(t) for t in frontier(trials)}
    group = [TrialFacts(f.trial, f.speedup, f.flags, id(f.trial) in on_front,
                        f.throughput_vs_fp32) for f in group]
    of = {id(f.trial): f for f in group}
    ok = sorted((f for f in group if f.trial.ok), key=lambda f: f.trial.latency_ms)
    choice = pick(trials, max_accuracy_drop, "latency")
    chosen = of[id(choice.chosen)] if choice.chosen is not None else None
    recommendation = Recommendation(
        max_accuracy_drop, chosen, reproduce_command(run, chosen.trial) if chosen else "",
        tuple((of[id(t)], miss) for t, miss in choice.nearest))
    tried = {t.key for t in trials}  # a measurement (or its failure) beats a prediction
    return TargetFacts(
        name=name, trials=tuple(group), ok=tuple(ok),
        plotted=tuple(f for f in ok if f.trial.accuracy_drop is not None),
        front=tuple(f for f in ok if f.on_front),
        line=tuple(of[id(t)] for t in latency_accuracy_front(trials)),
        failed=tuple(f for f in group if not f.trial.ok),
        flagged=tuple(f for f in group if f.flags), recommendation=recommendation,
        roofline=_roofline(ok),
        sensitivity=tuple(f for f in group
                          if f.trial.sensitivity is not None and f.trial.sensitivity.drops),
        predicted=_predicted(name, predictions, tried),
        throughput_front=tuple(of[id(t)] for t in throughput_front(trials)),
        predicted_front=tuple(p for p in check.front if p.target == name) if check else ())


def baselines(trials: Sequence[Trial]) -> dict[tuple[str, str], Trial]:
    """The successful fp32 trial of each (backend, target)."""
    return {(t.backend, t.target): t for t in trials if t.ok and t.config == FP32}


def speedup(trial: Trial, base: dict[tuple[str, str], Trial]) -> float | None:
    """How many times faster than fp32 on the same backend and target (by Trial.latency_ms)."""
    reference = base.get((trial.backend, trial.target))
    if reference is None or not trial.ok or not trial.latency_ms or not reference.latency_ms:
        return None
    return reference.latency_ms / trial.latency_ms


def throughput_ratio(trial: Trial, base: dict[tuple[str, str], Trial]) -> float | None:
    """This trial's throughput over fp32's on the same backend and target (higher: more
    inferences per second), by ``Trial.throughput_ips``."""
    reference = base.get((trial.backend, trial.target))
    if reference is None or not trial.ok or not trial.throughput_ips \
            or not reference.throughput_ips:
        return None
    return trial.throughput_ips / reference.throughput_ips


def flags(trial: Trial, base: dict[tuple[str, str], Trial]) -> list[str]:
    """What a user should know about a trial at a glance, with the reason where known."""
    notes = [note.text for note in trial.notes_with(FLAG)]
    ratio = speedup(trial, base)
    if trial.config.is_quantized and ratio is not None and ratio <= 1.0:
        reason = "".join(f"; {note.text}" for note in trial.notes_with(CAUSE))
        notes.append(f"quantized but not faster than fp32 ({ratio:.2f}x){reason}")
    if trial.noisy:
        spreads = trial.spreads or [trial.latency_spread or 0.0]
        notes.append(f"noisy: latency spread stayed above the limit in {len(spreads)} "
                     f"measurement(s) ({', '.join(f'{s:.1%}' for s in spreads)}); compare "
                     f"with care")
    if trial.emulated:
        notes.append("emulated: latency is not the device's")
    return notes


def reproduce_command(run: Run, trial: Trial) -> str:
    """The command that measures this one config again (next to its fp32 baseline)."""
    settings = run.settings
    parts = ["autotune", "run", "--model", settings.model]
    if settings.data:
        parts += ["--data", settings.data]
    for shape in settings.shapes:
        parts += ["--shape", shape]
    parts += ["--target", trial.target, "--backend", trial.backend]
    if trial.tuning is not None:  # the backend tuned: the same budget finds the same kernels
        parts += ["--tuning-trials", str(trial.tuning.trials_requested)]
    for spec in settings.runtime:
        parts += ["--runtime", spec]
    if trial.throughput is not None and settings.batches:
        parts += ["--batch", ",".join(map(str, settings.batches))]
    if trial.config != FP32:
        parts += ["--config", trial.config.text]
    return shlex.join(parts)


def _roofline(ok: Sequence[TrialFacts]) -> RooflineFacts:
    from autotune.roofline import beaten_roof

    placed = [f for f in ok if f.trial.roofline is not None and f.trial.roofline.ops > 0
              and f.trial.roofline.bytes > 0 and f.trial.latency_ms]
    carried = [f.trial.roofline for f in placed if f.trial.roofline.peak_gops]
    # The roofs the trials were judged against (measured ones, where stored); the last wins.
    last = carried[-1] if carried else None
    peaks = dict(last.peak_gops) if last else {}
    bandwidth = last.memory_bandwidth_gbs if last else None
    levels = dict(last.level_bandwidth_gbs) if last else {}
    points = []
    for f in placed:
        roof, latency_ms = f.trial.roofline, f.trial.latency_ms
        gops = roof.ops / (latency_ms / 1000) / 1e9
        peak = peaks.get(roof.precision)
        level_gbs = levels.get(roof.memory_level) or bandwidth
        share, regime = None, ""
        if peak is not None:
            limit = min(peak, level_gbs * roof.intensity) if level_gbs else peak
            regime = "memory" if level_gbs and level_gbs * roof.intensity < peak else "compute"
            share = gops / limit
        beaten = beaten_roof(roof, latency_ms)
        attained = roof.bound_ms / latency_ms if roof.bound_ms and not beaten else None
        points.append(RooflinePoint(
            f, roof.intensity, gops, roof.precision, roof.bound_ms, roof.bound, attained,
            share, regime, roof.memory_level, beaten))
    sources = tuple(sorted({f.trial.roofline.peaks_source for f in placed
                            if f.trial.roofline.peaks_source}))
    return RooflineFacts(tuple(points), peaks, bandwidth, sources, levels,
                         tuple(last.estimated_levels) if last else ())


def _predicted(target: str, predictions: Sequence[Prediction],
               tried: set[tuple[str, str, str]]) -> tuple[PredictedPoint, ...]:
    """The latest prediction of each config the run did not try on ``target``."""
    latest: dict[tuple[str, str], PredictedPoint] = {}
    for p in predictions:
        if (p.target != target or p.latency_ms is None or p.accuracy_drop is None
                or (p.config.id, p.backend, p.target) in tried):
            continue
        latest[(p.config.id, p.backend)] = PredictedPoint(
            p.config, p.backend, p.target, p.latency_ms, p.accuracy_drop, p.memory_bytes,
            p.model_version)
    return tuple(latest.values())


def find_regressions(store: Store, run: Run, trials: Sequence[Trial]) -> Regressions:
    """Regressions against the previous comparable run (``autotune.gate``), as
    ``autotune.regress`` judges them."""
    earlier = previous_comparable_run(store, run, trials)
    if earlier is None:
        return Regressions(None)
    comparison = compare_trials(store.trials(earlier.id), trials)
    rows = tuple((pair.candidate, finding.kind, finding.detail)
                 for pair, finding in comparison.regressions)
    return Regressions(earlier, len(comparison.matched),
                       version_changes(earlier.versions, run.versions), rows)


def find_changes(store: Store, run: Run, trials: Sequence[Trial],
                 thresholds: Thresholds | None = None) -> RunChanges:
    """The change points at the end of the run's series (``autotune.changepoints``), over
    the comparable runs up to this one (``autotune.gate.run_series``)."""
    series = [points_of(pairs) for pairs in run_series(store, run, trials).values()]
    return run_changes(series, thresholds or Thresholds())

"""Change points over a config's history, each attributed to what changed in the environment.

``autotune.regress.history_changes`` judges each run against the one before it, so a slow
drift (several small steps that add up) or a step followed by noise goes unnoticed, and
nothing says which change in the environment caused a step. Here a whole series (one
comparable key: model, config, backend, target, tuning budget, emulation) is segmented at
once:

1. Candidates: PELT (``ruptures``, least squares on the log of each run's figure divided by
   the series' own noise, so the penalty is in units of that noise: ``PENALTY`` x log n, a
   BIC-like penalty that keeps A/A series nearly free of candidates). A segment holds at least
   two runs: one slow run is the machine, not a step; the newest run's step is confirmed
   by the next run (until then ``history``'s "vs previous" verdict shows it).
2. Confirmation: the runs on either side of a candidate are compared as ``compare`` compares
   two runs (latency: Mann-Whitney U and the bootstrap interval of ``regress.latency_test`` on
   the fastest passes' samples pooled per side, with the series' noise as the run-to-run
   noise of the two sides' means; memory: segment medians against the noise and thresholds).
   The weakest unconfirmed candidate is dropped and its segments merged, until every
   remaining one is confirmed. So a drift of small steps, none past the threshold, ends as
   one confirmed change between larger segments; it is called a drift when it absorbed
   dropped candidates in its own direction, and its attribution lists what changed at each.
3. Attribution: the environment (package versions as the worker imported them, autotune
   commit, Python, CPU model, cores, host) of the last run before each step against the first
   run after it, the backend's runtime first (the most likely cause), then the common
   packages, then the rest.

The series' noise (log units) is measured on the series itself: PELT's scale is the spread
of consecutive runs' differences (median absolute deviation, which a few steps or a steady
drift do not inflate), a confirmation's is the residual spread about the segments' means
(with its degrees of freedom); the typical sampling error of a run's median is the floor of
both. Nothing here prints; ``series_in`` is the only function that reads a store.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from autotune.errors import InputError
from autotune.regress import (
    Thresholds,
    comparable_key,
    fastest_pass_ms,
    latency_test,
)
from autotune.store import Run, Store
from autotune.trial import Trial

METRICS = ("latency", "memory")
PENALTY = 3.0  # times log(n), in units of the series' noise (squared): see the module doc
MIN_SEGMENT = 2  # runs on each side of a change point
SIGMA_FLOOR = 0.002  # log units: no series is steadier than 0.2% (constant synthetic data)
NO_CHANGE = "no environment change: machine or noise"
DEFAULT_THRESHOLDS = Thresholds()  # compare's defaults
# Environment facts after the packages, in the order they are named as a cause.
_LATER_FACTS = ("autotune", "python", "cpu model", "cores", "device", "device cpu model",
                "host", "system")


@dataclass(frozen=True)
class SeriesPoint:
    """One run's trial of a series and the environment it was measured in."""

    run_id: str
    trial: Trial
    environment: dict[str, str]


@dataclass(frozen=True)
class EnvironmentChange:
    name: str
    before: str | None
    after: str | None

    @property
    def text(self) -> str:
        return f"{self.name} {self.before or '-'} -> {self.after or '-'}"


@dataclass(frozen=True)
class ChangePoint:
    """A confirmed step (or drift) of one metric of a series, and what changed with it."""

    metric: str  # one of METRICS
    kind: str  # "step" or "drift" (several small steps in one direction that add up)
    run_id: str  # the first run after the change (after a drift: after its last step)
    first_run_id: str  # where a drift began (= run_id for a step)
    before_run_ids: tuple[str, ...]  # the segment before
    after_run_ids: tuple[str, ...]  # the segment after
    before: float  # the segment's figure: latency ms (median of pooled samples) or bytes
    after: float
    p_value: float | None  # latency only (Mann-Whitney U)
    noise_floor: float  # the smallest change the series' noise lets through (a fraction)
    environment: tuple[EnvironmentChange, ...]  # most likely cause first

    @property
    def change(self) -> float:
        return self.after / self.before - 1.0

    @property
    def regression(self) -> bool:
        """Slower or larger (both metrics are worse when higher)."""
        return self.change > 0

    @property
    def cause(self) -> str:
        return (", ".join(change.text for change in self.environment) if self.environment
                else NO_CHANGE)

    @property
    def summary(self) -> str:
        where = (f"at run {self.run_id}" if self.kind == "step"
                 else f"drift over runs {self.first_run_id}..{self.run_id}")
        return f"{self.metric} {self.change:+.1%} {where}: {self.cause}"

    def to_json(self) -> dict:
        return {"metric": self.metric, "kind": self.kind, "run_id": self.run_id,
                "first_run_id": self.first_run_id, "before_run_ids": list(self.before_run_ids),
                "after_run_ids": list(self.after_run_ids), "before": self.before,
                "after": self.after, "change": self.change, "regression": self.regression,
                "p_value": self.p_value, "noise_floor": self.noise_floor,
                "environment_changes": [{"name": c.name, "before": c.before, "after": c.after}
                                        for c in self.environment],
                "cause": self.cause, "summary": self.summary}


def environment(trial: Trial, run: Run | None = None) -> dict[str, str]:
    """What a trial was measured with: package versions (the worker's own, over the run's),
    the autotune commit, Python, CPU model and cores (the target's settings as measured), a
    remote device's own facts, and the host."""
    host = run.host if run is not None else {}
    facts = {**(run.versions if run is not None else {}), **trial.versions,
             "python": host.get("python"), "cpu model": trial.cpu_model or host.get("cpu_model"),
             "cores": trial.cores or host.get("cores"), "host": host.get("hostname"),
             "system": host.get("system")}
    if trial.device is not None:
        facts.update({"device": trial.device.machine, "device cpu model": trial.device.cpu_model,
                      **{f"device {name}": v for name, v in trial.device.versions.items()}})
    return {name: str(value) for name, value in facts.items() if value not in (None, "", 0)}


def environment_changes(before: dict[str, str], after: dict[str, str],
                        backend: str = "") -> tuple[EnvironmentChange, ...]:
    """What differs between two environments, the most likely cause of a step first: the
    backend's runtime packages, the packages every trial uses, other packages, then autotune,
    Python and the machine."""
    from autotune.backends import backend_names, get_backend
    from autotune.runtimes import COMMON_PACKAGES

    runtime = get_backend(backend).packages if backend in backend_names() else ()
    names = [name for name in sorted(set(before) | set(after))
             if before.get(name) != after.get(name)]

    def rank(name: str) -> tuple[int, int, str]:
        for group, ordered in enumerate((runtime, COMMON_PACKAGES)):
            if name in ordered:
                return group, ordered.index(name), name
        if name in _LATER_FACTS:
            return 3, _LATER_FACTS.index(name), name
        return 2, 0, name

    return tuple(EnvironmentChange(name, before.get(name), after.get(name))
                 for name in sorted(names, key=rank))


def series_in(store: Store, model: str | None = None, config: str | None = None,
              target: str | None = None,
              backend: str | None = None) -> dict[tuple, list[tuple[Run, Trial]]]:
    """The matching trials of every run, grouped by comparable key, oldest run first.

    Raises:
        InputError: the store is empty, or a filter matches no stored trial (the message
            names the option and the known values).
    """
    everything = [(run, trial) for run in store.runs() for trial in store.trials(run.id)]
    if not everything:
        raise InputError(f"no trials in {store.shown_url} yet; start one with `autotune run`")
    for option, value, field in (("--model", model, lambda t: {t.model}),
                                 ("--config", config,
                                  lambda t: {t.config.id, t.config.text, t.config.label}),
                                 ("--target", target, lambda t: {t.target}),
                                 ("--backend", backend, lambda t: {t.backend})):
        if value is None:
            continue
        kept = [(run, trial) for run, trial in everything if value in field(trial)]
        if not kept:
            known = sorted({min(field(trial), key=len) for _, trial in everything})
            raise InputError(f"{option} {value}: no stored trial matches (known: "
                             f"{', '.join(known[:20])}{' ...' if len(known) > 20 else ''})")
        everything = kept
    grouped: dict[tuple, list[tuple[Run, Trial]]] = {}
    for run, trial in everything:
        grouped.setdefault(comparable_key(trial), []).append((run, trial))
    return grouped


def points_of(pairs: Sequence[tuple[Run, Trial]]) -> list[SeriesPoint]:
    return [SeriesPoint(run.id, trial, environment(trial, run)) for run, trial in pairs]


def change_points(points: Sequence[SeriesPoint], thresholds: Thresholds = DEFAULT_THRESHOLDS,
                  seed: int = 0) -> list[ChangePoint]:
    """The confirmed change points of one series (oldest point first), latency then memory.

    Only successful trials count (a status change is ``history_changes``'s finding); a trial
    judged on a contended pass has no trusted latency and is left out of the latency series.
    """
    latency = [p for p in points if p.trial.ok and p.trial.latency_ms and not p.trial.contended]
    memory = [p for p in points if p.trial.ok and p.trial.memory_bytes]
    return (_segment(latency, _LatencyJudge(latency, thresholds, seed))
            + _segment(memory, _MemoryJudge(memory, thresholds)))


RECENT_RUNS = 3  # a run's report shows the change points after-sides starting this recent


@dataclass(frozen=True)
class SeriesChange:
    """A change point of one of a run's series, as that run sees it."""

    trial: Trial  # the run's own trial of the series (its model, config, backend, target)
    change: ChangePoint
    new: bool  # confirmed by this run: the series without it did not have this change point

    @property
    def gating(self) -> bool:
        """What ``--fail-on change`` fails on: a new change point that made things worse."""
        return self.new and self.change.regression

    def to_json(self) -> dict:
        trial = self.trial
        return {"model": trial.model, "config_id": trial.config.id,
                "config": trial.config.label, "backend": trial.backend, "target": trial.target,
                "new": self.new, "gating": self.gating, **self.change.to_json()}


@dataclass(frozen=True)
class RunChanges:
    """The change points near the end of a run's series (``run_changes``)."""

    runs: int  # comparable runs in the run's longest series, itself included
    changes: tuple[SeriesChange, ...]

    @property
    def enough_runs(self) -> bool:
        return self.runs >= 2 * MIN_SEGMENT

    @property
    def gating(self) -> tuple[SeriesChange, ...]:
        return tuple(found for found in self.changes if found.gating)

    @property
    def shortage(self) -> str:
        """Why nothing could be found yet ("" with runs enough)."""
        if self.enough_runs:
            return ""
        return (f"{self.runs} comparable run(s) so far, this one included; change points need "
                f"{2 * MIN_SEGMENT} (two on each side of a step)")

    def to_json(self) -> dict:
        return {"comparable_runs": self.runs, "runs_needed": 2 * MIN_SEGMENT,
                "recent_runs": RECENT_RUNS, "change_points": [c.to_json() for c in self.changes],
                "new_regressions": len(self.gating)}


def run_changes(series: Sequence[Sequence[SeriesPoint]],
                thresholds: Thresholds = DEFAULT_THRESHOLDS) -> RunChanges:
    """The change points of a run's series (each ending at the run's own point) whose
    after-side starts within the last ``RECENT_RUNS`` runs, each marked new when the series
    without the run's point did not have it. As a step needs ``MIN_SEGMENT`` runs after it,
    the newest a run can confirm is one at the run before it."""
    found = []
    for points in series:
        recent = {p.run_id for p in points[-RECENT_RUNS:]}
        changes = [c for c in change_points(points, thresholds) if c.run_id in recent]
        if not changes:
            continue
        before = {(c.metric, c.run_id) for c in change_points(points[:-1], thresholds)}
        found += [SeriesChange(points[-1].trial, c, (c.metric, c.run_id) not in before)
                  for c in changes]
    return RunChanges(max((len(points) for points in series), default=0), tuple(found))


@dataclass(frozen=True)
class _Verdict:
    confirmed: bool
    before: float
    after: float
    p_value: float | None
    noise_floor: float


class _Judge:
    """Confirms a candidate step between two segments of one metric's series.

    The noise of one run's figure is the residual spread about the segment means of the
    current segmentation (degrees of freedom: runs - segments), or a known noise where larger
    (between passes, the sampling error of a median): estimated from the series itself, as a
    nightly machine's day-to-day noise is what a step must stand out of.
    """

    metric: str
    logs: np.ndarray  # the log figure of each run
    known: list[tuple[float, int]]  # other noise estimates (log units) and their dof
    alpha: float

    def scale(self) -> float:
        """The noise PELT's values are divided by, before any segmentation: consecutive
        differences' spread, or a known noise where larger."""
        return max(_diff_sigma(self.logs), *(sigma for sigma, _ in self.known), SIGMA_FLOOR)

    def noise(self, bounds: Sequence[int], left: range, right: range) -> tuple[float, float]:
        """The standard deviation of the difference of two segments' mean log figures, and
        the critical value a change must exceed in its units: Student's t at alpha, divided
        by the places the step could have been put between the two segments (Bonferroni),
        as PELT put it where the two sides differ most."""
        from scipy.stats import t

        edges = [0, *bounds, len(self.logs)]
        residuals = np.concatenate([self.logs[a:b] - self.logs[a:b].mean()
                                    for a, b in itertools.pairwise(edges)])
        dof = len(self.logs) - len(edges) + 1
        sigma, dof = max([(math.sqrt(float(residuals @ residuals) / dof), dof), *self.known])
        places = len(left) + len(right) - 2 * MIN_SEGMENT + 1
        critical = float(t.ppf(1 - self.alpha / (2 * places), max(dof, 1)))
        return max(sigma, SIGMA_FLOOR) * math.sqrt(1 / len(left) + 1 / len(right)), critical

    def judge(self, bounds: Sequence[int], left: range, right: range) -> _Verdict:
        raise NotImplementedError


class _LatencyJudge(_Judge):
    metric = "latency"

    def __init__(self, points: Sequence[SeriesPoint], thresholds: Thresholds, seed: int):
        self.samples = [fastest_pass_ms(p.trial) for p in points]
        self.thresholds, self.alpha, self.seed = thresholds, thresholds.alpha, seed
        self.logs = np.log([p.trial.latency_ms for p in points])
        # Not the between-pass noise (``regress.pass_noise``): the figure is the fastest of
        # several passes, which varies less than one pass does, and the series' own spread
        # measures it directly. Taken as a floor, the pass noise of a toggling machine (10%
        # and more) hid every 10% step of real A/A series (0 of 200 found).
        self.known = [(_sampling_sigma(self.samples), 1000)]

    def judge(self, bounds: Sequence[int], left: range, right: range) -> _Verdict:
        before = [v for i in left for v in self.samples[i]]
        after = [v for i in right for v in self.samples[i]]
        noise, critical = self.noise(bounds, left, right)
        if len(before) < 3 or len(after) < 3:  # trials stored without samples
            return _Verdict(False, float(np.median(before or [1])),
                            float(np.median(after or [1])), None, math.expm1(critical * noise))
        test = replace(latency_test(before, after, self.alpha, seed=self.seed),
                       run_noise=noise, run_noise_z=critical)
        return _Verdict(test.verdict(self.thresholds.latency) is not None,
                        test.baseline_median_ms, test.candidate_median_ms, test.p_value,
                        test.noise_floor)


class _MemoryJudge(_Judge):
    metric = "memory"

    def __init__(self, points: Sequence[SeriesPoint], thresholds: Thresholds):
        self.values = np.array([float(p.trial.memory_bytes) for p in points])
        self.thresholds, self.alpha = thresholds, thresholds.alpha
        self.logs, self.known = np.log(self.values), []

    def judge(self, bounds: Sequence[int], left: range, right: range) -> _Verdict:
        before = float(np.median(self.values[left.start:left.stop]))
        after = float(np.median(self.values[right.start:right.stop]))
        noise, critical = self.noise(bounds, left, right)
        floor = critical * noise
        confirmed = (abs(after - before) >= self.thresholds.memory_floor_bytes
                     and abs(after / before - 1) > self.thresholds.memory
                     and abs(math.log(after / before)) > floor)
        return _Verdict(confirmed, before, after, None, math.expm1(floor))


def _diff_sigma(logs: np.ndarray) -> float:
    """The noise of one run's figure from consecutive differences: their median absolute
    deviation (about their median, so a steady drift does not count), scaled to a standard
    deviation of one run's figure; 0 with fewer than three differences."""
    diffs = np.diff(logs)
    if diffs.size < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2))


def _sampling_sigma(samples: Sequence[Sequence[float]]) -> float:
    """The typical standard error of a run's median latency (log units), from its samples'
    robust spread: 1.2533 sigma / sqrt(n) for the median."""
    errors = []
    for values in samples:
        logs = np.log([v for v in values if v > 0])
        if logs.size >= 3:
            mad = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
            errors.append(1.2533 * mad / math.sqrt(logs.size))
    return float(np.median(errors)) if errors else 0.0


def _segment(points: Sequence[SeriesPoint], judge: _Judge) -> list[ChangePoint]:
    """Candidates by PELT; drifts among them, then the confirmed steps; see the module doc."""
    import ruptures

    n = len(points)
    if n < 2 * MIN_SEGMENT:
        return []
    ends = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(
        judge.logs / judge.scale()).predict(pen=PENALTY * math.log(n))
    bounds = list(ends[:-1])  # each: the index of the first point after a candidate step
    found, drifting = [], set()
    for group in _drift_candidates(bounds, judge, n):
        left, right = _sides(bounds, group[0], n)[0], _sides(bounds, group[-1], n)[1]
        verdict = judge.judge(bounds, left, right)
        if verdict.confirmed:
            found.append(_change_point(points, judge.metric, group, left, right, verdict))
            drifting.update(group)
    while True:  # drop the weakest unconfirmed step until every one left is confirmed
        verdicts = {b: judge.judge(bounds, *_sides(bounds, b, n)) for b in bounds}
        weak = [b for b in bounds if b not in drifting and not verdicts[b].confirmed]
        if not weak:
            break
        bounds.remove(min(weak, key=lambda b: abs(math.log(verdicts[b].after
                                                          / verdicts[b].before))))
    found += [_change_point(points, judge.metric, [b], *_sides(bounds, b, n), verdicts[b])
              for b in bounds if b not in drifting]
    return sorted(found, key=lambda change: change.run_id)


def _drift_candidates(bounds: Sequence[int], judge: _Judge, n: int) -> list[list[int]]:
    """Runs of two or more consecutive candidates that all move one way and none of which is
    confirmed alone: together they may add up past the threshold."""
    groups: list[list[int]] = []
    previous = 0.0
    for b in bounds:
        verdict = judge.judge(bounds, *_sides(bounds, b, n))
        way = 0.0 if verdict.confirmed else float(np.sign(verdict.after - verdict.before))
        if way and way == previous:
            groups[-1].append(b)
        elif way:
            groups.append([b])
        previous = way
    return [group for group in groups if len(group) > 1]


def _change_point(points: Sequence[SeriesPoint], metric: str, steps: Sequence[int],
                  left: range, right: range, verdict: _Verdict) -> ChangePoint:
    """A confirmed change at ``steps`` (one for a step, each of a drift's), with what changed
    in the environment at them: each name once, from its first value to its last."""
    env: dict[str, EnvironmentChange] = {}
    for at in steps:
        for change in environment_changes(points[at - 1].environment, points[at].environment,
                                          points[at].trial.backend):
            first = env.get(change.name, change)
            env[change.name] = EnvironmentChange(change.name, first.before, change.after)
    return ChangePoint(
        metric=metric, kind="drift" if len(steps) > 1 else "step",
        run_id=points[steps[-1]].run_id, first_run_id=points[steps[0]].run_id,
        before_run_ids=tuple(points[i].run_id for i in left),
        after_run_ids=tuple(points[i].run_id for i in right),
        before=verdict.before, after=verdict.after, p_value=verdict.p_value,
        noise_floor=verdict.noise_floor, environment=tuple(env.values()))


def _sides(bounds: Sequence[int], at: int, n: int) -> tuple[range, range]:
    """The segments before and after boundary ``at``."""
    edges = [0, *bounds, n]
    index = edges.index(at)
    return range(edges[index - 1], at), range(at, edges[index + 1])

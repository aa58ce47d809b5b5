"""The Python API: run a benchmark, and read runs and trials as pandas DataFrames.

For notebooks and other tools. The trials frame is built from the facts the reports render
(``autotune.report.facts.gather``) one ``report.table.trial_record`` per row, the row
``trials.csv`` is written from; the frontier and the pick are ``autotune.pareto``'s. pandas
is imported only by the functions that return a frame, and ``autotune`` re-exports this
module's names lazily, so ``import autotune`` stays light. Every column is described in
docs/api.md.

    import autotune
    store = autotune.open_store("sqlite:///results/autotune.db")
    trials = store.trials()                       # the latest run, one row per trial
    ok = trials[trials.status == "ok"]
    ok.groupby("backend").latency_ms.min()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from autotune.report.facts import DEFAULT_MAX_DROP, RunFacts, TrialFacts, gather
from autotune.report.table import TRIAL_COLUMNS, trial_record
from autotune.settings import DEFAULT_MODEL, DEFAULT_TARGET, RunSpec
from autotune.store import DEFAULT_STORE_URL, Run, Store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CHANGE_POINT_COLUMNS", "LATEST", "PASS_COLUMNS", "PICK_COLUMNS", "RUN_COLUMNS",
           "SAMPLE_COLUMNS", "TRIAL_COLUMNS", "ResultStore", "open_store", "run_benchmark"]

LATEST = "latest"  # wherever a run is asked for: the newest run of the store

# What identifies a trial in every frame: join samples and passes to trials on these.
TRIAL_KEY = ("run_id", "config_id", "backend", "target")
RUN_COLUMNS = ("run_id", "created_at", "finished_at", "status", "model", "model_path",
               "model_hash", "space", "metric", "synthetic_data", "reference_accuracy",
               "strategy", "budget", "passes", "tuning_trials", "targets", "backends",
               "hostname", "cpu_model", "cores", "versions", "campaign")
SAMPLE_COLUMNS = (*TRIAL_KEY, "pass", "sample", "latency_ms")
PASS_COLUMNS = (*TRIAL_KEY, "pass", "status", "median_ms", "spread", "samples", "contended",
                "remeasured", "other_cpu_share", "steal_share", "own_share", "load_1m",
                "cpu_mhz", "error")
PICK_COLUMNS = (*TRIAL_COLUMNS, "pick", "misses_accuracy_drop_by")
CHANGE_POINT_COLUMNS = ("model", "config_id", "backend", "target", "metric", "kind", "run_id",
                        "first_run_id", "before", "after", "change", "p_value", "noise_floor",
                        "cause")


def open_store(url: str = DEFAULT_STORE_URL) -> ResultStore:
    """The result store at ``url`` (any URL ``--store`` takes), read as DataFrames.

    Raises:
        InputError: the store cannot be opened (the message names the URL).
    """
    return ResultStore(Store(url))


class ResultStore:
    """Runs and trials of one store as DataFrames; ``run`` is a run id, ``"latest"`` or
    ``"previous"`` (the run before the latest)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def url(self) -> str:
        return self.store.url

    def run(self, run: str = LATEST) -> Run:
        """The run's record (``InputError`` when the store has no such run)."""
        return self.store.get_run(run)

    def facts(self, run: str = LATEST) -> RunFacts:
        """The run's facts as the report judges them (fronts, picks, flags, speedups), without
        the regression lookup against earlier runs."""
        record = self.run(run)
        return gather(record, self.store.trials(record.id))

    def runs(self) -> pd.DataFrame:
        """One row per run, oldest first (``RUN_COLUMNS``)."""
        return _frame([_run_record(run) for run in self.store.runs()], RUN_COLUMNS)

    def trials(self, run: str = LATEST) -> pd.DataFrame:
        """One row per trial, grouped by target as the report lists them (``TRIAL_COLUMNS``):
        the rows of the run's ``trials.csv`` and more columns."""
        return _frame([trial_record(f) for f in self.facts(run).trials], TRIAL_COLUMNS)

    def samples(self, run: str = LATEST) -> pd.DataFrame:
        """Every latency sample of every trial, one row each (``SAMPLE_COLUMNS``): ``pass`` is
        the 1-based number of the pass in the trial's ``passes`` (empty where the stored
        samples do not say which pass took them), ``sample`` the position within it."""
        rows = []
        for f in self.facts(run).trials:
            t = f.trial
            numbers = [index for index, entry in enumerate(t.passes, 1) if entry.ok]
            groups = t.pass_samples_ms()
            if len(groups) != len(numbers):
                numbers = [None] * len(groups)
            key = _key(t)
            rows.extend({**key, "pass": number, "sample": index, "latency_ms": value}
                        for number, group in zip(numbers, groups, strict=True)
                        for index, value in enumerate(group))
        return _frame(rows, SAMPLE_COLUMNS)

    def passes(self, run: str = LATEST) -> pd.DataFrame:
        """Every measurement pass of every trial, failed ones too (``PASS_COLUMNS``), with
        the machine's state during its timed window."""
        rows = []
        for f in self.facts(run).trials:
            for number, entry in enumerate(f.trial.passes, 1):
                machine = entry.machine
                rows.append({
                    **_key(f.trial), "pass": number, "status": entry.status,
                    "median_ms": entry.median_ms, "spread": entry.spread,
                    "samples": entry.samples, "contended": entry.contended,
                    "remeasured": entry.remeasured,
                    "other_cpu_share": machine.other_share if machine else None,
                    "steal_share": machine.steal_share if machine else None,
                    "own_share": machine.own_share if machine else None,
                    "load_1m": machine.load_1m if machine else None,
                    "cpu_mhz": machine.freq_mhz if machine else None, "error": entry.error})
        return _frame(rows, PASS_COLUMNS)

    def frontier(self, run: str = LATEST, target: str | None = None) -> pd.DataFrame:
        """The Pareto-optimal trials over (latency, accuracy drop, memory) of each target
        (``pareto.frontier``), fastest first; ``TRIAL_COLUMNS``."""
        facts = self.facts(run)
        return _frame([trial_record(f) for t in _targets(facts, target) for f in t.front],
                      TRIAL_COLUMNS)

    def pick(self, run: str = LATEST, max_accuracy_drop: float = DEFAULT_MAX_DROP,
             objective: str = "latency", max_memory_bytes: int | None = None,
             target: str | None = None, max_saturation: float | None = None,
             max_class_drop: float | None = None) -> pd.DataFrame:
        """The config to ship on each target (``pareto.pick``): one row ``pick == "chosen"``
        per target that has one, else up to three ``"nearest"`` rows with what they miss
        the limit by (``PICK_COLUMNS``). ``max_accuracy_drop``, ``max_saturation`` and
        ``max_class_drop`` are fractions (0.01 = 1 pp).
        """
        from autotune.errors import InputError
        from autotune.pareto import OBJECTIVES, pick

        if objective not in OBJECTIVES:
            raise InputError(f"objective {objective!r}: not one of {', '.join(OBJECTIVES)}")
        facts = self.facts(run)
        rows = []
        for group in _targets(facts, target):
            of = {id(f.trial): f for f in group.trials}
            answer = pick([f.trial for f in group.trials], max_accuracy_drop, objective,
                          max_memory_bytes, max_saturation, max_class_drop)
            if answer.chosen is not None:
                rows.append(_pick_record(of[id(answer.chosen)], "chosen", None))
            rows.extend(_pick_record(of[id(t)], "nearest", miss) for t, miss in answer.nearest)
        return _frame(rows, PICK_COLUMNS)


    def change_points(self, model: str | None = None, config: str | None = None,
                      target: str | None = None,
                      backend: str | None = None) -> pd.DataFrame:
        """The confirmed change points (steps and drifts of latency and memory) of every
        series of the store that matches, with the environment change that came with each
        (``autotune.changepoints``, as ``autotune history`` shows them), oldest run first
        per series (``CHANGE_POINT_COLUMNS``)."""
        from autotune.changepoints import change_points, points_of, series_in

        rows = []
        for pairs in series_in(self.store, model, config, target, backend).values():
            first = pairs[0][1]
            rows.extend({"model": first.model, "config_id": first.config.id,
                         "backend": first.backend, "target": first.target,
                         **{name: found.to_json()[name] for name in CHANGE_POINT_COLUMNS[4:]}}
                        for found in change_points(points_of(pairs)))
        return _frame(rows, CHANGE_POINT_COLUMNS)


def run_benchmark(model: str | Path = DEFAULT_MODEL, *, space: str = "default",
                  targets: Sequence[str] = (DEFAULT_TARGET,),
                  backends: Sequence[str] | None = None, strategy: str = "exhaustive",
                  budget: int | None = None, store: str = DEFAULT_STORE_URL,
                  report_dir: str | Path | None = "reports", progress: bool = False,
                  **settings) -> str:
    """One benchmark run, as ``autotune run`` makes it; returns the run id.

    Args:
        model, space, targets, backends, strategy, budget: what ``autotune run``'s flags of
            those names take (zoo names or files; ``backends`` None: every backend).
        store: the result store's URL.
        report_dir: where the report is written (None: no report).
        progress: show a progress bar.
        **settings: any other field of ``autotune.settings.RunSpec`` (``data``, ``metric``,
            ``seed``, ``passes``, ``min_repeats``, ``min_time_s``, ``tuning_trials``,
            ``trial_timeout_s``, ...), with ``autotune run``'s defaults.

    Raises:
        InputError: a bad name, file or setting (as ``autotune run`` exits 2 for).
        TypeError: a setting ``RunSpec`` does not have.
    """
    from autotune.backends import backend_names, get_backend
    from autotune.cli.common import workspace_for
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.report import write_report
    from autotune.search import StrategyContext, make_strategy
    from autotune.space import configs_space, load_space
    from autotune.target import load_target
    from autotune.zoo import resolve_model

    spec = RunSpec(model=str(model), space=space, targets=tuple(targets),
                   backends=tuple(backends or backend_names()), strategy=strategy,
                   budget=budget, **settings).validate()
    results = Store(store)
    loaded_space = configs_space(spec.configs) if spec.configs else load_space(spec.space)
    loaded_targets = [load_target(name) for name in spec.targets]
    for name in spec.backends:
        get_backend(name)
    run_settings = RunSettings.from_spec(spec, workspace_for(store), progress=progress)
    source = resolve_model(spec.model, None if spec.data is None else Path(spec.data),
                           spec.metric, spec.shapes)
    strategy_ = make_strategy(spec.strategy, spec.seed, StrategyContext(
        source.path, results, model_dir=run_settings.workspace / "costmodels"))
    run_id = start_run(results, source, loaded_space, loaded_targets, run_settings,
                       strategy_, spec)
    execute_run(results, run_id, loaded_space, loaded_targets, run_settings, strategy_)
    if report_dir is not None:
        write_report(results, run_id, Path(report_dir))
    return run_id


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame.from_records(rows, columns=list(columns))


def _key(trial) -> dict:
    return {"run_id": trial.run_id, "config_id": trial.config.id, "backend": trial.backend,
            "target": trial.target}


def _targets(facts: RunFacts, target: str | None):
    """The run's targets, or the one asked for (``InputError`` when the run has no trial
    on it)."""
    if target is None:
        return facts.targets
    chosen = [t for t in facts.targets if t.name == target]
    if not chosen:
        from autotune.errors import InputError

        raise InputError(f"target {target!r}: run {facts.run.id} has no trials on it (it "
                         f"has: {', '.join(t.name for t in facts.targets) or 'none'})")
    return chosen


def _pick_record(facts: TrialFacts, kind: str, miss: float | None) -> dict:
    return {**trial_record(facts), "pick": kind, "misses_accuracy_drop_by": miss}


def _run_record(run: Run) -> dict:
    settings = run.settings
    return {"run_id": run.id, "created_at": run.created_at, "finished_at": run.finished_at,
            "status": run.status, "model": run.model, "model_path": run.model_path,
            "model_hash": run.model_hash, "space": run.space, "metric": run.metric,
            "synthetic_data": run.synthetic_data, "reference_accuracy": run.reference_accuracy,
            "strategy": settings.strategy, "budget": settings.budget,
            "passes": settings.passes, "tuning_trials": settings.tuning_trials,
            "targets": ",".join(settings.targets), "backends": ",".join(settings.backends),
            "hostname": run.host.get("hostname"), "cpu_model": run.host.get("cpu_model"),
            "cores": run.host.get("cores"),
            "versions": ", ".join(f"{name} {version}"
                                  for name, version in sorted(run.versions.items())),
            "campaign": run.campaign}

"""One benchmark run from its settings: measure, report and gate it (``autotune run``, and
each cell of a run file's campaign)."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from autotune.changepoints import RunChanges, SeriesChange
from autotune.cli.common import runtime_python, workspace_for
from autotune.cli.compare import judge, print_verdict, verdict_json, verdict_suite
from autotune.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from autotune.cli.junit import Case, Suite
from autotune.errors import InputError
from autotune.settings import RunSpec
from autotune.space import configs_space
from autotune.store import DEFAULT_STORE_URL, RUN_ALIASES, Run, Store

log = logging.getLogger("autotune")


@dataclass
class RunResult:
    """What one run came to: its exit code, its part of ``--json`` and of ``--junit``."""

    code: int
    summary: dict
    suite: Suite | None = None


def check_gate(baseline: str | None, fail_on, junit) -> None:
    """A gate needs what it judges against: a regression (and JUnit's comparison) a
    baseline; a change point only the store's history."""
    if fail_on and "regression" in fail_on and not baseline:
        raise InputError("--fail-on regression needs --baseline (previous, latest or a run id)")
    if junit and not baseline and "change" not in (fail_on or ()):
        raise InputError("--junit needs --baseline (previous, latest or a run id) or "
                         "--fail-on change")


def load_names(spec: RunSpec):
    """The space and targets a run names, and a check of its backends: an unknown name is an
    InputError before anything is measured."""
    from autotune.backends import get_backend
    from autotune.space import load_space
    from autotune.target import load_target
    from autotune.zoo import ZOO

    spec.validate()
    if spec.model not in ZOO and not Path(spec.model).is_file():
        raise InputError(f"unknown model {spec.model!r}: neither a zoo name ({', '.join(ZOO)}) "
                         f"nor an existing file")
    if spec.data is not None and not Path(spec.data).is_file():
        raise InputError(f"{spec.data}: data file not found")
    space = configs_space(spec.configs) if spec.configs else load_space(spec.space)
    targets = [load_target(name) for name in spec.targets]
    for name in spec.backends:
        get_backend(name)
    return space, targets


def run_one(args, store: Store, spec: RunSpec, thresholds, say, resumed: Run | None = None,
            campaign: str | None = None) -> RunResult:
    """One run with ``spec`` (or the rest of ``resumed``), its report and its gate."""
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.report import write_report
    from autotune.search import StrategyContext, make_strategy
    from autotune.zoo import resolve_model

    space, targets = load_names(spec)
    workspace = workspace_for(args.store)
    settings = RunSettings.from_spec(spec, workspace,
                                     progress=not (args.no_progress or args.quiet),
                                     python=runtime_python(spec.runtime))
    if resumed is not None:
        run_id = resumed.id  # latest and previous name a run too
        model_path = Path(resumed.model_path)
    else:
        model = resolve_model(spec.model, None if spec.data is None else Path(spec.data),
                              spec.metric, spec.shapes)
        model_path = model.path
        make_strategy(spec.strategy, spec.seed, StrategyContext(model.path))  # a bad name fails
        if model.dataset.synthetic:
            log.warning("no --data for %s: calibrating on seeded random inputs and scoring "
                        "fidelity vs fp32 only (no task accuracy)", spec.model)
        # Targets from the built-in folder by name, others by their file.
        recorded = tuple(t.name if t.path and t.path.parent.name == "targets" else str(t.path)
                         for t in targets)
        spec = replace(spec, targets=recorded, backends=settings.backends)
        run_id = start_run(store, model, space, targets, settings, None, spec,
                           campaign=campaign)
    strategy = make_strategy(spec.strategy, spec.seed, StrategyContext(
        model_path, store, model_dir=settings.workspace / "costmodels", run_id=run_id,
        converge_below=spec.until_converged))
    print(f"run {run_id}", file=say, flush=True)
    with _sigterm_as_interrupt():
        outcome = execute_run(store, run_id, space, targets, settings, strategy)
    report = write_report(store, run_id, args.report_dir)
    failed = [trial for trial in outcome.trials if not trial.ok]
    search = store.get_run(run_id).search
    if search.converged is not None:
        print(search.converged.text(), file=say)
    print(f"{outcome.succeeded} successful trials, {len(failed)} failed or skipped; "
          f"report: {report / 'summary.md'}", file=say)
    summary = {"run_id": run_id, "status": store.get_run(run_id).status,
               "report": {"dir": str(report), "summary": str(report / "summary.md")},
               "trials": _counts(outcome.trials), "gate": None,
               "search": search.to_json()}
    suite = None
    if outcome.interrupted:
        where = (f"during trial {outcome.in_flight} (not stored; it runs again on resume)"
                 if outcome.in_flight else "between trials")
        stored_count = len(outcome.trials)
        print(f"interrupted {where}; {stored_count} trial{'' if stored_count == 1 else 's'} "
              f"stored; resume with: {resume_command(run_id, store)}", file=sys.stderr)
        code = EXIT_INTERRUPTED
    else:
        code = EXIT_OK if outcome.succeeded else EXIT_FAILED
        run = store.get_run(run_id)
        fail_on = args.fail_on or ()
        if args.baseline:
            summary["gate"], suite = _gate(store, args, run, thresholds, say)
            if "regression" in fail_on and summary["gate"]["regressions"]:
                code = EXIT_FAILED
        changes, cases = change_gate(store, run, thresholds, say,
                                     quiet=args.json or "change" not in fail_on)
        summary["changes"] = changes.to_json()
        if "change" in fail_on:
            if changes.gating:
                code = max(code, EXIT_FAILED)
            suite = (Suite(f"change points - {run.id}", cases) if suite is None
                     else Suite(suite.name, [*suite.cases, *cases]))
    return RunResult(code, summary, suite)


def change_gate(store: Store, run: Run, thresholds, say,
                quiet: bool = False) -> tuple[RunChanges, list[Case]]:
    """The change points at the end of ``run``'s series (the report's "Changes since the
    last comparable runs", judged with the gate's thresholds), printed unless ``quiet``, and
    their JUnit cases: a failure per new change point that made a series worse (what
    ``--fail-on change`` fails on), else one passing case."""
    from autotune.report.facts import find_changes

    changes = find_changes(store, run, store.trials(run.id), thresholds)
    if not quiet:
        print(f"change points: {changes.shortage}" if not changes.enough_runs
              else f"change points: {len(changes.changes)} recent, {len(changes.gating)} new "
                   f"and worse", file=say)
        for found in changes.changes:
            print(f"  {_change_name(found)}: {found.change.summary}"
                  + (" (new, worse)" if found.gating else " (new)" if found.new else ""),
                  file=say)
    classname = f"autotune.{run.model}"
    cases = [Case(f"change point {found.change.metric} {_change_name(found)}", classname,
                  failure=found.change.summary) for found in changes.gating]
    return changes, cases or [Case("change points", classname,
                                   output=changes.shortage or "no new change point that made "
                                                              "a series worse")]


def _change_name(found: SeriesChange) -> str:
    trial = found.trial
    return f"{trial.config.label} ({trial.config.id}) {trial.backend}/{trial.target}"


def _counts(trials) -> dict:
    by_status: dict[str, int] = {}
    for trial in trials:
        by_status[trial.status] = by_status.get(trial.status, 0) + 1
    return {"total": len(trials), "ok": by_status.get("ok", 0), "by_status": by_status}


def _gate(store, args, run, thresholds, say) -> tuple[dict, Suite]:
    """Compare the finished ``run`` with its baseline (``--baseline``) and print the
    comparison (JSON callers get it in the summary); returns the gate's summary and its
    JUnit test suite."""
    from autotune.gate import previous_comparable_run

    if args.baseline in RUN_ALIASES:
        baseline = previous_comparable_run(store, run, store.trials(run.id))
    else:
        baseline = store.get_run(args.baseline)
    if baseline is None:
        message = (f"no baseline: no finished run before {run.id} in {store.shown_url} has a trial "
                   f"comparable with this run's (same model, config, backend, target, tuning "
                   f"budget, emulation"
                   + ("; in a campaign also the same runtime and space, from another night"
                      if run.campaign else "")
                   + "); nothing to compare, so no regression")
        print(message, file=say)
        suite = Suite(f"compare - {run.id}",
                      [Case("baseline", f"autotune.{run.model}", skipped=message)])
        return {"baseline": None, "message": message, "regressions": 0,
                "comparison": None}, suite
    verdict = judge(store, args.store, baseline, run, thresholds)
    if not args.json:
        print(f"\ngate: {run.id} against baseline {baseline.id}")
        print_verdict(verdict)
    count = len(verdict.regressions)
    message = f"{count} regression(s) against baseline {baseline.id}"
    print(message, file=say)
    return {"baseline": baseline.id, "message": message, "regressions": count,
            "comparison": verdict_json(verdict)}, verdict_suite(verdict)


def resume_command(run_id: str, store: Store) -> str:
    """The shell command that finishes an interrupted run, quoted, with the store's password
    hidden (it is asked for again; better, kept out of the URL: PGPASSWORD or ~/.pgpass)."""
    parts = ["autotune", "run", "--resume", run_id]
    if store.url != DEFAULT_STORE_URL:
        parts += ["--store", store.shown_url]
    return shlex.join(parts)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM (a CI timeout, ``systemctl stop``, ``kill``) end a run as Ctrl-C does.

    Python's default for SIGTERM is to die on the spot: the run would stay marked running and
    print nothing. As an interruption, the trial in flight is dropped (its worker killed), the
    run is marked interrupted and the resume command is printed.
    """
    def interrupt(_signum, _frame) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals are not ours to set
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

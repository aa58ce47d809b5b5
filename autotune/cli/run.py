"""``autotune run``: one benchmark run, and ``autotune report``'s sibling for resuming."""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from autotune.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from autotune.cli.common import (
    add_store_option,
    open_store,
    print_json,
    runtime_python,
    workspace_for,
)
from autotune.cli.compare import (
    add_junit_option,
    add_threshold_options,
    judge,
    print_verdict,
    thresholds_from,
    verdict_json,
    verdict_suite,
)
from autotune.cli.junit import Case, Suite, write_suites
from autotune.errors import InputError
from autotune.machine_state import CONTENTION_LIMITS
from autotune.settings import DEFAULT_TUNING_TRIALS, RunSpec
from autotune.store import DEFAULT_STORE_URL, RUN_ALIASES, Run, Store

log = logging.getLogger("autotune")


def default_backends() -> tuple[str, ...]:
    """Every registered backend, side by side (the default space gives TVM one config per
    kernel family). Read when a run starts, so that ``autotune --help`` imports no backend."""
    from autotune.backends import backend_names

    return tuple(backend_names())


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "run", help="run a benchmark: search a space of quantization configs",
        description="Quantize, compile and measure every config the strategy picks, store "
                    "each trial as it finishes, and write the report.")
    parser.add_argument("-f", "--file", type=Path, default=None, metavar="TOML",
                        help="a run file: the matrix of models, spaces (or configs) and "
                             "runtimes to run, one run per cell, grouped under one campaign "
                             "id; the flags given here override its values (README: Nightly)")
    parser.add_argument("--model", default=argparse.SUPPRESS, help="zoo name or ONNX file "
                        "(default: digits-cnn)")
    parser.add_argument("--data", default=argparse.SUPPRESS, type=Path,
                        help=".npz with calibration/evaluation inputs for an ONNX file")
    parser.add_argument("--metric", default=argparse.SUPPRESS,
                        choices=("top1", "cosine", "mse", "spearman"),
                        help="task metric of --data: top1 (integer labels), spearman (a gold "
                             "score per pair of samples), cosine or mse (target outputs as "
                             "labels, else against fp32); default: top1 with labels, else "
                             "fidelity vs fp32")
    parser.add_argument("--space", default=argparse.SUPPRESS,
                        help="search space name or TOML file (default: default)")
    parser.add_argument("--config", action="append", default=argparse.SUPPRESS, metavar="TEXT",
                        help="measure this config (canonical text, e.g. 'w:int8:sym:per_channel "
                             "a:uint8:asym cal:minmax'; repeatable) instead of a space; fp32 is "
                             "always added as the baseline")
    parser.add_argument("--target", action="append", default=argparse.SUPPRESS,
                        help="target name or TOML file (repeatable; default: host-cpu)")
    parser.add_argument("--backend", action="append", default=argparse.SUPPRESS,
                        help="backend name (repeatable; default: every backend, as listed by "
                             "`autotune targets`; a space may give a backend only some of its "
                             "configs)")
    parser.add_argument("--strategy", default=argparse.SUPPRESS,
                        help="search strategy: exhaustive, random, or guided (an XGBoost cost "
                             "model picks the configs most likely to improve the latency vs "
                             "error frontier; use with --budget) (default: exhaustive)")
    parser.add_argument("--budget", type=int, default=argparse.SUPPRESS,
                        help="maximum measured trials (default: the whole space)")
    parser.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                        help="seed of the random and guided strategies (default: 0)")
    add_store_option(parser)
    parser.add_argument("--report-dir", default=Path("reports"), type=Path,
                        help="where reports are written (default: reports/)")
    parser.add_argument("--resume", metavar="RUN_ID", default=None,
                        help="continue an interrupted run; its stored settings are used")
    parser.add_argument("--trial-timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="kill a trial after this long, tuning included (default: 600, "
                             "plus 5 s per --tuning-trials)")
    parser.add_argument("--trial-memory", type=int, default=argparse.SUPPRESS, metavar="MIB",
                        help="kill a trial whose worker uses more memory (default: 60%% of RAM, "
                             "at most 8192 MiB)")
    parser.add_argument("--tuning-trials", type=int, default=argparse.SUPPRESS,
                        metavar="N",
                        help="compiler tuning budget per model for backends that tune (TVM: "
                             "MetaSchedule trials, every kernel at least one search of 8; "
                             "reused from a shared database; 0: untuned; "
                             f"default: {DEFAULT_TUNING_TRIALS})")
    parser.add_argument("--min-repeats", type=int, default=argparse.SUPPRESS,
                        help="timed runs per trial, at least (default: 50)")
    parser.add_argument("--min-time", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="timed seconds per trial, at least (default: 1.0)")
    parser.add_argument("--max-spread", type=float, default=argparse.SUPPRESS, metavar="RATIO",
                        help="measure a trial again (twice at most, each in a fresh worker) "
                             "while its latency spread (IQR / median) is above this, then "
                             "flag it noisy (default: 0.10; 0: off)")
    parser.add_argument("--max-other-cpu", type=float, default=argparse.SUPPRESS,
                        metavar="FRACTION",
                        help="measure a trial again (within the same two re-measures) while "
                             "other processes took more than this share of its cores during "
                             "its timed runs, then flag it contended; `autotune compare` "
                             "calls no latency change on a contended trial (default: "
                             f"{CONTENTION_LIMITS.other_share:g}; 0: off)")
    parser.add_argument("--max-steal", type=float, default=argparse.SUPPRESS,
                        metavar="FRACTION",
                        help="the same for the hypervisor's steal time on its cores "
                             f"(default: {CONTENTION_LIMITS.steal_share:g}; 0: off)")
    parser.add_argument("--passes", type=int, default=argparse.SUPPRESS, metavar="N",
                        help="measurement passes per trial: after all trials, each successful "
                             "one is measured again N-1 times in fresh workers, in shuffled "
                             "order; its latency is the median of all passes' samples; "
                             "`autotune compare` judges its fastest pass and allows for the "
                             "spread between pass medians (default: 3; 1: one pass)")
    parser.add_argument("--runtime", action="append", default=argparse.SUPPRESS, metavar="SPEC",
                        help="run the trial workers against this runtime version, a pip "
                             "requirement such as onnxruntime==1.20.1 (repeatable; a backend's "
                             "runtime too), in a virtual environment built once under "
                             "envs/ of the user cache (~/.cache/autotune; AUTOTUNE_CACHE_DIR)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress (default: a bar on a terminal, else one line per "
                             "finished trial)")
    gate = parser.add_argument_group(
        "gate", "compare the finished run with a baseline, as `autotune compare` does: the "
                "nightly job in one command")
    gate.add_argument("--baseline", metavar="previous|latest|RUN_ID", default=None,
                      help="previous (or latest, the same here): the latest finished run "
                           "before this one with a comparable trial (same model, config, "
                           "backend, target, tuning budget, emulation); when there is none "
                           "(the first night) it says so and exits 0; or a run id")
    gate.add_argument("--fail-on", choices=("regression",), default=None,
                      help="exit 1 when the comparison finds a regression (default: report "
                           "it only)")
    add_threshold_options(gate)
    add_junit_option(gate)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout at the end (run id, report "
                             "paths, trial counts, the gate's comparison); the rest goes to "
                             "stderr")
    parser.set_defaults(handler=handle)


def configs_space(texts: Sequence[str]):
    from autotune.config import FP32, ConfigError, QuantConfig
    from autotune.space import SearchSpace

    configs = [FP32]
    for text in texts:
        try:
            configs.append(QuantConfig.from_text(text))
        except ConfigError as error:
            raise InputError(f"--config {text!r}: {error}") from None
    return SearchSpace("custom", "configs given with --config", tuple(dict.fromkeys(configs)))


# The flags that set a run's settings, by ``RunSpec`` field. They default to nothing
# (argparse.SUPPRESS): an absent flag takes RunSpec's default, or the run file's value.
SPEC_FLAGS = {"model": "model", "data": "data", "metric": "metric", "space": "space",
              "config": "configs", "target": "targets", "backend": "backends",
              "strategy": "strategy", "budget": "budget", "seed": "seed",
              "trial_timeout": "trial_timeout_s", "trial_memory": "trial_memory_mib",
              "tuning_trials": "tuning_trials", "min_repeats": "min_repeats",
              "min_time": "min_time_s", "max_spread": "max_spread",
              "max_other_cpu": "max_other_cpu", "max_steal": "max_steal", "passes": "passes",
              "runtime": "runtime"}


def given_settings(args) -> dict:
    """The run settings the user gave as flags (``RunSpec`` field -> value), and only those."""
    values = {}
    for dest, name in SPEC_FLAGS.items():
        if hasattr(args, dest):
            value = getattr(args, dest)
            values[name] = (tuple(value) if isinstance(value, list)
                            else str(value) if isinstance(value, Path) else value)
    return values


def spec_from_args(args) -> RunSpec:
    """The run's settings from its flags (not yet validated)."""
    return replace(RunSpec(), **given_settings(args))


@dataclass
class RunResult:
    """What one run came to: its exit code, its part of ``--json`` and of ``--junit``."""

    code: int
    summary: dict
    suite: Suite | None = None


def handle(args) -> int:
    thresholds = thresholds_from(args)
    if (args.fail_on or args.junit) and not args.baseline:
        raise InputError(f"{'--fail-on' if args.fail_on else '--junit'} needs --baseline "
                         f"(previous, latest or a run id)")
    if args.file is not None and args.resume:
        raise InputError("--resume continues one run and takes no --file: resume each "
                         "interrupted run of a campaign by its id")
    store = open_store(args.store)
    if args.baseline not in (None, *RUN_ALIASES):
        store.get_run(args.baseline)  # a typo fails now, not after the run
    # With --json, stdout holds the JSON document only; what people read goes to stderr.
    say = sys.stderr if args.json else sys.stdout
    if args.file is not None:
        from autotune.cli.campaign import run_campaign

        return run_campaign(args, store, thresholds, say)
    resumed = None
    if args.resume:
        resumed = store.get_run(args.resume)
        spec = resumed.settings
        print(f"resuming run {resumed.id} ({resumed.status}) with its stored settings",
              file=sys.stderr)
    else:
        spec = spec_from_args(args)
    result = run_one(args, store, spec, thresholds, say, resumed=resumed)
    if args.junit is not None and result.suite is not None:
        write_suites(args.junit, [result.suite])
    if args.json:
        print_json({**result.summary, "exit_code": result.code})
    return result.code


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
        strategy = make_strategy(spec.strategy, spec.seed, StrategyContext(
            Path(resumed.model_path), store, model_dir=settings.workspace / "costmodels"))
    else:
        model = resolve_model(spec.model, None if spec.data is None else Path(spec.data),
                              spec.metric)
        strategy = make_strategy(spec.strategy, spec.seed, StrategyContext(
            model.path, store, model_dir=settings.workspace / "costmodels"))
        if model.dataset.synthetic:
            log.warning("no --data for %s: calibrating on seeded random inputs and scoring "
                        "fidelity vs fp32 only (no task accuracy)", model.path)
        # Targets from the built-in folder by name, others by their file.
        recorded = tuple(t.name if t.path and t.path.parent.name == "targets" else str(t.path)
                         for t in targets)
        spec = replace(spec, targets=recorded, backends=settings.backends)
        run_id = start_run(store, model, space, targets, settings, strategy, spec,
                           campaign=campaign)
    print(f"run {run_id}", file=say, flush=True)
    with _sigterm_as_interrupt():
        outcome = execute_run(store, run_id, space, targets, settings, strategy)
    report = write_report(store, run_id, args.report_dir)
    failed = [trial for trial in outcome.trials if not trial.ok]
    print(f"{outcome.succeeded} successful trials, {len(failed)} failed or skipped; "
          f"report: {report / 'summary.md'}", file=say)
    summary = {"run_id": run_id, "status": store.get_run(run_id).status,
               "report": {"dir": str(report), "summary": str(report / "summary.md")},
               "trials": _counts(outcome.trials), "gate": None}
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
        if args.baseline:
            summary["gate"], suite = _gate(store, args, store.get_run(run_id), thresholds, say)
            if args.fail_on == "regression" and summary["gate"]["regressions"]:
                code = EXIT_FAILED
    return RunResult(code, summary, suite)


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
        message = (f"no baseline: no finished run before {run.id} in {store.url} has a trial "
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

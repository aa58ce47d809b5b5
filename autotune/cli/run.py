"""``autotune run``: one benchmark run, and ``autotune report``'s sibling for resuming."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from autotune.cli.common import add_store_option, open_store, workspace_for
from autotune.errors import InputError
from autotune.store import DEFAULT_STORE_URL

log = logging.getLogger("autotune")


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "run", help="run a benchmark: search a space of quantization configs",
        description="Quantize, compile and measure every config the strategy picks, store "
                    "each trial as it finishes, and write the report.")
    parser.add_argument("--model", default=None, help="zoo name or ONNX file "
                        "(default: digits-cnn)")
    parser.add_argument("--data", default=None, type=Path,
                        help=".npz with calibration/evaluation inputs for an ONNX file")
    parser.add_argument("--space", default="default", help="search space name or TOML file")
    parser.add_argument("--config", action="append", default=None, metavar="TEXT",
                        help="measure this config (canonical text, e.g. 'w:int8:sym:per_channel "
                             "a:uint8:asym cal:minmax'; repeatable) instead of a space; fp32 is "
                             "always added as the baseline")
    parser.add_argument("--target", action="append", default=None,
                        help="target name or TOML file (repeatable; default: host-cpu)")
    parser.add_argument("--backend", action="append", default=None,
                        help="backend (repeatable; default: every registered backend)")
    parser.add_argument("--strategy", default="exhaustive",
                        help="search strategy: exhaustive or random (default: exhaustive)")
    parser.add_argument("--budget", type=int, default=None,
                        help="maximum measured trials (default: the whole space)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random strategy")
    add_store_option(parser)
    parser.add_argument("--report-dir", default=Path("reports"), type=Path,
                        help="where reports are written (default: reports/)")
    parser.add_argument("--resume", metavar="RUN_ID", default=None,
                        help="continue an interrupted run; its stored settings are used")
    parser.add_argument("--trial-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="kill a trial after this long (default: 600)")
    parser.add_argument("--trial-memory", type=int, default=None, metavar="MIB",
                        help="kill a trial whose worker uses more memory (default: 60%% of RAM, "
                             "at most 8192 MiB)")
    parser.add_argument("--tuning-trials", type=int, default=0, metavar="N",
                        help="compiler tuning budget per model for backends that tune "
                             "(default: 0, untuned)")
    parser.add_argument("--min-repeats", type=int, default=50,
                        help="timed runs per trial, at least (default: 50)")
    parser.add_argument("--min-time", type=float, default=1.0, metavar="SECONDS",
                        help="timed seconds per trial, at least (default: 1.0)")
    parser.add_argument("--runtime", action="append", default=None, metavar="SPEC",
                        help="run the trial workers against this runtime version, a pip "
                             "requirement such as openvino==2025.4.0 (repeatable), in a "
                             "virtual environment built once under results/envs/")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=handle)


def _memory_limit_bytes(mib: int | None) -> int:
    if mib is not None:
        if mib <= 0:
            raise InputError("--trial-memory: must be a positive number of MiB")
        return mib << 20
    import psutil

    return min(int(psutil.virtual_memory().total * 0.6), 8 << 30)


def _runtime_python(specs: list[str] | None, workspace: Path) -> str | None:
    if not specs:
        return None
    from autotune.runtimes import ensure_env

    env = ensure_env(specs, workspace / "envs")
    print(f"runtime {' '.join(env.specs)}: "
          + ", ".join(f"{name} {value}" for name, value in env.versions.items()),
          file=sys.stderr)
    return str(env.python)


def configs_space(texts: list[str]):
    from autotune.config import FP32, ConfigError, QuantConfig
    from autotune.space import SearchSpace

    configs = [FP32]
    for text in texts:
        try:
            configs.append(QuantConfig.from_text(text))
        except ConfigError as error:
            raise InputError(f"--config {text!r}: {error}") from None
    return SearchSpace("custom", "configs given with --config", tuple(dict.fromkeys(configs)))


def handle(args) -> int:
    from autotune.backends import backend_names, get_backend
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.measure import MeasurementProtocol
    from autotune.report import write_report
    from autotune.search import make_strategy
    from autotune.space import load_space
    from autotune.target import load_target
    from autotune.zoo import DEFAULT_MODEL, resolve_model

    store = open_store(args.store)
    stored = vars(args)
    if args.resume:
        run = store.get_run(args.resume)
        stored = {**stored, **run.args}
        print(f"resuming run {run.id} ({run.status}) with its stored settings", file=sys.stderr)

    for name, value in (("--budget", stored["budget"]),
                        ("--tuning-trials", stored["tuning_trials"]),
                        ("--min-repeats", stored["min_repeats"])):
        if value is not None and value < 0:
            raise InputError(f"{name}: must not be negative; got {value}")
    if stored["trial_timeout"] <= 0:
        raise InputError(f"--trial-timeout: must be positive; got {stored['trial_timeout']}")
    space = (configs_space(stored["config"]) if stored.get("config")
             else load_space(stored["space"]))
    targets = [load_target(name) for name in (stored["target"] or ["host-cpu"])]
    backends = tuple(stored["backend"] or backend_names())
    for name in backends:
        get_backend(name)
    strategy = make_strategy(stored["strategy"], stored["seed"])
    settings = RunSettings(
        backends=backends, budget=stored["budget"], trial_timeout_s=stored["trial_timeout"],
        memory_limit_bytes=_memory_limit_bytes(stored["trial_memory"]),
        tuning_trials=stored["tuning_trials"],
        protocol=MeasurementProtocol(min_repeats=stored["min_repeats"],
                                     min_time_s=stored["min_time"]),
        workspace=workspace_for(args.store), progress=not args.no_progress,
        python=_runtime_python(stored.get("runtime"), workspace_for(args.store)))

    if args.resume:
        run_id = args.resume
    else:
        model = resolve_model(args.model or DEFAULT_MODEL, args.data)
        if model.dataset.synthetic:
            log.warning("no --data for %s: calibrating on seeded random inputs and scoring "
                        "fidelity vs fp32 only (no task accuracy)", model.path)
        recorded = {key: (str(value) if isinstance(value, Path) else value)
                    for key, value in stored.items()
                    if key not in ("handler", "command", "store", "report_dir", "resume",
                                   "no_progress")}
        recorded["model"] = args.model or DEFAULT_MODEL
        recorded["target"] = [t.name if t.path and t.path.parent.name == "targets" else str(t.path)
                              for t in targets]
        recorded["backend"] = list(backends)
        run_id = start_run(store, model, space, targets, settings, strategy, recorded)
    print(f"run {run_id}", flush=True)
    outcome = execute_run(store, run_id, space, targets, settings, strategy)
    report = write_report(store, run_id, args.report_dir)
    failed = [trial for trial in outcome.trials if not trial.ok]
    print(f"{outcome.succeeded} successful trials, {len(failed)} failed or skipped; "
          f"report: {report / 'summary.md'}")
    if outcome.interrupted:
        print(f"interrupted after {len(outcome.trials)} stored trials; resume with: "
              f"autotune run --resume {run_id}"
              + ("" if args.store == DEFAULT_STORE_URL else f" --store {args.store}"),
              file=sys.stderr)
        return 130
    return 0 if outcome.succeeded else 1

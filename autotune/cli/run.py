"""``autotune run``: its flags, and one run (``autotune.cli.one_run``) or, with ``-f``, every
cell of a run file (``autotune.cli.campaign``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from autotune.cli.common import add_store_option, open_store, print_json
from autotune.cli.compare import add_junit_option, add_threshold_options, thresholds_from
from autotune.cli.junit import write_suites
from autotune.cli.one_run import check_gate, run_one
from autotune.errors import InputError
from autotune.machine_state import CONTENTION_LIMITS
from autotune.runfile import FAIL_ON
from autotune.settings import DEFAULT_CONVERGENCE, DEFAULT_TUNING_TRIALS, RunSpec
from autotune.store import RUN_ALIASES


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
    parser.add_argument("--shape", default=argparse.SUPPRESS, action="append",
                        metavar="INPUT=DIMS",
                        help="size of an ONNX file's dynamic input, e.g. input_ids=1x128 or "
                             "image=1x3x224x224 (repeatable; default: batch 1, a sequence "
                             "dimension 128, else the --data arrays' shapes)")
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
    parser.add_argument("--until-converged", type=float, nargs="?", default=argparse.SUPPRESS,
                        const=DEFAULT_CONVERGENCE, metavar="FRACTION",
                        help="guided search: stop when no remaining candidate's expected "
                             "hypervolume improvement reaches this fraction of the current "
                             "hypervolume (default when given without a value: "
                             f"{DEFAULT_CONVERGENCE:g}); --budget still caps it")
    parser.add_argument("--predict-only", action="store_true",
                        help="measure nothing: train the cost model on every trial in the "
                             "store, print the predicted front of the model (latency with the "
                             "ensemble's interval, error, memory) and the budget guided search "
                             "expects to need, and store the predictions")
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
    parser.add_argument("--max-canary-slowdown", type=float,
                        default=argparse.SUPPRESS, metavar="FRACTION",
                        help="the same when the reference kernel timed around the timed runs "
                             "ran this much slower than its fastest on these cores, a slow "
                             "spell the guest's counters cannot see (default: "
                             f"{CONTENTION_LIMITS.canary_slowdown:g}: off; every pass records "
                             "the reading)")
    parser.add_argument("--passes", type=int, default=argparse.SUPPRESS, metavar="N",
                        help="measurement passes per trial: after all trials, each successful "
                             "one is measured again N-1 times in fresh workers, in shuffled "
                             "order; its latency is the median of all passes' samples; "
                             "`autotune compare` judges its fastest pass and allows for the "
                             "spread between pass medians (default: 3; 1: one pass)")
    parser.add_argument("--batch", type=_batches, default=argparse.SUPPRESS, metavar="N,N",
                        help="throughput mode: also measure inferences per second at these "
                             "batch sizes, e.g. 1,8 (OpenVINO: THROUGHPUT hint, its streams "
                             "and async requests kept busy; TVM: the model built for each "
                             "batch); stored with each trial, shown in reports, picked by "
                             "`pick --objective throughput` (default: off)")
    parser.add_argument("--runtime", action="append", default=argparse.SUPPRESS, metavar="SPEC",
                        help="run the trial workers against this runtime version, a pip "
                             "requirement such as onnxruntime==1.22.1 or a backend's runtime "
                             "(repeatable), in a virtual environment built once under envs/ "
                             "of the user cache (~/.cache/autotune; AUTOTUNE_CACHE_DIR) with "
                             "what the run's backends need, the rest pinned as installed here")
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
    gate.add_argument("--fail-on", choices=FAIL_ON, action="append", default=None,
                      help="exit 1 when the comparison with --baseline finds a regression "
                           "(regression), or when this run confirms a new change point that "
                           "made a latency or memory series worse (change: the report's "
                           "'Changes since the last comparable runs'); repeatable (default: "
                           "report them only)")
    add_threshold_options(gate)
    add_junit_option(gate)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout at the end (run id, report "
                             "paths, trial counts, the gate's comparison); the rest goes to "
                             "stderr")
    parser.set_defaults(handler=handle)




# The flags that set a run's settings, by ``RunSpec`` field. They default to nothing
# (argparse.SUPPRESS): an absent flag takes RunSpec's default, or the run file's value.
SPEC_FLAGS = {"model": "model", "data": "data", "metric": "metric", "shape": "shapes",
              "space": "space",
              "config": "configs", "target": "targets", "backend": "backends",
              "strategy": "strategy", "budget": "budget", "seed": "seed",
              "trial_timeout": "trial_timeout_s", "trial_memory": "trial_memory_mib",
              "tuning_trials": "tuning_trials", "min_repeats": "min_repeats",
              "min_time": "min_time_s", "max_spread": "max_spread",
              "max_other_cpu": "max_other_cpu", "max_steal": "max_steal",
              "max_canary_slowdown": "max_canary_slowdown", "passes": "passes",
              "runtime": "runtime", "batch": "batches",
              "until_converged": "until_converged"}


def _batches(text: str) -> tuple[int, ...]:
    """``--batch 1,8``; argparse reports a bad value on one line with exit 2."""
    from autotune.throughput import parse_batches

    try:
        return parse_batches(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix(f"--batch {text}: ")
                                         ) from None


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


def handle(args) -> int:
    thresholds = thresholds_from(args)
    if args.file is None:  # a run file may name the baseline and the gate itself
        check_gate(args.baseline, args.fail_on, args.junit)
    if args.predict_only and args.file is not None:
        raise InputError("--predict-only predicts one model and takes no --file")
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

        return run_campaign(args, store, given_settings(args), thresholds, say)
    if args.predict_only:
        from autotune.cli.predict_only import predict_only

        return predict_only(args, store, spec_from_args(args), say)
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


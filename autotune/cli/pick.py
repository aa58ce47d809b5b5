"""``autotune pick``: the config to deploy under an accuracy (and memory) constraint."""

from __future__ import annotations

from pathlib import Path

from autotune.cli.common import add_store_option, open_store, print_json, print_table
from autotune.cli.export import add_force_option, export_and_report
from autotune.errors import InputError
from autotune.pareto import OBJECTIVES, pick
from autotune.report import reproduce_command


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "pick", help="the config to ship under a constraint",
        description="The best measured config under the constraints, per target. Exits 1 and "
                    "shows the nearest configs when none qualifies.")
    parser.add_argument("run_id", nargs="?", default=None, metavar="RUN_ID",
                        help="run (default: the latest)")
    parser.add_argument("--max-accuracy-drop", type=float, default=1.0, metavar="PP",
                        help="largest accuracy drop vs fp32, in percentage points (default: 1)")
    parser.add_argument("--max-memory", type=float, default=None, metavar="MIB",
                        help="largest memory use of the model, in MiB")
    parser.add_argument("--max-saturation", type=float, default=None, metavar="FRACTION",
                        help="largest share of activation values clipped by the quantized "
                             "ranges, e.g. 0.01 (weight-only and float configs clip none)")
    parser.add_argument("--max-class-drop", type=float, default=None, metavar="PP",
                        help="largest accuracy drop of the worst class vs fp32, in percentage "
                             "points (labelled top1 data only)")
    parser.add_argument("--objective", default="latency", choices=sorted(OBJECTIVES))
    parser.add_argument("--target", default=None, help="only this target")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--export", type=Path, default=None, metavar="DIR",
                        help="export the pick to DIR, as `autotune export` does (one target: "
                             "give --target when the run has several)")
    add_force_option(parser)
    add_store_option(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    if args.max_accuracy_drop < 0:
        raise InputError("--max-accuracy-drop: must not be negative")
    if args.max_saturation is not None and not 0 <= args.max_saturation <= 1:
        raise InputError(f"--max-saturation: a fraction from 0 to 1 (0.01 = 1%); got "
                         f"{args.max_saturation:g}")
    if args.max_class_drop is not None and args.max_class_drop < 0:
        raise InputError("--max-class-drop: must not be negative")
    store = open_store(args.store)
    run = store.get_run(args.run_id)
    trials = store.trials(run.id)
    targets = sorted({trial.target for trial in trials})
    if args.target is not None:
        if args.target not in targets:
            raise InputError(f"--target {args.target}: run {run.id} has no trials on it "
                             f"(it has: {', '.join(targets)})")
        targets = [args.target]
    if args.export is not None and len(targets) > 1:
        raise InputError(f"--export: run {run.id} has trials on {', '.join(targets)}; say "
                         f"which with --target")
    if args.objective == "throughput" and not any(t.throughput_ips for t in trials):
        raise InputError(f"--objective throughput: run {run.id} has no throughput figures "
                         f"(measure them with `autotune run --batch 1,8`)")
    if args.max_class_drop is not None and not any(t.class_accuracy for t in trials):
        raise InputError(f"--max-class-drop: run {run.id} has no per-class accuracy (it "
                         f"needs labelled classes, metric top1)")
    max_memory = None if args.max_memory is None else int(args.max_memory * 2**20)
    max_class_drop = None if args.max_class_drop is None else args.max_class_drop / 100
    answers, chosen = [], None
    for target in targets:
        choice = pick([t for t in trials if t.target == target], args.max_accuracy_drop / 100,
                      args.objective, max_memory, args.max_saturation, max_class_drop)
        chosen = choice.chosen
        answers.append({
            "target": target,
            "met": choice.chosen is not None,
            "choice": _describe(choice.chosen, run) if choice.chosen else None,
            "nearest": [{**_describe(t, run), "misses_accuracy_by_pp": round(miss * 100, 3)}
                        for t, miss in choice.nearest],
        })
    if args.json:
        print_json({"run_id": run.id, "max_accuracy_drop_pp": args.max_accuracy_drop,
                    "objective": args.objective, "answers": answers})
    else:
        for answer in answers:
            if answer["met"]:
                c = answer["choice"]
                print(f"{answer['target']}: ship {c['label']} on {c['backend']}")
                throughput = args.objective == "throughput"
                print_table(["config", "backend", "latency ms", "median ms", "p90 ms",
                             "accuracy", "drop pp", "memory MiB", "size KiB"]
                            + (["inferences/s", "at batch"] if throughput else []),
                            [[c["config_text"], c["backend"], c["latency_ms"],
                              c["latency_median_ms"],
                              c["latency_p90_ms"], c["accuracy"], c["accuracy_drop_pp"],
                              c["memory_mib"], c["artifact_size_kib"]]
                             + ([c["throughput_ips"], c["throughput_batch"]] if throughput
                                else [])])
                deployment = _deployment_text(c)
                if deployment:
                    print(f"deployment: {deployment}")
                print(f"reproduce: {c['reproduce']}")
            else:
                print(f"{answer['target']}: no config meets an accuracy drop of at most "
                      f"{args.max_accuracy_drop} pp"
                      + (f" and memory of at most {args.max_memory} MiB" if max_memory else "")
                      + (f", saturation of at most {args.max_saturation:.2%}"
                         if args.max_saturation is not None else "")
                      + (f", a worst-class drop of at most {args.max_class_drop} pp"
                         if max_class_drop is not None else ""))
                if answer["nearest"]:
                    print("nearest:")
                    print_table(["config", "backend", "drop pp", "misses by pp", "latency ms"],
                                [[n["config_text"], n["backend"], n["accuracy_drop_pp"],
                                  n["misses_accuracy_by_pp"], n["latency_ms"]]
                                 for n in answer["nearest"]])
                else:
                    print("no successful trial on this target to compare with")
            print()
    if not all(answer["met"] for answer in answers):
        return 1
    if args.export is not None:
        return export_and_report(run, chosen, trials, args.store, args.export, args.force)
    return 0


def _describe(trial, run) -> dict:
    return {
        "config_id": trial.config.id,
        "config_text": trial.config.text,
        "label": trial.config.label,
        "config": trial.config.to_dict(),
        "backend": trial.backend,
        "latency_ms": round(trial.latency_ms, 4),  # the fastest pass's median: ranks
        "latency_median_ms": round(trial.latency_median_ms, 4),  # all passes pooled
        "latency_p90_ms": round(trial.latency_p90_ms, 4),
        "accuracy": None if trial.accuracy is None else round(trial.accuracy, 5),
        "accuracy_drop_pp": round(trial.accuracy_drop * 100, 3),
        "memory_mib": None if trial.memory_bytes is None else round(trial.memory_bytes / 2**20, 2),
        "artifact_size_kib": None if trial.artifact_size_bytes is None
        else round(trial.artifact_size_bytes / 1024, 1),
        "versions": trial.versions,
        # The throughput mode's best batch size (--batch); None where it was not measured.
        "throughput_ips": trial.throughput_ips,
        "throughput_batch": best.batch if (best := _best(trial)) else None,
        # Deployment metrics; None where not measured (see README).
        "saturation": trial.saturation_rate,
        "worst_class": None if trial.class_accuracy is None else trial.class_accuracy.worst_class,
        "worst_class_drop_pp": None if trial.worst_class_drop is None
        else round(trial.worst_class_drop * 100, 3),
        "cost_per_million_usd": trial.cost_per_million_usd,
        "reproduce": reproduce_command(run, trial),
    }


def _best(trial):
    return None if trial.throughput is None else trial.throughput.best


def _deployment_text(c: dict) -> str:
    """The choice's deployment metrics in words ("" where none was measured)."""
    parts = []
    if c["saturation"] is not None:
        parts.append(f"saturation {c['saturation']:.3%}")
    if c["worst_class"] is not None:
        parts.append(f"worst class {c['worst_class']} drops {c['worst_class_drop_pp']} pp")
    if c["cost_per_million_usd"] is not None:
        parts.append(f"USD {c['cost_per_million_usd']:.4f} per million inferences")
    return ", ".join(parts)

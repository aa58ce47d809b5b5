"""``autotune export`` and ``autotune verify``: ship the artifact a trial measured, and
re-check it in a fresh process before it ships."""

from __future__ import annotations

import sys
from pathlib import Path

from autotune.cli.common import (
    add_store_option,
    open_store,
    print_json,
    print_table,
    runtime_python,
    workspace_for,
)
from autotune.cli.compare import add_threshold_options, thresholds_from


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "export", help="write a trial's measured artifact and its manifest to a folder",
        description="Write the artifact a trial measured (quantized ONNX, the backend's "
                    "compiled form and its portable one), its inputs and recorded outputs, "
                    "and manifest.json (config, model and file hashes, target, versions, "
                    "measured figures, the reproduce command). Exits 1 when a quantized "
                    "config is not faster than fp32 or the rebuilt artifact disagrees with "
                    "the run, unless --force.")
    parser.add_argument("run_id", nargs="?", default=None, metavar="RUN_ID",
                        help="run (default: the latest)")
    parser.add_argument("folder", type=Path, metavar="DIR", help="new or empty folder")
    parser.add_argument("--config", required=True, metavar="ID",
                        help="config id (or its canonical text or label)")
    parser.add_argument("--target", default=None, help="target (needed when the config ran "
                                                       "on several)")
    parser.add_argument("--backend", default=None, help="backend (needed when the config ran "
                                                        "on several)")
    add_force_option(parser)
    add_store_option(parser)
    parser.set_defaults(handler=handle_export)

    parser = commands.add_parser(
        "verify", help="re-check an exported artifact before it ships",
        description="Check the files' hashes, load the artifact in a fresh worker on the same "
                    "target, compare its outputs with the recorded ones and its latency with "
                    "the manifest's (the compare rule, within the run's noise). Exit 0 when "
                    "all hold, 1 naming what differs, 2 for a folder that is not an export.")
    parser.add_argument("folder", type=Path, metavar="DIR")
    add_threshold_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=handle_verify)


def add_force_option(parser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="export a quantized config that is not faster than fp32, or whose "
                             "rebuilt artifact disagrees with the run (the manifest says so)")


def say(text: str) -> None:
    print(f"autotune: {text}", file=sys.stderr)


def handle_export(args) -> int:
    from autotune.export import find_trial

    store = open_store(args.store)
    run = store.get_run(args.run_id)
    trials = store.trials(run.id)
    trial = find_trial(trials, args.config, args.backend, args.target)
    return export_and_report(run, trial, trials, args.store, args.folder, args.force)


def export_and_report(run, trial, trials, store_url: str, folder: Path, force: bool) -> int:
    """Export ``trial`` (``autotune export`` and ``pick --export``): 0, or 1 with the failed
    check's one line."""
    from autotune.export import CheckFailed, export_trial

    try:
        manifest = export_trial(run, trial, trials, workspace_for(store_url), folder, force,
                                runtime_python(run.settings.runtime), say)
    except CheckFailed as refused:
        print(f"autotune: export refused: {refused}", file=sys.stderr)
        return 1
    print(f"exported {trial.config.label} ({trial.config.id}) on {trial.backend}/"
          f"{trial.target} to {folder}: {', '.join(manifest['files'])}, manifest.json")
    print(f"artifact: {manifest['artifact']['provenance']}")
    for problem in manifest["artifact"]["forced_past"]:
        print(f"forced past: {problem}")
    print(f"verify with: autotune verify {folder}")
    return 0


def handle_verify(args) -> int:
    from autotune.verify import read_manifest, verify_export

    thresholds = thresholds_from(args)
    manifest = read_manifest(args.folder)  # a foreign folder is bad input, before any work
    # The workers run in the environment the run's did (its --runtime specs).
    runtime = list(manifest["settings"].get("runtime") or ())
    checks = verify_export(args.folder, thresholds, runtime_python(runtime), say)
    failed = [check for check in checks if not check.ok]
    if args.json:
        print_json({"folder": str(args.folder), "ok": not failed,
                    "checks": [check.__dict__ for check in checks]})
    else:
        print_table(["check", "result", "figures"],
                    [[check.name, "ok" if check.ok else "FAILED", check.detail]
                     for check in checks])
    if failed:
        print(f"autotune: verify failed: {', '.join(check.name for check in failed)} "
              f"({failed[0].name}: {failed[0].detail})", file=sys.stderr)
        return 1
    return 0


"""Change points on real nightly runs: found at a runtime switch and named, quiet on A/A.

    python benchmarks/changepoints.py [--runs 8] [--old openvino==2025.4.0] [--shuffles 50]

Two series of real ``autotune run``s of digits-cnn on host-cpu with OpenVINO, each in its own
store, each run a fresh process as a nightly job would start it:

- **switch**: ``--runs`` runs of fp32 and the default int8 config, the first half against
  ``--old`` (``--runtime``: a runtime environment with that OpenVINO), the second half on
  the installed one. ``autotune.changepoints`` should put each series' change points at the
  switch and name the package whose version changed.
- **A/A**: ``--runs`` runs of four configs, nothing changed between them. Any order of A/A
  runs is itself an A/A series, so each series is judged in ``--shuffles`` seeded orders:
  change points found are false alarms. Then, in each order, every latency sample (and pass
  median) of the later half is made 10% slower, and a step must be found at the first slowed
  run: the power on a known 10% step.

Prints both tables; writes benchmarks/results/changepoints-DATE.json (date, host, versions,
every change point) and the log.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.changepoints import change_points, points_of, series_in  # noqa: E402
from autotune.cli.common import print_table  # noqa: E402
from autotune.runtimes import package_versions  # noqa: E402
from autotune.store import Store  # noqa: E402
from benchmarks.result_file import write_result  # noqa: E402

INT8 = "w:int8:sym:per_channel a:uint8:asym cal:minmax"
SWITCH_CONFIGS = ("fp32", INT8)
AA_CONFIGS = ("fp32", INT8, "w:int8:sym:per_tensor a:uint8:asym cal:minmax",
              "w:int8:sym:per_channel a:int8:sym cal:minmax")
STEP = 1.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--old", default="openvino==2025.4.0")
    parser.add_argument("--shuffles", type=int, default=50)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--max-canary-slowdown", type=float, default=0.0,
                        help="the runs' --max-canary-slowdown (default: 0, off)")
    parser.add_argument("--skip", choices=("switch", "aa"), default=None)
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="keep the stores in DIR (default: a temporary folder)")
    parser.add_argument("--reuse", default=None, metavar="DIR",
                        help="judge the stores a --keep run left in DIR again, running nothing")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    began = time.monotonic()
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="autotune-changepoints-") as scratch:
        scratch = Path(args.reuse or args.keep or scratch)
        if args.skip != "switch":
            result["switch"] = switch_series(scratch / "switch", args)
        if args.skip != "aa":
            result["aa"] = aa_series(scratch / "aa", args)

    part = {"aa": "-switch", "switch": "-aa"}.get(args.skip, "")
    path = write_result(args.out, "changepoints", {
        "runs": args.runs, "old": args.old, "shuffles": args.shuffles, "passes": args.passes,
        "max_canary_slowdown": args.max_canary_slowdown,
        "seconds": round(time.monotonic() - began), **result}, part)
    print(f"\nwrote {path} ({time.monotonic() - began:.0f} s)")
    return 0


def _run(store_url: str, workspace: Path, configs, args, runtime: str | None) -> str:
    """One nightly run in a fresh process; its run id."""
    command = [sys.executable, "-m", "autotune", "run", "--model", "digits-cnn",
               "--backend", "openvino", "--passes", str(args.passes),
               "--max-canary-slowdown", str(args.max_canary_slowdown), "--store", store_url,
               "--report-dir", str(workspace / "reports"), "--no-progress", "-q"]
    for config in configs:
        command += ["--config", config]
    if runtime:
        command += ["--runtime", runtime]
    done = subprocess.run(command, cwd=workspace, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stdout[-1500:]}"
                         f"{done.stderr[-1500:]}")
    return done.stdout.split()[1]


def switch_series(folder: Path, args) -> dict:
    folder.mkdir(parents=True, exist_ok=bool(args.reuse))
    url = f"sqlite:///{folder}/store.db"
    switch_at = args.runs // 2
    run_ids = [run.id for run in Store(url).runs()] if args.reuse else []
    for index in range(len(run_ids), args.runs):
        runtime = args.old if index < switch_at else None
        started = time.monotonic()
        run_ids.append(_run(url, folder, SWITCH_CONFIGS, args, runtime))
        print(f"switch run {index + 1}/{args.runs} ({runtime or 'installed'}): "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    store = Store(url)
    rows, found = [], []
    for pairs in series_in(store).values():
        trial = pairs[0][1]
        points = points_of(pairs)
        figures = [p.trial.latency_ms for p in points]
        for point in change_points(points):
            at = run_ids.index(point.run_id)
            found.append(point.to_json() | {"config": trial.config.label, "at_run": at + 1})
            rows.append([trial.config.label, point.metric, point.kind, str(at + 1),
                         f"{point.change:+.1%}", point.cause])
        print(f"{trial.config.label}: latency ms by run "
              f"{', '.join(f'{x:.2f}' for x in figures)}", file=sys.stderr)
    print(f"\nswitch: runs 1-{switch_at} on {args.old}, runs {switch_at + 1}-{args.runs} on "
          f"the installed openvino {package_versions().get('openvino')}")
    print_table(["config", "metric", "kind", "at run", "change", "cause"], rows
                or [["-", "-", "-", "-", "-", "no change point"]])
    at_switch = [p for p in found if p["at_run"] == switch_at + 1
                 and any(c["name"] == "openvino" for c in p["environment_changes"])]
    print(f"change points at the switch naming openvino: {len(at_switch)} of {len(found)}")
    series = {pairs[0][1].config.label: [
        {"run": i + 1, "latency_ms": t.latency_ms, "memory_bytes": t.memory_bytes,
         "openvino": t.versions.get("openvino"), "contended": t.contended}
        for i, (_, t) in enumerate(pairs)] for pairs in series_in(store).values()}
    return {"run_ids": run_ids, "switch_at_run": switch_at + 1, "change_points": found,
            "at_switch_naming_openvino": len(at_switch), "series": series}


def aa_series(folder: Path, args) -> dict:
    folder.mkdir(parents=True, exist_ok=bool(args.reuse))
    url = f"sqlite:///{folder}/store.db"
    for index in range(len(Store(url).runs()) if args.reuse else 0, args.runs):
        started = time.monotonic()
        _run(url, folder, AA_CONFIGS, args, None)
        print(f"A/A run {index + 1}/{args.runs}: {time.monotonic() - started:.0f} s",
              file=sys.stderr, flush=True)
    store = Store(url)
    half = args.runs // 2
    false_alarms, judged, found, steps = [], 0, 0, 0
    for pairs in series_in(store).values():
        label = pairs[0][1].config.label
        for shuffle in range(args.shuffles):
            order = list(pairs)
            random.Random(shuffle).shuffle(order)
            points = points_of(order)
            judged += 1
            false_alarms += [{"config": label, "shuffle": shuffle, "summary": p.summary}
                             for p in change_points(points, seed=shuffle)]
            slowed = points[:half] + [dataclasses.replace(p, trial=_slower(p.trial, STEP))
                                      for p in points[half:]]
            first_slowed = slowed[half].run_id
            steps += 1
            found += any(p.metric == "latency" and p.run_id == first_slowed
                         and p.regression for p in change_points(slowed, seed=shuffle))
    series = len(series_in(store))
    print(f"\nA/A: {args.runs} runs of {len(AA_CONFIGS)} configs, each series (latency and "
          f"memory) judged in {args.shuffles} orders")
    print_table(["what", "count", "rate"], [
        ["series orders judged (latency + memory)", str(judged), ""],
        ["change points (false alarms)", str(len(false_alarms)),
         f"{len(false_alarms) / judged:.1%} per series order"],
        [f"{STEP - 1:.0%} step injected from run {half + 1}: found there", f"{found}/{steps}",
         f"{found / steps:.0%}"]])
    return {"configs": list(AA_CONFIGS), "series": series, "orders_judged": judged,
            "false_alarms": false_alarms, "steps_injected": steps, "steps_found": found,
            "latency_ms": {pairs[0][1].config.label: [t.latency_ms for _, t in pairs]
                           for pairs in series_in(store).values()}}


def _slower(trial, factor: float):
    """The same trial with every latency ``factor`` times higher (samples and pass medians)."""
    passes = [dataclasses.replace(p, median_ms=None if p.median_ms is None
                                  else p.median_ms * factor) for p in trial.passes]
    return dataclasses.replace(
        trial, passes=passes, latencies_ms=[x * factor for x in trial.latencies_ms],
        latency_median_ms=trial.latency_median_ms and trial.latency_median_ms * factor,
        latency_p90_ms=trial.latency_p90_ms and trial.latency_p90_ms * factor,
        latency_p99_ms=trial.latency_p99_ms and trial.latency_p99_ms * factor)


if __name__ == "__main__":
    sys.exit(main())

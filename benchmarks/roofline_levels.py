"""Does the cache-aware roofline bound? Every trial's attained fraction must stay <= 100%.

Measures host-cpu's roofline levels (``autotune roofline``: compute peaks, L1/L2/L3/DRAM
bandwidths, in an isolated worker), then runs, through the real driver on OpenVINO, fp32 and
the default space's int8 configs (minmax calibration) on digits-cnn and the zoo's resnet18
and mobilenet-v2, and prints per model the fp32 config and the best int8 config with their
attained fraction and bounding memory level, and every trial that beat its bound.

Writes benchmarks/results/roofline_levels-DATE.json (date, host, versions, the table).

    python benchmarks/roofline_levels.py [--min-time 0.5] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

from autotune.cli import main as autotune
from autotune.config import FP32
from autotune.driver import RunSettings, execute_run, start_run
from autotune.host import cpu_model, host_info
from autotune.measure import MeasurementProtocol
from autotune.roofline import beaten_roof
from autotune.runtimes import package_versions
from autotune.search import ExhaustiveSearch
from autotune.space import SearchSpace, load_space
from autotune.store import Store
from autotune.target import load_target
from autotune.zoo import resolve_model

MODELS = ("digits-cnn", "resnet18", "mobilenet-v2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="timed seconds per roofline micro-benchmark (default: 0.5)")
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    began = time.monotonic()
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="autotune-roofline-bench-"))
    url = f"sqlite:///{workspace}/bench.db"
    if autotune(["roofline", "--target", "host-cpu", "--backend", "openvino", "--min-time",
                 str(args.min_time), "--store", url]) != 0:
        return 1
    store = Store(url)
    peaks = store.latest_roofline("host-cpu", cpu_model())
    default = load_space("default")
    configs = (FP32, *[c for c in default.configs
                       if c.is_quantized and c.calibration == "minmax"])
    space = SearchSpace("roofline-levels", "fp32 and the default space's minmax int8 configs",
                        configs)
    target = load_target("host-cpu")
    settings = RunSettings(backends=("openvino",), workspace=workspace, progress=False,
                           protocol=MeasurementProtocol(warmup_runs=5, min_repeats=30,
                                                        min_time_s=0.5))
    rows, beaten = [], []
    for name in MODELS:
        run_id = start_run(store, resolve_model(name), space, [target], settings,
                           ExhaustiveSearch())
        trials = execute_run(store, run_id, space, [target], settings,
                             ExhaustiveSearch()).trials
        placed = [t for t in trials if t.ok and t.roofline is not None and t.roofline.bound_ms]
        for trial in placed:
            why = beaten_roof(trial.roofline, trial.latency_ms)
            if why:
                beaten.append({"model": name, "config": trial.config.label, "why": why,
                               "attained": trial.roofline.attained_fraction})
        int8 = [t for t in placed if t.config.is_quantized]
        picks = [("fp32", next((t for t in placed if t.config == FP32), None)),
                 ("best int8", min(int8, key=lambda t: t.latency_ms, default=None))]
        for role, trial in picks:
            if trial is None:
                rows.append({"model": name, "role": role, "status": "no successful trial"})
                continue
            roof = trial.roofline
            rows.append({"model": name, "role": role, "config": trial.config.label,
                         "latency_ms": trial.latency_ms, "bound_ms": roof.bound_ms,
                         "attained": roof.attained_fraction, "bound": roof.bound,
                         "memory_level": roof.memory_level,
                         "memory_ms_by_level": roof.memory_ms_by_level,
                         "beaten": beaten_roof(roof, trial.latency_ms),
                         "trials": len(placed)})
    print(f"\nhost-cpu roofline ({cpu_model()}): compute "
          + ", ".join(f"{p} {g:.1f} GOPS" for p, g in peaks.peak_gops.items()) + "; levels "
          + ", ".join(f"{n} {g:.1f} GB/s" for n, g in peaks.level_bandwidth_gbs.items()))
    print(f"{'model':13} {'role':10} {'config':30} {'latency ms':>10} {'bound ms':>9} "
          f"{'attained':>9} {'level':>6}  bound by")
    for row in rows:
        if "config" not in row:
            print(f"{row['model']:13} {row['role']:10} {row['status']}")
            continue
        attained = row["beaten"] or f"{row['attained']:.1%}"
        print(f"{row['model']:13} {row['role']:10} {row['config']:30} "
              f"{row['latency_ms']:>10.3f} {row['bound_ms']:>9.4f} {attained:>9} "
              f"{row['memory_level']:>6}  {row['bound']}")
    print(f"\ntrials above 100% of their bound: {len(beaten)} (target: none)")
    for item in beaten:
        print(f"  {item['model']} {item['config']}: {item['why']} "
              f"(bound / latency = {item['attained']:.2f})")
    print(f"{time.monotonic() - began:.0f} s; workspace {workspace}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    date = datetime.date.today().isoformat()
    host = host_info()
    path = out / f"roofline_levels-{date}.json"
    path.write_text(json.dumps({
        "benchmark": "roofline_levels", "schema": 1, "date": date,
        "host": {"cpu_model": host["cpu_model"], "cores": host["cores"],
                 "machine": host["machine"], "system": host["system"]},
        "versions": package_versions(),
        "settings": {"models": MODELS, "configs": [c.label for c in configs],
                     "backend": "openvino", "roofline_min_time_s": args.min_time},
        "roofline": {"peak_gops": peaks.peak_gops,
                     "level_bandwidth_gbs": peaks.level_bandwidth_gbs,
                     "levels": peaks.details.get("levels")},
        "table": rows, "beaten": beaten, "target_met": not beaten,
        "seconds": round(time.monotonic() - began)}, indent=1, default=str))
    print(f"wrote {path}")
    return 0 if not beaten else 1


if __name__ == "__main__":
    sys.exit(main())

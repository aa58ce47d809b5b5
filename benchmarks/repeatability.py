"""Repeatability of the measurement: the same config measured in 5 separate trials.

Each repetition is a full trial (a fresh worker process: quantize from cache, compile, load,
warm up, time), so the spread includes everything that differs between two nightly runs on
one machine. Prints the coefficient of variation of the per-trial median latency.

    python benchmarks/repeatability.py [--model digits-cnn] [--repeats 5] [--config TEXT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from autotune.config import FP32, QuantConfig
from autotune.driver import RunSettings, execute_run, start_run
from autotune.search import ExhaustiveSearch
from autotune.space import SearchSpace
from autotune.store import Store
from autotune.target import load_target
from autotune.zoo import resolve_model

BEST_INT8 = "w:int8:sym:per_channel a:uint8:asym cal:minmax"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--target", default="host-cpu")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", action="append", default=None,
                        help=f"config text (default: fp32 and {BEST_INT8!r})")
    args = parser.parse_args()
    configs = [FP32] + [QuantConfig.from_text(text) for text in (args.config or [BEST_INT8])]
    space = SearchSpace("repeatability", "", tuple(dict.fromkeys(configs)))
    target = load_target(args.target)
    medians: dict[str, list[float]] = {config.label: [] for config in space.configs}
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        store = Store(f"sqlite:///{workspace}/bench.db")
        settings = RunSettings(backends=(args.backend,), workspace=workspace, progress=False)
        model = resolve_model(args.model)
        for repeat in range(args.repeats):
            run_id = start_run(store, model, space, [target], settings, ExhaustiveSearch())
            outcome = execute_run(store, run_id, space, [target], settings, ExhaustiveSearch())
            for trial in outcome.trials:
                if not trial.ok:
                    print(f"repeat {repeat}: {trial.config.label} {trial.status}: {trial.error}",
                          file=sys.stderr)
                    return 1
                medians[trial.config.label].append(trial.latency_median_ms)
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    print(f"model {args.model}, backend {args.backend}, target {args.target}, "
          f"{args.repeats} trials per config")
    print(f"{'config':36} {'mean of medians ms':>18} {'min':>8} {'max':>8} {'CV':>7}")
    for label, values in medians.items():
        mean = statistics.fmean(values)
        cv = statistics.stdev(values) / mean if len(values) > 1 else 0.0
        print(f"{label:36} {mean:18.4f} {min(values):8.4f} {max(values):8.4f} {cv:7.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

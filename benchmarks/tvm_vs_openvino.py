"""TVM against OpenVINO on a ResNet-18-shaped network, and the tuning database's reuse.

Runs, through the real driver (isolated workers, the suite's measurement protocol):
  1. OpenVINO fp32 and int8 (uint8 asymmetric activations, int8 per-channel weights);
  2. TVM fp32 and the same int8 config, both tuned with ``--tuning-trials`` each, into a
     fresh tuning database;
  3. the same TVM configs again, which must reuse the database (tuning time near zero).
Prints one table. Weights are random (latency only); accuracy comes from digits-cnn runs.

    python benchmarks/tvm_vs_openvino.py [--tuning-trials 1500] [--workspace DIR]
"""

from __future__ import annotations

import argparse
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
from autotune.zoo.shapes import resnet18

INT8 = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax")


def measure(store: Store, model_path: Path, backend: str, tuning_trials: int,
            workspace: Path) -> dict:
    space = SearchSpace("tvm-vs-openvino", "", (FP32, INT8))
    target = load_target("host-cpu")
    settings = RunSettings(backends=(backend,), tuning_trials=tuning_trials,
                           trial_timeout_s=3 * 3600, workspace=workspace, progress=True)
    model = resolve_model(str(model_path))
    run_id = start_run(store, model, space, [target], settings, ExhaustiveSearch(), {})
    outcome = execute_run(store, run_id, space, [target], settings, ExhaustiveSearch())
    return {trial.config.label: trial for trial in outcome.trials}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuning-trials", type=int, default=1500)
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="autotune-tvm-bench-"))
    model_path = resnet18(workspace / "resnet18.onnx")
    store = Store(f"sqlite:///{workspace}/bench.db")
    rows = []
    for label, backend, trials in (("openvino", "openvino", 0), ("tvm first run", "tvm",
                                                                   args.tuning_trials),
                                   ("tvm second run", "tvm", args.tuning_trials)):
        for config, trial in measure(store, model_path, backend, trials, workspace).items():
            tuning = trial.details.get("tuning", {})
            rows.append((label, config, trial.status, trial.latency_median_ms,
                         tuning.get("trials_run"), tuning.get("tuning_s"), trial.error[:80]))
    print(f"ResNet-18-shaped network, 1x3x224x224, host-cpu; workspace {workspace}")
    print(f"{'run':16} {'config':28} {'status':14} {'median ms':>10} {'tuning trials':>14} "
          f"{'tuning s':>9}  error")
    for run, config, status, median, trials, seconds, error in rows:
        print(f"{run:16} {config:28} {status:14} "
              f"{'-' if median is None else f'{median:.3f}':>10} "
              f"{'-' if trials is None else trials:>14} "
              f"{'-' if seconds is None else f'{seconds:.0f}':>9}  {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

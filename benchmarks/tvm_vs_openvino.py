"""TVM against OpenVINO on a ResNet-18-shaped network, and the tuning database's reuse.

Runs, through the real driver (isolated workers, the suite's measurement protocol):
  1. OpenVINO fp32 and int8 (uint8 asymmetric activations, int8 per-channel weights);
  2. TVM fp32 and the same int8 config, both tuned with ``--tuning-trials`` each, into a
     fresh tuning database;
  3. the same TVM configs again, which must reuse the database (tuning time near zero);
  4. TVM fp32 and int8 on the built-in trained digits-cnn (untuned: tuning changes speed,
     not results), for the int8 accuracy drop.
Prints one table and the issue's three ratios. ResNet-18 weights are random (latency only).

    python benchmarks/tvm_vs_openvino.py [--tuning-trials 1100] [--workspace DIR]
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


def measure(store: Store, model_name: str, backend: str, tuning_trials: int,
            workspace: Path) -> dict:
    space = SearchSpace("tvm-vs-openvino", "", (FP32, INT8))
    target = load_target("host-cpu")
    # `autotune run`'s protocol: three passes in fresh workers, a noisy pass measured again.
    # One pass right after minutes of tuning read TVM fp32 up to 17% slower than later ones.
    settings = RunSettings(backends=(backend,), tuning_trials=tuning_trials,
                           trial_timeout_s=3 * 3600, workspace=workspace, progress=True,
                           passes=3, max_spread=0.10)
    model = resolve_model(model_name)
    run_id = start_run(store, model, space, [target], settings, ExhaustiveSearch())
    outcome = execute_run(store, run_id, space, [target], settings, ExhaustiveSearch())
    return {trial.config.label: trial for trial in outcome.trials}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuning-trials", type=int, default=1100,
                        help="MetaSchedule trials per config (1100: 9-12 minutes per config "
                             "on a 2-core AVX-512 machine, within the issue's 20)")
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="autotune-tvm-bench-"))
    model_path = str(resnet18(workspace / "resnet18.onnx"))
    store = Store(f"sqlite:///{workspace}/bench.db")
    trials = {}
    for label, model, backend, budget in (
            ("openvino", model_path, "openvino", 0),
            ("tvm first run", model_path, "tvm", args.tuning_trials),
            ("tvm second run", model_path, "tvm", args.tuning_trials),
            ("tvm digits-cnn", "digits-cnn", "tvm", 0)):
        for config, trial in measure(store, model, backend, budget, workspace).items():
            trials[label, config] = trial
    print(f"ResNet-18-shaped network, 1x3x224x224, host-cpu; workspace {workspace}")
    print(f"{'run':16} {'config':28} {'status':14} {'median ms':>10} {'fastest pass':>12} "
          f"{'accuracy':>9} {'tuning trials':>14} {'tuning s':>9}  error")
    for (run, config), trial in trials.items():
        tuning = trial.details.get("tuning", {})
        print(f"{run:16} {config:28} {trial.status:14} {_number(trial.latency_median_ms):>10} "
              f"{_number(trial.latency_ms):>12} {_number(trial.accuracy, '.4f'):>9} "
              f"{_number(tuning.get('trials_run'), 'd'):>14} "
              f"{_number(tuning.get('tuning_s'), '.0f'):>9}  {trial.error[:80]}")
    fp32, int8 = FP32.label, INT8.label

    def ratio(a, b):
        x, y = (getattr(trials.get(key), "latency_median_ms", None) for key in (a, b))
        return "-" if x is None or not y else f"{x / y:.2f}"

    def tuning_s(run, config):
        trial = trials.get((run, config))
        return trial.details.get("tuning", {}).get("tuning_s") if trial else None

    first = sum(tuning_s("tvm first run", c) or 0 for c in (fp32, int8))
    second = sum(tuning_s("tvm second run", c) or 0 for c in (fp32, int8))
    drop = trials.get(("tvm digits-cnn", int8))
    print()
    print(f"TVM fp32 / OpenVINO fp32 latency:   "
          f"{ratio(('tvm first run', fp32), ('openvino', fp32))} (issue: <= 1.5)")
    print(f"TVM fp32 / TVM int8 latency:        "
          f"{ratio(('tvm first run', fp32), ('tvm first run', int8))} (issue: >= 2)")
    print(f"TVM int8 accuracy drop, digits-cnn: "
          f"{_number(None if drop is None else drop.accuracy_drop, '.4f')} (issue: <= 0.01)")
    print(f"second run / first run tuning time: "
          f"{'-' if not first else f'{second / first:.3f}'} (issue: <= 0.10)")
    return 0


def _number(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())

"""TVM against OpenVINO on a ResNet-18-shaped network or digits-cnn, and tuning-database reuse.

Runs, through the real driver (isolated workers, the suite's measurement protocol):
  1. OpenVINO fp32 and int8 (uint8 asymmetric activations, int8 per-channel weights);
  2. TVM fp32 and the same int8 config, both tuned with ``--tuning-trials`` each, into a
     fresh tuning database;
  3. the same TVM configs again, which must reuse the database (tuning time near zero);
  4. TVM fp32 and int8 on the built-in trained digits-cnn (untuned: tuning changes speed,
     not results), for the int8 accuracy drop (with ``--model digits-cnn`` the tuned first
     run gives it).
Prints one table and the issue's three ratios, and writes them with every trial's figures
to ``benchmarks/results/tvm_vs_openvino[-digits-cnn]-DATE.json`` (README's TVM figures come
from it). ResNet-18 weights are random (latency only). ResNet-18 at 1100 trials per config
takes hours on a 2-vCPU machine; ``--model digits-cnn`` with a few hundred fits in minutes.

    python benchmarks/tvm_vs_openvino.py [--model resnet18|digits-cnn] [--tuning-trials 1100]
                                         [--workspace DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from result_file import write_result  # noqa: E402

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
    parser.add_argument("--model", choices=("resnet18", "digits-cnn"), default="resnet18",
                        help="resnet18: a ResNet-18-shaped network with random weights, "
                             "1x3x224x224; digits-cnn: the built-in trained CNN (default: "
                             "resnet18)")
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        help="folder of the result file (default: benchmarks/results)")
    args = parser.parse_args()
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="autotune-tvm-bench-"))
    if args.model == "resnet18":
        model_path = str(resnet18(workspace / "resnet18.onnx"))
        description = "resnet18 shape, 1x3x224x224, random weights"
    else:
        model_path, description = "digits-cnn", "digits-cnn (built-in, trained), 1x1x32x32"
    store = Store(f"sqlite:///{workspace}/bench.db")
    trials = {}
    steps = [("openvino", model_path, "openvino", 0),
             ("tvm first run", model_path, "tvm", args.tuning_trials),
             ("tvm second run", model_path, "tvm", args.tuning_trials)]
    if args.model != "digits-cnn":
        steps.append(("tvm digits-cnn", "digits-cnn", "tvm", 0))
    for label, model, backend, budget in steps:
        for config, trial in measure(store, model, backend, budget, workspace).items():
            trials[label, config] = trial
    print(f"{description}, host-cpu; workspace {workspace}")
    print(f"{'run':16} {'config':28} {'status':14} {'median ms':>10} {'fastest pass':>12} "
          f"{'accuracy':>9} {'tuning trials':>14} {'tuning s':>9}  error")
    for (run, config), trial in trials.items():
        tuning = trial.tuning
        print(f"{run:16} {config:28} {trial.status:14} {_number(trial.latency_median_ms):>10} "
              f"{_number(trial.latency_ms):>12} {_number(trial.accuracy, '.4f'):>9} "
              f"{_number(tuning and tuning.trials_run, 'd'):>14} "
              f"{_number(tuning and tuning.tuning_s, '.0f'):>9}  {trial.error[:80]}")
    fp32, int8 = FP32.label, INT8.label

    def ratio_value(a, b):
        x, y = (getattr(trials.get(key), "latency_median_ms", None) for key in (a, b))
        return None if x is None or not y else x / y

    def ratio(a, b):
        value = ratio_value(a, b)
        return "-" if value is None else f"{value:.2f}"

    def tuning_s(run, config):
        trial = trials.get((run, config))
        return trial.tuning.tuning_s if trial and trial.tuning else None

    first = sum(tuning_s("tvm first run", c) or 0 for c in (fp32, int8))
    second = sum(tuning_s("tvm second run", c) or 0 for c in (fp32, int8))
    drop = trials.get(("tvm digits-cnn" if args.model != "digits-cnn" else "tvm first run",
                       int8))
    print()
    print(f"TVM fp32 / OpenVINO fp32 latency:   "
          f"{ratio(('tvm first run', fp32), ('openvino', fp32))} (issue: <= 1.5)")
    print(f"TVM fp32 / TVM int8 latency:        "
          f"{ratio(('tvm first run', fp32), ('tvm first run', int8))} (issue: >= 2)")
    print(f"TVM int8 accuracy drop, digits-cnn: "
          f"{_number(None if drop is None else drop.accuracy_drop, '.4f')} (issue: <= 0.01)")
    print(f"second run / first run tuning time: "
          f"{'-' if not first else f'{second / first:.3f}'} (issue: <= 0.10)")
    rows = [{"run": run, "config": config, "status": trial.status,
             "latency_median_ms": trial.latency_median_ms, "fastest_pass_ms": trial.latency_ms,
             "gflops": _gflops(trial), "accuracy": trial.accuracy,
             "tuning_trials_run": trial.tuning.trials_run if trial.tuning else None,
             "tuning_s": trial.tuning.tuning_s if trial.tuning else None,
             "error": trial.error} for (run, config), trial in trials.items()]
    name = "tvm_vs_openvino" + ("" if args.model == "resnet18" else f"-{args.model}")
    path = write_result(args.out, name, {
        "model": description, "target": "host-cpu",
        "tuning_trials": args.tuning_trials, "trials": rows,
        "tvm_fp32_over_openvino_fp32": ratio_value(("tvm first run", fp32), ("openvino", fp32)),
        "tvm_fp32_over_tvm_int8": ratio_value(("tvm first run", fp32), ("tvm first run", int8)),
        "tvm_int8_accuracy_drop_digits": None if drop is None else drop.accuracy_drop,
        "second_over_first_tuning_time": second / first if first else None})
    print(f"wrote {path}")
    return 0


def _gflops(trial) -> float | None:
    """The whole network's attained rate: its operations over the median latency."""
    roof = trial.roofline
    if roof is None or not roof.ops or not trial.latency_median_ms:
        return None
    return roof.ops / (trial.latency_median_ms / 1000) / 1e9


def _number(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())

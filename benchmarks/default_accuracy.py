"""The default model's accuracy axis: top-1 of every config a newcomer's first run measures.

    python benchmarks/default_accuracy.py [--store URL] [--out DIR]

Runs digits-cnn through the real suite on OpenVINO (host-cpu): the ``default`` space, then
int4 weight-only and entropy/mse-calibrated int8 configs (``--config``), each trial in its
worker, quantized on the 200 distorted calibration images and scored on the 500 distorted
evaluation images (``autotune.zoo.digits``). Latency is not the point here, so each trial
times only a few runs. Prints top-1 and the drop from fp32 per config, and the spread of
top-1 across the quantized configs; writes benchmarks/results/default_accuracy-DATE.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.api import run_benchmark  # noqa: E402
from autotune.cli.common import print_table  # noqa: E402
from autotune.store import Store  # noqa: E402
from autotune.zoo.digits import DATASET_VERSION  # noqa: E402
from benchmarks.result_file import write_result  # noqa: E402

# Beyond the default space: what the issue asks the accuracy axis to separate.
EXTRA_CONFIGS = (
    "w:int4:sym:per_channel a:fp32",
    "w:int4:sym:per_group:32 a:fp32",
    "w:int8:sym:per_channel a:uint8:asym cal:entropy",
    "w:int8:sym:per_tensor a:uint8:asym cal:entropy",
    "w:int8:sym:per_tensor a:uint8:asym cal:mse",
)
# Latency is not measured here: a few timed runs, one pass, never measured again for noise.
QUICK = dict(min_repeats=5, min_time_s=0.05, max_spread=0.0, passes=1, max_other_cpu=1.0,
             max_steal=1.0, max_canary_slowdown=1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="result store URL (default: a temporary SQLite file)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autotune-default-accuracy-") as scratch:
        store_url = args.store or f"sqlite:///{scratch}/accuracy.db"
        runs = [run_benchmark("digits-cnn", space="default", backends=["openvino"],
                              store=store_url, report_dir=None, **QUICK),
                run_benchmark("digits-cnn", configs=EXTRA_CONFIGS, backends=["openvino"],
                              store=store_url, report_dir=None, **QUICK)]
        store = Store(store_url)
        reference = store.get_run(runs[0]).reference_accuracy
        trials = {trial.config.text: trial for run_id in runs for trial in store.trials(run_id)}
    rows = [{"config": text, "status": trial.status, "top1": trial.accuracy,
             "drop_pp": None if trial.accuracy is None else 100 * (reference - trial.accuracy)}
            for text, trial in trials.items()]
    quantized = [row["top1"] for row in rows if row["top1"] is not None and row["config"] != "fp32"]
    spread_pp = 100 * (max(quantized) - min(quantized))
    print(f"\ndigits-cnn (dataset version {DATASET_VERSION}) on host-cpu (OpenVINO): "
          f"fp32 top-1 {reference:.1%} (onnxruntime); {len(quantized)} other configs span "
          f"{100 * min(quantized):.1f}-{100 * max(quantized):.1f}% ({spread_pp:.1f} points)")
    print_table(["config", "status", "top-1", "drop pp"],
                [[row["config"], row["status"],
                  "-" if row["top1"] is None else f"{row['top1']:.3f}",
                  "-" if row["drop_pp"] is None else f"{row['drop_pp']:+.1f}"]
                 for row in sorted(rows, key=lambda r: -(r["top1"] or 0))])
    path = write_result(args.out, "default_accuracy", {
        "model": "digits-cnn", "dataset_version": DATASET_VERSION, "target": "host-cpu",
        "backend": "openvino", "fp32_top1": reference, "quantized_configs": len(quantized),
        "top1_min": min(quantized), "top1_max": max(quantized), "spread_pp": spread_pp,
        "rows": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

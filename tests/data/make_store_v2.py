"""Writes ``store-v2.db``: a result store as autotune's schema 2 wrote it (commit 8345842).

Run with that autotune on the path (``git worktree add /tmp/v2 8345842 && cd /tmp/v2 &&
python /path/to/make_store_v2.py OUT``): the old ``Store`` itself writes the rows, with the
details keys its driver, roofline and sensitivity stages used, so the schema 3 upgrade is
tested on what old runs really hold.
"""

import sys

from autotune.config import FP32, QuantConfig
from autotune.store import Run, Store
from autotune.trial import Trial

INT8 = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax")
ASYM = QuantConfig.from_text("w:int8:asym:per_channel a:uint8:asym cal:minmax")
ARGS = {"model": "digits-cnn", "data": None, "metric": None, "space": "default",
        "config": None, "target": ["host-cpu"], "backend": ["openvino", "tvm"],
        "strategy": "exhaustive", "budget": None, "seed": 0, "trial_timeout": 920.0,
        "trial_memory": None, "tuning_trials": 64, "min_repeats": 50, "min_time": 1.0,
        "max_spread": 0.1, "passes": 3, "runtime": None}
HEAVY = [{"name": f"conv{i}", "type": "Convolution", "precision": "u8", "kernel": "jit_avx512_I8",
          "integer": i != 2, "weights_integer": True, "original": f"conv{i}"} for i in range(3)]
TUNING = {"trials_requested": 64, "database": "results/cache/tvm-tuning/x", "tasks": [],
          "trials_run": 0, "tuning_s": 0.0, "database_records_applied": 0}


def trial(config, backend, medians, **details) -> Trial:
    samples = [m for m in medians for _ in range(3)]
    passes = [{"median_ms": m, "spread": 0.01, "samples": 3} for m in medians]
    return Trial(run_id="old-run", model="digits-cnn", model_hash="h" * 64, config=config,
                 backend=backend, target="host-cpu", status="ok", versions={"numpy": "2.2"},
                 cpu_model="Old CPU", cores=2, compile_s=1.0, latencies_ms=samples,
                 latency_median_ms=sorted(samples)[len(samples) // 2], latency_p90_ms=max(samples),
                 latency_p99_ms=max(samples), latency_spread=0.01, memory_bytes=1 << 20,
                 artifact_size_bytes=1 << 20, accuracy=1.0, accuracy_drop=0.0, cosine=1.0,
                 details={"passes": passes, "quantize_s": 0.25, "compile_memory_bytes": 4096,
                          "roofline": {"ops": 1000, "bytes": 100, "precision": "int8",
                                       "intensity": 10.0, "bound_ms": 0.001,
                                       "compute_ms": 0.001, "memory_ms": 0.0005,
                                       "bound": "compute", "peaks_source": "target",
                                       "peak_gops": {"int8": 1000.0},
                                       "memory_bandwidth_gbs": 20.0, "attained_fraction": 0.5},
                          **details})


store = Store(f"sqlite:///{sys.argv[1]}")
store.create_run(Run(id="old-run", created_at="2026-11-30T00:00:00+00:00",
                     finished_at="2026-11-30T00:10:00+00:00", status="finished",
                     model="digits-cnn", model_path="digits_cnn.onnx", model_hash="h" * 64,
                     space="default", metric="top1", synthetic_data=False,
                     reference_accuracy=1.0, args=ARGS, host={"cpu_model": "Old CPU"},
                     versions={"numpy": "2.2"}))
store.add_trial(trial(FP32, "openvino", [2.0, 1.8, 2.2], precision_hint="fp32"))
store.add_trial(trial(INT8, "openvino", [1.0, 0.9, 1.1], precision_hint="fp32",
                      op_precisions=HEAVY, float_fallback=["conv2"],
                      sensitivity={"conv1": 0.01, "conv2": 0.002},
                      sensitivity_metric="top1"))
store.add_trial(trial(ASYM, "tvm", [3.0, 3.3], precision_hint="fp32", input_names=["x"],
                      tuning=TUNING, untuned=True,
                      integer_ops={"integer": ["conv0"], "left_in_float": ["conv1: asymmetric "
                                                                           "weights"]},
                      device={"served_by": "autotune worker", "cpu_model": "Cortex",
                              "emulated": "qemu"}, emulated=True,
                      noisy=True, spreads=[0.2, 0.15]))
store.engine.dispose()

"""SYNTHETIC runs for benchmarks of the suite's own code: made-up figures, real types.

The trials are real ``Trial`` objects with every field a measured trial has (samples,
passes, roofline placement, notes, failures), stored through the real ``Store``; only their
figures are seeded random numbers, and every run and trial says so in its model name
(``SYNTHETIC_MODEL``) and CPU model. They measure the report, the store and the fronts,
never a compiler: no figure from them belongs in a claim about a model or a backend.
"""

from __future__ import annotations

import random

from autotune.config import FP32
from autotune.outcome import Note, PassRecord, RooflinePlacement
from autotune.settings import RunSpec
from autotune.space import load_space
from autotune.store import Run, Store, now
from autotune.trial import Trial

SYNTHETIC_MODEL = "synthetic (benchmark of the suite's code, not measured)"
SYNTHETIC_CPU = "synthetic (not measured)"


def synthetic_run_record(run_id: str, count: int) -> Run:
    """The run record a synthetic run of ``count`` trials is stored under."""
    return Run(
        id=run_id, created_at=now(), finished_at=now(), status="finished",
        model=SYNTHETIC_MODEL, model_path="-", model_hash="0" * 64, space="full",
        metric="top1", synthetic_data=False, reference_accuracy=0.95,
        settings=RunSpec(model="synthetic", targets=("host-cpu",), budget=count),
        host={"cpu_model": SYNTHETIC_CPU, "cores": 2, "system": "-"},
        versions={"autotune": "-"})


def synthetic_trials(run_id: str, count: int, seed: int = 0) -> list[Trial]:
    """``count`` made-up trials: every config of the ``full`` space on two backends, on as
    many targets (``host-cpu``, ``host-cpu1``, ...) as it takes; about 6% fail to compile."""
    rng = random.Random(seed)
    configs = [c for c in load_space("full").configs if c != FP32]
    backends = ("openvino", "tvm")
    pairs = [(FP32, b) for b in backends] + [(c, b) for c in configs for b in backends]
    trials = []
    for index in range(count):
        config, backend = pairs[index % len(pairs)]
        target = f"host-cpu{index // len(pairs) or ''}"  # more trials than pairs: more targets
        trials.append(_trial(rng, run_id, config, backend, target))
    return trials


def synthetic_run(store: Store, count: int, seed: int = 0) -> str:
    """Store a made-up run of ``count`` trials, one commit per trial as a run makes them;
    returns its id."""
    run_id = f"synthetic-{count}"
    store.create_run(synthetic_run_record(run_id, count))
    for trial in synthetic_trials(run_id, count, seed):
        store.add_trial(trial)
    return run_id


def _trial(rng: random.Random, run_id: str, config, backend: str, target: str) -> Trial:
    common = dict(run_id=run_id, model=SYNTHETIC_MODEL, model_hash="0" * 64, config=config,
                  backend=backend, target=target, versions={"autotune": "-"},
                  cpu_model=SYNTHETIC_CPU, cores=2)
    if config != FP32 and rng.random() < 0.06:
        return Trial(**common, status="compile_error",
                     error="synthetic failure\n" + "  at some frame\n" * 20)
    base_ms = 2.0 if backend == "openvino" else 2.6
    median = base_ms if config == FP32 else base_ms * rng.uniform(0.35, 1.15)
    samples = sorted(median * rng.uniform(0.95, 1.1) for _ in range(50))
    drop = 0.0 if config == FP32 else rng.uniform(-0.002, 0.03)
    roofline = RooflinePlacement(int(2.4e8), int(rng.uniform(2e6, 2e7)), config.weight_dtype,
                                 peak_gops={"fp32": 384.0, "int8": 1536.0},
                                 memory_bandwidth_gbs=20.0, peaks_source="synthetic")
    details, notes = {}, ()
    if config.is_quantized:
        details["op_precisions"] = [{"name": f"conv{i}", "kernel": "jit_avx512_int8",
                                     "integer": True} for i in range(6)]
        if rng.random() < 0.2:
            notes = (Note("float_fallback", "int8 requested but 1 of 6 heavy ops ran in float "
                                            "(conv5)"),)
    passes = [PassRecord(median * rng.uniform(0.98, 1.05), rng.uniform(0.01, 0.08), 25),
              PassRecord(median * rng.uniform(0.98, 1.05), rng.uniform(0.01, 0.08), 25)]
    return Trial(**common, status="ok", latencies_ms=samples, latency_median_ms=median,
                 latency_p90_ms=samples[44], latency_p99_ms=samples[49],
                 latency_spread=rng.uniform(0.01, 0.08), memory_bytes=rng.randint(4, 40) << 20,
                 peak_memory_bytes=rng.randint(80, 120) << 20,
                 artifact_size_bytes=rng.randint(200, 900) << 10, accuracy=0.95 - drop,
                 accuracy_drop=drop, details=details, notes=notes, roofline=roofline,
                 passes=passes, started_at=now(), finished_at=now())

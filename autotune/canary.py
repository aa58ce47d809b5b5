"""A reference kernel timed beside every measurement: it sees what the guest's counters cannot.

On the 2-vCPU cloud VM this suite grew up on, a model's latency doubled for minutes at a time
with no steal, no other process on its vCPU and an unchanged clock. ``benchmarks/canary.py``
put known loads on the other vCPU (a busy loop, vector arithmetic, 256 MiB copies): none
slowed the timing vCPU more than the quiet turns between them did, so the slow spells come
from outside the guest (the host, another tenant). A fixed piece of arithmetic timed just
before and after the timed window partly slows with them (log-correlation r 0.48 with
digits-cnn fp32, 0.23 with int8), so every pass records the canary's reading over the
fastest seen on these CPUs (``MachineState.canary_ratio``), and a run may treat a slow
canary as contention (``--max-canary-slowdown``; off by default until the readings stored
with real trials say which limit pays): measured again, then flagged like a pass under steal
(``autotune.machine_state.ContentionLimits``).

The canary stays in L2 (element-wise float32 arithmetic on 64 KiB arrays), so it reads a
shared core, not memory bandwidth: a 64 MiB copy canary also tracked the slow spells but
alarmed on most quiet windows. Readings are kept per host and CPU set in the host lock's folder
(``autotune.hostlock``), written while the timing lock is held, so each timing process on
this host adds to and judges by the same reference.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from autotune.hostlock import lock_dir

KEPT_READINGS = 200  # the reference is the fastest of the latest readings
_REPEATS = 3
_ROUNDS = 1000
_FLOATS = 16384  # 64 KiB per array: three stay in L2


def time_canary() -> float:
    """The reference kernel's time in ms: the median of three repeats of 1,000 rounds of a
    multiply and an add over 64 KiB float32 arrays (about 5 ms each on the 2-vCPU Zen 3 VM).

    numpy's element-wise loops run on the calling thread only. A BLAS matmul would not:
    OpenBLAS starts a thread per core, and its threads spin while they wait, so in a worker
    pinned to one vCPU they take turns with the timed code (a canary read 3.2 s there)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(_FLOATS, dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    times = []
    for _ in range(_REPEATS):
        start = time.perf_counter_ns()
        for _ in range(_ROUNDS):
            np.multiply(a, b, out=out)
            np.add(out, a, out=out)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(times)


def reference_path(cpus: tuple[int, ...], folder: Path | None = None) -> Path:
    name = "-".join(str(cpu) for cpu in sorted(cpus)) or "any"
    return (folder or lock_dir()) / f"canary-cpus-{name}.json"


def judge(canary_ms: float, cpus: tuple[int, ...], folder: Path | None = None) -> float:
    """Add a reading to these CPUs' reference and return its ratio to the fastest of the
    latest ``KEPT_READINGS`` (1.0 for the fastest so far). Call it holding the host's timing
    lock: the file is read, extended and replaced without another lock."""
    path = reference_path(cpus, folder)
    try:
        readings = [float(value) for value in json.loads(path.read_text())["readings_ms"]]
    except (OSError, ValueError, KeyError, TypeError):
        readings = []  # none yet, or a file cut short by a crash: start again
    readings = [*readings, canary_ms][-KEPT_READINGS:]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps({"readings_ms": readings}))
    partial.replace(path)
    return canary_ms / min(readings)

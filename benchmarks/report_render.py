"""How heavy the HTML report is: its size and how long headless Chromium takes to load it.

The run is SYNTHETIC: its trials are made up here (seeded), not measured, because this
benchmark measures the report, not a compiler. They are stored with the real ``Store`` and
rendered with the real ``write_report``; then Debian's ``chromium`` loads ``index.html``
(``load`` = navigation start to the end of the load event, median of a few loads).

    python benchmarks/report_render.py [--trials 100] [--trials 1000] [--loads 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autotune.config import FP32
from autotune.outcome import Note, RooflinePlacement
from autotune.report import gather_from_store, write_report
from autotune.report.html import write_html
from autotune.settings import RunSpec
from autotune.space import load_space
from autotune.store import Run, Store, now
from autotune.trial import Trial

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the DevTools client the report tests use

from browser import Chromium, find_chromium  # noqa: E402

LIMIT_BYTES = 5 * 2**20
LIMIT_LOAD_MS = 2000


def synthetic_run(store: Store, count: int, seed: int = 0) -> str:
    """Store a made-up run of ``count`` trials (figures are seeded random, not measured)."""
    rng = random.Random(seed)
    run_id = f"synthetic-{count}"
    store.create_run(Run(
        id=run_id, created_at=now(), finished_at=now(), status="finished",
        model="synthetic (rendering benchmark, not measured)", model_path="-",
        model_hash="0" * 64, space="full", metric="top1", synthetic_data=False,
        reference_accuracy=0.95,
        settings=RunSpec(model="synthetic", targets=("host-cpu",), budget=count),
        host={"cpu_model": "synthetic", "cores": 2, "system": "-"}, versions={"autotune": "-"}))
    configs = [c for c in load_space("full").configs if c != FP32]
    backends = ("openvino", "tvm")
    pairs = [(FP32, b) for b in backends] + [(c, b) for c in configs for b in backends]
    for index in range(count):
        config, backend = pairs[index % len(pairs)]
        target = f"host-cpu{index // len(pairs) or ''}"  # more trials than pairs: more targets
        store.add_trial(_trial(rng, run_id, config, backend, target))
    return run_id


def _trial(rng: random.Random, run_id: str, config, backend: str, target: str) -> Trial:
    common = dict(run_id=run_id, model="synthetic", model_hash="0" * 64, config=config,
                  backend=backend, target=target, versions={"autotune": "-"},
                  cpu_model="synthetic", cores=2)
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
    return Trial(**common, status="ok", latencies_ms=samples, latency_median_ms=median,
                 latency_p90_ms=samples[44], latency_p99_ms=samples[49],
                 latency_spread=rng.uniform(0.01, 0.08), memory_bytes=rng.randint(4, 40) << 20,
                 peak_memory_bytes=rng.randint(80, 120) << 20,
                 artifact_size_bytes=rng.randint(200, 900) << 10, accuracy=0.95 - drop,
                 accuracy_drop=drop, details=details, notes=notes, roofline=roofline,
                 started_at=now(), finished_at=now())


def measure(count: int, loads: int, browser: Chromium, scratch: Path) -> dict:
    store = Store(f"sqlite:///{scratch}/bench-{count}.db")
    run_id = synthetic_run(store, count)
    start = time.perf_counter()
    out = write_report(store, run_id, scratch / "reports")
    report_s = time.perf_counter() - start
    start = time.perf_counter()  # gathering the facts and the HTML page, as write_report does
    page = write_html(gather_from_store(store, run_id), out)
    html_s = time.perf_counter() - start
    results = [browser.load(page) for _ in range(loads)]
    return {"trials": count, "bytes": page.stat().st_size, "report_s": report_s,
            "html_s": html_s,
            "load_ms": statistics.median(r.load_ms for r in results),
            "load_max_ms": max(r.load_ms for r in results),
            "errors": sum(len(r.errors) + len(r.requests) for r in results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, action="append", default=None)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        print("no chromium found (apt-get install chromium, or set $CHROMIUM)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as scratch, Chromium(binary) as browser:
        for count in args.trials or [100]:
            rows.append(measure(count, args.loads, browser, Path(scratch)))
    print("HTML report of a SYNTHETIC run (made-up trials: this measures the report, not a "
          f"compiler); headless {Path(binary).name}, median of {args.loads} loads")
    print(f"{'trials':>6} {'index.html':>12} {'write_report s':>14} {'of it html s':>12} "
          f"{'load ms':>8} "
          f"{'max ms':>7} {'errors':>6}  limits: {LIMIT_BYTES / 2**20:.0f} MiB, "
          f"{LIMIT_LOAD_MS} ms")
    for row in rows:
        print(f"{row['trials']:>6} {row['bytes'] / 1024:>9.0f} KiB {row['report_s']:>14.2f} "
              f"{row['html_s']:>12.2f} "
              f"{row['load_ms']:>8.0f} {row['load_max_ms']:>7.0f} {row['errors']:>6}")
    within = all(r["bytes"] < LIMIT_BYTES and r["load_max_ms"] < LIMIT_LOAD_MS and not r["errors"]
                 for r in rows)
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())

"""How heavy the HTML report is: its size and how long headless Chromium takes to load it.

The run is SYNTHETIC: its trials are made up (seeded, ``autotune.testing.synthetic``), not
measured, because this benchmark measures the report, not a compiler. They are stored with
the real ``Store`` and rendered with the real ``write_report``; then Debian's ``chromium``
loads ``index.html`` (``load`` = navigation start to the end of the load event, median of a
few loads).

    python benchmarks/report_render.py [--trials 100] [--trials 1000] [--loads 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autotune.report import gather_from_store, write_report
from autotune.report.html import write_html
from autotune.store import Store
from autotune.testing.synthetic import synthetic_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the DevTools client the report tests use

from browser import Chromium, find_chromium  # noqa: E402

LIMIT_BYTES = 5 * 2**20
LIMIT_LOAD_MS = 2000


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

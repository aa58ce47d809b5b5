"""The result file every benchmark writes: its figures with the date, host and versions."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from autotune.host import autotune_commit, host_info
from autotune.runtimes import package_versions


def write_result(out: str | Path, benchmark: str, figures: dict, suffix: str = "") -> Path:
    """Writes ``out/BENCHMARK-DATE[SUFFIX].json``: what was measured, when, where and with
    which package versions (a figure in README must come from such a file)."""
    date = datetime.date.today().isoformat()
    host = host_info()
    path = Path(out) / f"{benchmark}-{date}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmark": benchmark, "date": date, "autotune_commit": autotune_commit(),
        "host": {"cpu_model": host["cpu_model"], "cores": host["cores"],
                 "machine": host["machine"]},
        "versions": package_versions(), **figures}, indent=1) + "\n")
    return path

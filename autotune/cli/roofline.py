"""``autotune roofline``: measure (or read) a target's peak compute and memory bandwidth."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from autotune.cli.common import add_store_option, open_store, print_json, print_table


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "roofline", help="measure (or read) a target's peak compute and memory bandwidth",
        description="Time micro-benchmarks through a backend (a large MatMul at fp32, with the "
                    "bf16 hint and as int8 QDQ; an elementwise model and a numpy copy for "
                    "bandwidth) on a reachable target and store the peaks with the date and "
                    "host; otherwise show the latest stored peaks or the target TOML's.")
    parser.add_argument("--target", action="append", default=None,
                        help="target name or TOML file (repeatable; default: host-cpu)")
    parser.add_argument("--backend", default=None,
                        help="backend that runs the micro-benchmarks (default: the first, by "
                             "name, that can measure the target)")
    parser.add_argument("--read", action="store_true",
                        help="measure nothing: show the stored peaks, else the TOML's")
    parser.add_argument("--min-time", type=float, default=2.0, metavar="SECONDS",
                        help="timed seconds per micro-benchmark, at least (default: 2.0)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_store_option(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from autotune.backends import get_backend
    from autotune.target import load_target

    store = open_store(args.store)
    if args.backend is not None:
        get_backend(args.backend)  # an unknown name is bad input, before any target is read
    rows = []
    for target in [load_target(name) for name in (args.target or ["host-cpu"])]:
        backend, availability = _backend_for(target, args.backend)
        if not args.read and availability.ok:
            _measure(store, target, backend, args.min_time)
        elif not args.read:
            print(f"{target.name}: not measured ({availability.reason}); showing stored or "
                  "TOML peaks", file=sys.stderr)
        rows.append(_row(store, target))
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        print(f"target {row['target']}: {row['source']}")
        print_table(["precision", "peak GOPS", "TOML estimate", "ridge ops/byte"],
                    [[p, f"{g:.1f}", _fmt(row["toml_gops"].get(p)), _ridge(g, row)]
                     for p, g in row["peak_gops"].items()])
        bandwidth = row["memory_bandwidth_gbs"]
        print(f"memory bandwidth: {_fmt(bandwidth)} GB/s (TOML estimate "
              f"{_fmt(row['toml_bandwidth_gbs'])} GB/s)\n")
    return 0


def _backend_for(target, name: str | None):
    """The backend that measures ``target`` (``name``, else the first available by name),
    with its availability; when none is available, the first with every reason."""
    from autotune.backends import Availability, backend_names, get_backend

    if name is not None:
        return name, get_backend(name).available(target)
    reasons = []
    for candidate in backend_names():
        availability = get_backend(candidate).available(target)
        if availability.ok:
            return candidate, availability
        reasons.append(f"{candidate}: {availability.reason}")
    return backend_names()[0], Availability(False, "; ".join(reasons))


def _measure(store, target, backend: str, min_time_s: float) -> None:
    from autotune.host import cpu_model, host_info
    from autotune.roofline import measure_peaks
    from autotune.runtimes import package_versions
    from autotune.store import RooflinePeaks, now

    print(f"{target.name}: timing micro-benchmarks with {backend} ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="autotune-roofline-") as scratch:
        found = measure_peaks(target, backend, Path(scratch), min_time_s=min_time_s)
    store.add_roofline(RooflinePeaks(
        target=target.name, measured_at=now(), hostname=host_info()["hostname"],
        cpu_model=cpu_model(), cores=target.threads, peak_gops=found.peak_gops,
        memory_bandwidth_gbs=found.memory_bandwidth_gbs, versions=package_versions(),
        details=found.details))


def _row(store, target) -> dict:
    from autotune.host import cpu_model
    from autotune.roofline import peaks_for

    peaks = peaks_for(target, store, cpu_model(), target.threads)
    if peaks is None:
        source = "no stored measurement and no [roofline] table in the target TOML"
    elif peaks.source == "measured":
        source = f"measured {peaks.measured_at} on {peaks.hostname}"
    else:
        source = f"estimates from {target.path} (not measured here)"
    return {"target": target.name, "source": source,
            "measured": peaks is not None and peaks.source == "measured",
            "measured_at": peaks.measured_at if peaks else None,
            "peak_gops": dict(peaks.gops) if peaks else {},
            "memory_bandwidth_gbs": peaks.bandwidth_gbs if peaks else None,
            "toml_gops": dict(target.peak_gops),
            "toml_bandwidth_gbs": target.memory_bandwidth_gbs}


def _ridge(gops: float, row: dict) -> str:
    bandwidth = row["memory_bandwidth_gbs"]
    return f"{gops / bandwidth:.1f}" if bandwidth else "-"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"

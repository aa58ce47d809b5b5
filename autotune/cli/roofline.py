"""``autotune roofline``: measure (or read) a target's peak compute and the bandwidth of each
memory level (L1, L2, L3, DRAM)."""

from __future__ import annotations

import sys

from autotune.cli.common import add_store_option, open_store, print_json, print_table


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "roofline", help="measure (or read) a target's peak compute and memory bandwidth",
        description="Time micro-benchmarks on a reachable target, in an isolated worker on "
                    "the target itself (a large MatMul through a backend at fp32, with the "
                    "bf16 hint and as int8 QDQ; a numpy kernel streaming a buffer sized to each "
                    "cache level; an elementwise model for DRAM) and store the peaks with the "
                    "date and the measured device; otherwise show the latest stored peaks or "
                    "the target TOML's. Peaks of an emulated device are stored flagged and "
                    "never used as a roof.")
    parser.add_argument("--target", action="append", default=None,
                        help="target name or TOML file (repeatable; default: host-cpu)")
    parser.add_argument("--backend", default=None,
                        help="backend that runs the micro-benchmarks (default: the first, by "
                             "name, that can measure the target)")
    parser.add_argument("--read", action="store_true",
                        help="measure nothing: show the stored peaks, else the TOML's")
    parser.add_argument("--min-time", type=float, default=2.0, metavar="SECONDS",
                        help="timed seconds per micro-benchmark, at least (default: 2.0)")
    parser.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                        help="time limit of the measuring worker (default: 900)")
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
            _measure(store, target, backend, args.min_time, args.timeout)
        elif not args.read:
            print(f"{target.name}: not measured ({availability.reason}); showing stored or "
                  "TOML peaks", file=sys.stderr)
        rows.append(_row(store, target))
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        print(f"target {row['target']}: {row['source']}")
        if row["peaks_derivation"]:
            print(f"theoretical peaks: {row['peaks_derivation']}")
        print_table(["precision", "roof GOPS", "measured", "theoretical (TOML)",
                     "measured / theoretical", "ridge ops/byte (DRAM)"],
                    [[p, f"{g:.1f}", _fmt(row["measured_gops"].get(p)),
                      _fmt(row["toml_gops"].get(p)),
                      _share(row["measured_gops"].get(p), row["toml_gops"].get(p)),
                      _ridge(g, row)] for p, g in sorted(row["peak_gops"].items())])
        print_table(["level", "capacity (all cores)", "roof GB/s", "from", "TOML estimate GB/s"],
                    [[level["level"], _size(level["capacity_bytes"]),
                      f"{level['bandwidth_gbs']:.1f}", level["source"],
                      _fmt(level["toml_bandwidth_gbs"])] for level in row["levels"]])
        print()
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


def _measure(store, target, backend: str, min_time_s: float, timeout_s: float) -> None:
    """Run the micro-benchmarks in an isolated worker and store what they found, keyed by
    the device that ran them (a remote target's CPU, not this host's)."""
    from autotune.host import cpu_model, host_info
    from autotune.roofline import PeakMeasurement
    from autotune.runtimes import package_versions
    from autotune.store import RooflinePeaks, now
    from autotune.worker import RooflineJob, run_roofline_isolated

    print(f"{target.name}: timing micro-benchmarks with {backend} in an isolated worker ...",
          file=sys.stderr)
    job = RooflineJob(str(target.path), backend, min_time_s)
    answer, error = run_roofline_isolated(job, timeout_s, memory_limit_bytes=8 << 30)
    if answer is None:
        print(f"{target.name}: not measured ({error}); showing stored or TOML peaks",
              file=sys.stderr)
        return
    found = PeakMeasurement.from_json(answer)
    device = found.device
    emulator = (device.emulator or "emulated") if device is not None and device.emulated \
        else ("emulated (the target file says so)" if target.emulated else "")
    skipped = found.details.get("levels", {}).get("skipped")
    untrusted = [f"{f['name']} ({f['reason']})" for f in found.details.get("levels", {})
                 .get("figures", []) if f.get("reason")]
    if skipped or untrusted:
        print(f"{target.name}: cache levels not measured, TOML estimates kept: "
              f"{skipped or '; '.join(untrusted)}", file=sys.stderr)
    if emulator:
        print(f"{target.name}: measured on an emulated device ({emulator}): stored flagged, "
              "never used as a roof", file=sys.stderr)
    if target.is_local:
        hostname, measured_cpu = host_info()["hostname"], cpu_model()
    elif device is not None and device.cpu_model:
        reach = target.reach
        hostname = f"device {reach.key} via tracker {reach.host}:{reach.port}"
        measured_cpu = device.cpu_model
    else:
        print(f"{target.name}: not stored: the device did not say what CPU it is (which keys "
              "its peaks)", file=sys.stderr)
        return
    store.add_roofline(RooflinePeaks(
        target=target.name, measured_at=now(), hostname=hostname, cpu_model=measured_cpu,
        cores=target.threads, peak_gops=found.peak_gops,
        memory_bandwidth_gbs=found.memory_bandwidth_gbs,
        versions={**package_versions(), **(device.versions if device is not None else {})},
        details=found.details, level_bandwidth_gbs=found.level_bandwidth_gbs,
        emulator=emulator))


def _row(store, target) -> dict:
    from autotune.host import cpu_model
    from autotune.roofline import peaks_for

    peaks = peaks_for(target, store, None if not target.is_local else cpu_model(),
                      target.threads)
    if peaks is None:
        source = "no stored measurement and no [roofline] table in the target TOML"
    elif peaks.source == "measured":
        source = f"measured {peaks.measured_at} on {peaks.hostname}"
    else:
        source = f"estimates from {target.path} (not measured here)"
    toml = {level.name: level.bandwidth_gbs for level in target.memory_levels}
    return {"target": target.name, "source": source,
            "measured": peaks is not None and peaks.source == "measured",
            "measured_at": peaks.measured_at if peaks else None,
            "peak_gops": dict(peaks.gops) if peaks else {},
            "memory_bandwidth_gbs": peaks.bandwidth_gbs if peaks else None,
            "levels": [{"level": level.name, "capacity_bytes": level.capacity_bytes,
                        "bandwidth_gbs": level.bandwidth_gbs, "source": level.source,
                        "toml_bandwidth_gbs": toml.get(level.name)}
                       for level in (peaks.levels if peaks else ())],
            "measured_gops": dict(peaks.measured_gops) if peaks else {},
            "toml_gops": dict(target.peak_gops), "peaks_derivation": target.peaks_derivation,
            "toml_bandwidth_gbs": target.memory_bandwidth_gbs}


def _size(capacity: int | None) -> str:
    if capacity is None:
        return "-"
    return f"{capacity / 2**20:g} MiB" if capacity >= 2**20 else f"{capacity / 2**10:g} KiB"


def _share(measured: float | None, theoretical: float | None) -> str:
    """What a micro-benchmark reached of the theoretical peak (the Empirical Roofline
    Toolkit's reach 70-97% on their micro-kernels)."""
    return f"{measured / theoretical:.0%}" if measured and theoretical else "-"


def _ridge(gops: float, row: dict) -> str:
    bandwidth = row["memory_bandwidth_gbs"]
    return f"{gops / bandwidth:.1f}" if bandwidth else "-"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"

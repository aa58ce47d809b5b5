"""Why do OpenVINO latencies toggle between two speeds? An experiment matrix that tells.

The artifacts are made once by the suite's own code (``autotune.quantize`` and the OpenVINO
backend's ``compile``: digits-cnn in fp32 and in ``w:int8:sym:per_channel a:uint8:asym
cal:minmax``). Each cell of the matrix then imports that blob in fresh processes with the
backend's compile settings, changed in one way (threads, OpenVINO's own pinning, the
performance hint, the vCPUs the process may use, heavy numpy work just before), and times
blocks of runs. Cells are interleaved process by process (a shuffled round over every cell,
then the next round), so a co-tenant's burst lands on every cell alike rather than on the
cell that happened to run during it. One long process per thread count shows whether the
speed switches inside a process.

For every block the child records, over the same window: the median latency; the share of
the allowed vCPUs' time that other processes were busy (their busy jiffies in /proc/stat
minus this process's own CPU time); the hypervisor's steal share; the time this process's
threads sat runnable but not running (/proc/self/task/*/schedstat, in ns, so it resolves
what a 100 Hz jiffy cannot); the load average and the CPU MHz. Blocks are split into a fast
and a slow mode per cell (two clusters on log latency, kept only when their centres are at
least ``--min-ratio`` apart), and slowness is correlated with those counters.

The children drive OpenVINO directly (never through the backend's ``measure``) because the
settings varied here are OpenVINO's own, below the backend's interface; the compile settings
they start from are the backend's.

    python benchmarks/toggling.py [--processes 5] [--blocks 3] [--block-runs 150]
                                  [--long-blocks 60] [--seed 0] [--tag TEXT]

Writes benchmarks/results/toggling-DATE.json (date, host, CPU, versions, every block).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

INT8 = "w:int8:sym:per_channel a:uint8:asym cal:minmax"
MIN_RATIO = 1.4  # two clusters closer than this are one mode with its spread
HEAVY_BURST_S = 2.0
WARMUP_RUNS = 10  # as the suite's MeasurementProtocol

# /proc/stat's cpuN fields, in order (guest and guest_nice are already inside user and nice).
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_BUSY = ("user", "nice", "system", "irq", "softirq")


# --- pure parts (tests/test_toggling_bench.py) -------------------------------------------

def parse_proc_stat(text: str) -> dict[int, dict[str, int]]:
    """The per-vCPU jiffy counters of a /proc/stat text, by vCPU number."""
    cpus = {}
    for line in text.splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            cpus[int(name[3:])] = {field: int(value) for field, value
                                   in zip(_STAT_FIELDS, values, strict=False)}
    return cpus


@dataclass(frozen=True)
class CpuWindow:
    """What the allowed vCPUs did over one window, as shares of their elapsed time."""

    other_share: float  # busy for other processes (and the kernel on their behalf)
    steal_share: float  # taken by the hypervisor for another guest
    own_share: float  # this process's threads
    jiffies: int  # elapsed jiffies summed over the allowed vCPUs (the resolution)


def cpu_window(before: Mapping[int, Mapping[str, int]], after: Mapping[int, Mapping[str, int]],
               cpus: Sequence[int], own_jiffies: int) -> CpuWindow:
    """Shares of the allowed vCPUs' time between two /proc/stat readings.

    Args:
        before, after: ``parse_proc_stat`` of the two readings.
        cpus: the vCPUs the process may run on (its affinity); others do not slow it.
        own_jiffies: this process's user + system time over the window, in jiffies; all of
            it ran on ``cpus``, so the rest of their busy time is someone else's.
    """
    delta = {field: sum(after[cpu][field] - before[cpu][field] for cpu in cpus)
             for field in _STAT_FIELDS}
    total = sum(delta.values())
    if total <= 0:
        return CpuWindow(0.0, 0.0, 0.0, 0)
    busy = sum(delta[field] for field in _BUSY)
    own = min(own_jiffies, busy)
    return CpuWindow(other_share=(busy - own) / total, steal_share=delta["steal"] / total,
                     own_share=own / total, jiffies=total)


def split_modes(values: Sequence[float], min_ratio: float = MIN_RATIO) -> float | None:
    """The latency that separates a fast from a slow mode, or None when there is one mode.

    Two clusters on log latency (the split that minimises the within-cluster sum of
    squares, exact in one dimension); they count as two modes only when the slow centre is
    at least ``min_ratio`` times the fast one, so ordinary spread is not called a mode.

    Returns:
        A threshold: values above it are the slow mode.
    """
    logs = sorted(math.log(value) for value in values)
    best = None
    for cut in range(1, len(logs)):
        low, high = logs[:cut], logs[cut:]
        cost = (sum((x - statistics.fmean(low)) ** 2 for x in low)
                + sum((x - statistics.fmean(high)) ** 2 for x in high))
        if best is None or cost < best[0]:
            best = (cost, cut, statistics.fmean(low), statistics.fmean(high))
    if best is None or best[3] - best[2] < math.log(min_ratio):
        return None
    cut = best[1]
    return math.exp((logs[cut - 1] + logs[cut]) / 2)


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r, None when either side does not vary (or fewer than 3 points)."""
    if len(xs) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return sxy / math.sqrt(sxx * syy)


# --- the matrix ------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One way of running the artifact; None keeps the suite's setting."""

    name: str
    precision: str = "int8"  # which artifact: int8 or fp32
    threads: int = 2  # INFERENCE_NUM_THREADS
    # ENABLE_CPU_PINNING; None keeps OpenVINO's default, which is on (Linux, latency hint).
    cpu_pinning: bool | None = None
    latency_hint: bool = True  # PERFORMANCE_HINT LATENCY, or no hint at all
    cpus: tuple[int, ...] | None = None  # the process's affinity (taskset); None: all
    heavy_before: bool = False  # a numpy matmul burst on every vCPU just before timing
    long: bool = False  # one long process instead of many fresh ones


CELLS = (
    Cell("int8 suite (2 thr)"),
    Cell("int8 1 thr", threads=1),
    Cell("int8 2 thr pin off", cpu_pinning=False),
    Cell("int8 2 thr no hint", latency_hint=False),
    Cell("int8 2 thr vcpu0 only", cpus=(0,)),
    Cell("int8 1 thr vcpu0", threads=1, cpus=(0,)),
    Cell("int8 1 thr vcpu1", threads=1, cpus=(1,)),
    Cell("int8 2 thr after heavy", heavy_before=True),
    Cell("fp32 suite (2 thr)", precision="fp32"),
    Cell("fp32 1 thr", precision="fp32", threads=1),
)
LONG_CELLS = (
    Cell("int8 2 thr long process", long=True),
    Cell("int8 1 thr long process", threads=1, long=True),
)


def openvino_config(suite_config: Mapping[str, str], cell: Cell) -> dict[str, str]:
    """The backend's compile settings with the cell's one change."""
    config = dict(suite_config)
    config["INFERENCE_NUM_THREADS"] = str(cell.threads)
    if cell.cpu_pinning is not None:
        config["ENABLE_CPU_PINNING"] = "YES" if cell.cpu_pinning else "NO"
    if not cell.latency_hint:
        config.pop("PERFORMANCE_HINT", None)
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=5, help="fresh processes per cell")
    parser.add_argument("--blocks", type=int, default=3, help="blocks per fresh process")
    parser.add_argument("--block-runs", type=int, default=150, help="runs per block")
    parser.add_argument("--long-blocks", type=int, default=60,
                        help="blocks of the long-process cells")
    parser.add_argument("--min-ratio", type=float, default=MIN_RATIO)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="appended to the result file's name")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(json.loads(Path(args.child).read_text()))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autotune-toggling-") as scratch:
        folder = Path(scratch)
        built = _build(folder)
        sizes = ", ".join(f"{precision} {artifact['size_bytes']} B"
                          for precision, artifact in built["artifacts"].items())
        print(f"built: {sizes}; bf16: {built['bf16']['summary']}", file=sys.stderr)
        rounds = [[(cell, index) for cell in CELLS] for index in range(args.processes)]
        shuffler = random.Random(args.seed)
        for round_jobs in rounds:
            shuffler.shuffle(round_jobs)
        # The long processes run mid-way, between two rounds of the fresh ones.
        order = [job for round_jobs in rounds[: args.processes // 2] for job in round_jobs]
        order += [(cell, 0) for cell in LONG_CELLS]
        order += [job for round_jobs in rounds[args.processes // 2:] for job in round_jobs]
        blocks = []
        for number, (cell, index) in enumerate(order, 1):
            count = args.long_blocks if cell.long else args.blocks
            spec = {"blob": built["artifacts"][cell.precision]["path"],
                    "dataset": built["dataset"],
                    "config": openvino_config(built["suite_config"], cell),
                    "cpus": list(cell.cpus) if cell.cpus else None,
                    "heavy_before_s": HEAVY_BURST_S if cell.heavy_before else 0.0,
                    "blocks": count, "block_runs": args.block_runs}
            records = _run_child(folder / f"spec-{number}.json", spec)
            for record in records:
                blocks.append({"cell": cell.name, "process": index, **record})
            medians = [r["median_ms"] for r in records]
            print(f"{number}/{len(order)} {cell.name} #{index}: "
                  + " ".join(f"{m:.3f}" for m in medians[:8])
                  + (" ..." if len(medians) > 8 else "") + " ms", file=sys.stderr)
    cells = [*CELLS, *LONG_CELLS]
    summary = summarise(blocks, [cell.name for cell in cells], args.min_ratio)
    _print(summary, built, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from autotune.host import host_info
    from autotune.runtimes import package_versions

    date = datetime.date.today().isoformat()
    host = {key: value for key, value in host_info().items() if key != "hostname"}
    host["isa"] = _isa_flags()
    host["transparent_hugepages"] = _read("/sys/kernel/mm/transparent_hugepage/enabled").strip()
    path = out / f"toggling-{date}{'-' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps({
        "benchmark": "toggling", "schema": 1, "date": date, "host": host,
        "versions": package_versions(),
        "settings": {"model": "digits-cnn", "int8_config": INT8,
                     "processes": args.processes, "blocks": args.blocks,
                     "block_runs": args.block_runs, "long_blocks": args.long_blocks,
                     "min_ratio": args.min_ratio, "seed": args.seed,
                     "warmup_runs": WARMUP_RUNS, "heavy_burst_s": HEAVY_BURST_S,
                     "suite_config": built["suite_config"],
                     "cells": [asdict(cell) for cell in cells]},
        "build": {key: built[key] for key in ("artifacts", "bf16")},
        "summary": summary, "wall_s": round(time.monotonic() - began, 1),
        "blocks": blocks}, indent=1))
    print(f"wrote {path} ({time.monotonic() - began:.0f} s)")
    return 0


def summarise(blocks: Sequence[Mapping], cell_names: Sequence[str],
              min_ratio: float = MIN_RATIO) -> list[dict]:
    """Per cell: the modes, how the blocks fall into them, and what slowness goes with."""
    rows = []
    for name in cell_names:
        chosen = [b for b in blocks if b["cell"] == name]
        if not chosen:
            continue
        medians = [b["median_ms"] for b in chosen]
        threshold = split_modes(medians, min_ratio)
        slow = [b for b in chosen if threshold is not None and b["median_ms"] > threshold]
        fast = [b for b in chosen if b not in slow]
        processes = {}
        for block in chosen:
            processes.setdefault(block["process"], set()).add(block in slow)
        logs = [math.log(m) for m in medians]

        def mean_of(group: Sequence[Mapping], key: str) -> float | None:
            return statistics.fmean(b[key] for b in group) if group else None

        rows.append({
            "cell": name, "blocks": len(chosen), "median_ms": statistics.median(medians),
            "other_share_median": statistics.median(b["other_share"] for b in chosen),
            "rq_wait_share_median": statistics.median(b["rq_wait_share"] for b in chosen),
            "fast": len(fast), "slow": len(slow),
            "fast_ms": statistics.median(b["median_ms"] for b in fast) if fast else None,
            "slow_ms": statistics.median(b["median_ms"] for b in slow) if slow else None,
            "threshold_ms": threshold,
            "processes_switching": sum(len(modes) == 2 for modes in processes.values()),
            "processes": len(processes),
            "other_share_fast": mean_of(fast, "other_share"),
            "other_share_slow": mean_of(slow, "other_share"),
            "rq_wait_share_fast": mean_of(fast, "rq_wait_share"),
            "rq_wait_share_slow": mean_of(slow, "rq_wait_share"),
            "r_other": correlation(logs, [b["other_share"] for b in chosen]),
            "r_steal": correlation(logs, [b["steal_share"] for b in chosen]),
            "r_rq_wait": correlation(logs, [b["rq_wait_share"] for b in chosen]),
            "steal_share_max": max(b["steal_share"] for b in chosen),
            "mhz_min": min(b["mhz"] for b in chosen), "mhz_max": max(b["mhz"] for b in chosen),
        })
    return rows


def _print(summary: Sequence[Mapping], built: Mapping, args) -> None:
    from autotune.cli.common import print_table

    def pct(value: float | None) -> str | None:
        return None if value is None else f"{value:.0%}"

    def num(value: float | None, digits: int = 3) -> str | None:
        return None if value is None else f"{value:.{digits}f}"

    print(f"\nOpenVINO digits-cnn, blocks of {args.block_runs} runs; {args.processes} fresh "
          f"processes x {args.blocks} blocks per cell, {args.long_blocks} blocks per long "
          f"process; modes split at >= {args.min_ratio}x\n")
    headers = ["cell", "blocks", "median ms", "other%", "rq wait", "fast", "slow", "fast ms",
               "slow ms", "switching procs", "other% fast", "other% slow", "rq wait fast",
               "rq wait slow", "r(other)", "r(steal)", "r(rq wait)", "steal max"]
    print_table(headers, [[
        row["cell"], row["blocks"], num(row["median_ms"]), pct(row["other_share_median"]),
        pct(row["rq_wait_share_median"]), row["fast"], row["slow"], num(row["fast_ms"]),
        num(row["slow_ms"]), f"{row['processes_switching']}/{row['processes']}",
        pct(row["other_share_fast"]), pct(row["other_share_slow"]),
        pct(row["rq_wait_share_fast"]), pct(row["rq_wait_share_slow"]),
        num(row["r_other"], 2), num(row["r_steal"], 2), num(row["r_rq_wait"], 2),
        pct(row["steal_share_max"])] for row in summary])
    print("\nother%: the allowed vCPUs' time busy for other processes; rq wait: this "
          "process's threads' time runnable but not running, summed over threads, per second "
          f"of wall time; r: Pearson's r of log latency with each, over a cell's blocks"
          f"\nbf16: {built['bf16']['summary']}")


# --- building the artifacts with the suite's code ------------------------------------------

def _build(folder: Path) -> dict:
    """Quantize and compile digits-cnn (fp32, int8) as a trial would; check what bf16 does."""
    from autotune.backends.openvino import OpenVINOBackend, _compile_config
    from autotune.config import FP32, QuantConfig
    from autotune.quantize import quantize
    from autotune.target import load_target
    from autotune.zoo import resolve_model

    model = resolve_model("digits-cnn")
    target = load_target("host-cpu")
    backend = OpenVINOBackend()
    dataset_path = folder / "dataset.npz"
    model.dataset.save(dataset_path)
    artifacts = {}
    for precision, config in (("fp32", FP32), ("int8", QuantConfig.from_text(INT8))):
        quantized = quantize(model.path, config, model.dataset.calibration, folder / "cache")
        (folder / precision).mkdir()
        artifact = backend.compile(quantized, target, folder / precision)
        artifacts[precision] = {
            "path": str(artifact.path), "size_bytes": artifact.size_bytes,
            "config": config.text, "kernels": sorted({f"{op['type']}:{op['kernel']}"
                                                      for op in artifact.details["op_precisions"]})}
    return {"dataset": str(dataset_path), "artifacts": artifacts,
            "suite_config": _compile_config(target, "fp32"), "bf16": _bf16_check(model.path)}


def _bf16_check(model_path: Path) -> dict:
    """What a bf16 precision hint becomes on this CPU: the suite refuses it where the CPU
    lacks BF16; OpenVINO itself (asked anyway) runs the model in some precision, shown here."""
    import openvino

    from autotune.backends.openvino import runtime_op_precisions

    core = openvino.Core()
    capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    compiled = core.compile_model(core.read_model(str(model_path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "bf16"})
    resolved = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    precisions = sorted({op["precision"] for op in runtime_op_precisions(compiled)})
    native = "BF16" in capabilities
    summary = (f"CPU capabilities {capabilities}; a bf16 hint resolves to {resolved}, heavy "
               f"ops run in {precisions}" + ("" if native else
                                             " (no native bf16: the suite reports bf16 "
                                             "configs as unsupported here)"))
    return {"capabilities": capabilities, "hint_resolves_to": resolved,
            "heavy_op_precisions": precisions, "native": native, "summary": summary}


def _run_child(spec_path: Path, spec: Mapping) -> list[dict]:
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, __file__, "--child", str(spec_path)],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# --- the child: one fresh process ----------------------------------------------------------

def _child(spec: Mapping) -> int:
    """Load the blob with the cell's settings and time blocks, one JSON line per block."""
    if spec["cpus"]:
        os.sched_setaffinity(0, spec["cpus"])  # before OpenVINO reads the affinity
    cpus = sorted(os.sched_getaffinity(0))
    import numpy as np
    import openvino

    with np.load(spec["dataset"]) as data:
        inputs = {key.split("/", 1)[1]: data[key] for key in data.files
                  if key.startswith("evaluation/")}
    count = len(next(iter(inputs.values())))
    feeds = [{name: np.ascontiguousarray(array[index]) for name, array in inputs.items()}
             for index in range(min(count, 256))]
    core = openvino.Core()
    compiled = core.import_model(Path(spec["blob"]).read_bytes(), "CPU", spec["config"])
    resolved = {key: str(compiled.get_property(key)) for key in
                ("INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING", "PERFORMANCE_HINT",
                 "NUM_STREAMS", "INFERENCE_PRECISION_HINT")}
    request = compiled.create_infer_request()
    tensors = [{name: openvino.Tensor(array) for name, array in f.items()} for f in feeds]
    run = 0

    def timed_ms() -> float:
        nonlocal run
        for name, tensor in tensors[run % len(tensors)].items():
            request.set_tensor(name, tensor)
        run += 1
        start = time.perf_counter_ns()
        request.infer()
        return (time.perf_counter_ns() - start) / 1e6

    for _ in range(WARMUP_RUNS):
        timed_ms()
    if spec["heavy_before_s"]:
        matrix = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
        end = time.perf_counter() + spec["heavy_before_s"]
        while time.perf_counter() < end:
            matrix = matrix @ matrix
            matrix /= np.abs(matrix).max()
    for block in range(spec["blocks"]):
        state = _machine_state()
        began = time.perf_counter_ns()
        samples = [timed_ms() for _ in range(spec["block_runs"])]
        wall_ns = time.perf_counter_ns() - began
        after = _machine_state()
        window = cpu_window(before=state["stat"], after=after["stat"], cpus=cpus,
                            own_jiffies=after["own_jiffies"] - state["own_jiffies"])
        print(json.dumps({
            "block": block, "median_ms": statistics.median(samples), "min_ms": min(samples),
            "p90_ms": sorted(samples)[int(0.9 * len(samples))], "wall_ms": wall_ns / 1e6,
            "other_share": window.other_share, "steal_share": window.steal_share,
            "own_share": window.own_share, "jiffies": window.jiffies,
            "rq_wait_share": (after["rq_wait_ns"] - state["rq_wait_ns"]) / wall_ns,
            "loadavg_1m": after["loadavg_1m"], "mhz": after["mhz"], "cpus": cpus,
            "resolved": resolved if block == 0 else None}), flush=True)
    return 0


def _machine_state() -> dict:
    """/proc counters read between blocks: vCPU jiffies, own CPU time and run-queue wait."""
    own = _read("/proc/self/stat").rsplit(")", 1)[1].split()
    wait_ns = 0
    for task in os.listdir("/proc/self/task"):
        fields = _read(f"/proc/self/task/{task}/schedstat").split()
        wait_ns += int(fields[1]) if len(fields) > 1 else 0
    mhz = [float(line.split(":")[1]) for line in _read("/proc/cpuinfo").splitlines()
           if line.startswith("cpu MHz")]
    return {"stat": parse_proc_stat(_read("/proc/stat")),
            "own_jiffies": int(own[11]) + int(own[12]),  # utime, stime (fields 14, 15)
            "rq_wait_ns": wait_ns, "loadavg_1m": float(_read("/proc/loadavg").split()[0]),
            "mhz": statistics.fmean(mhz) if mhz else 0.0}


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:  # a thread that ended between listdir and open
        return ""


def _isa_flags() -> list[str]:
    flags = next((line.split(":", 1)[1].split() for line in _read("/proc/cpuinfo").splitlines()
                  if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8",
              "amx_bf16", "avx512_bf16")
    return [flag for flag in wanted if flag in flags]


if __name__ == "__main__":
    sys.exit(main())

"""Can a reference kernel see the host's slow spells? Canaries against a model, over time.

On this VM a model's latency has doubled for minutes at a time with no steal, no other
process and an unchanged clock: the guest's counters cannot see it. A canary is a fixed
piece of work timed on the same vCPU right before a measurement: if its time rises with the
model's, a measured pass can be judged by it (re-measured or flagged), as the suite already
does for steal and other processes.

One process pinned to the timing vCPU (``--cpu``, default the last one, as host-cpu times)
repeats windows: two canaries (``compute``: the suite's own, ``autotune.canary.time_canary``,
element-wise float32 arithmetic in L2; ``memory``: copies of a 64 MiB buffer, DRAM-bound on
any cache this machine has), then a
block of OpenVINO digits-cnn inferences in fp32 and in int8 (the suite's compile settings,
one thread), each block's median. Afterwards, per model: Pearson's r of log canary vs log
model, and how well "canary slower than ``--canary-limit`` x its fastest" finds the windows
where the model ran slower than ``--model-limit`` x its fastest.

With ``--load-cycle S`` the other vCPUs get a known load in turns of S seconds: none, a
pure-Python busy loop (integer work), none, a numpy element-wise loop on 4 MiB arrays
(vector work), none, copies of a 256 MiB array (memory bandwidth), each pinned there;
every window records the load it ran beside, and the table adds the canary's and the
models' median slowdown per load.

    python benchmarks/canary.py [--minutes 10] [--cpu N] [--canary-limit 1.10]
                                [--load-cycle 60]

Writes benchmarks/results/canary-DATE.json (date, host, versions, every window) and prints
a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

CANARIES = ("compute", "memory")
MODELS = ("fp32", "int8")
BLOCK_RUNS = {"fp32": 60, "int8": 100}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, default=None,
                        help="the vCPU to time on (default: the highest allowed one)")
    parser.add_argument("--canary-limit", type=float, default=1.10)
    parser.add_argument("--model-limit", type=float, default=1.15)
    parser.add_argument("--load-cycle", type=float, default=0.0, metavar="S",
                        help="change the load on the other vCPUs every S seconds (0: none)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(json.loads(Path(args.child).read_text()))

    from toggling import _build

    from autotune.cli.common import print_table
    from autotune.host import autotune_commit, host_info
    from autotune.runtimes import package_versions

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="autotune-canary-") as scratch:
        folder = Path(scratch)
        built = _build(folder)
        phase_file = folder / "load.txt"
        phase_file.write_text("none")
        spec = {"cpu": cpu, "seconds": args.minutes * 60, "dataset": built["dataset"],
                "phase_file": str(phase_file),
                "config": dict(built["suite_config"], INFERENCE_NUM_THREADS="1"),
                "blobs": {name: built["artifacts"][name]["path"] for name in MODELS}}
        spec_path = folder / "spec.json"
        spec_path.write_text(json.dumps(spec))
        print(f"timing on vCPU {cpu} for {args.minutes:g} min ...", file=sys.stderr)
        lines = folder / "windows.jsonl"
        with lines.open("w") as sink:
            child = subprocess.Popen([sys.executable, __file__, "--child", str(spec_path)],
                                     stdout=sink, stderr=subprocess.PIPE, text=True)
            others = sorted(os.sched_getaffinity(0) - {cpu})
            if args.load_cycle > 0 and others:
                _cycle_loads(child, others, phase_file, args.load_cycle)
            _, stderr = child.communicate(timeout=args.minutes * 60 + 600)
        if child.returncode != 0:
            raise SystemExit(f"child failed ({child.returncode}): {stderr[-2000:]}")
        windows = [json.loads(line) for line in lines.read_text().splitlines()
                   if line.startswith("{")]
    summary = summarise(windows, args.canary_limit, args.model_limit)
    print(f"{len(windows)} windows on vCPU {cpu}, {args.minutes:g} min; canary flags a window "
          f"at > {args.canary_limit:g}x its fastest, a model window is slow at > "
          f"{args.model_limit:g}x its fastest\n")
    print_table(["canary", "model", "r (log)", "slow windows", "found", "false alarms",
                 "model range"],
                [[row["canary"], row["model"],
                  "-" if row["r"] is None else f"{row['r']:.2f}",
                  str(row["slow"]), f"{row['found']}/{row['slow']}",
                  f"{row['false_alarms']}/{row['not_slow']}",
                  f"{row['model_min_ms']:.2f}-{row['model_max_ms']:.2f} ms"]
                 for row in summary])
    loads = sorted({w["load"] for w in windows})
    if len(loads) > 1:
        print()
        print_table(["load on the other vCPUs", "windows", *(f"{name} / fastest (median)"
                                                          for name in (*CANARIES, *MODELS))],
                    [[load, str(sum(w["load"] == load for w in windows)),
                      *(f"{_slowdown(windows, name, load):.2f}" for name in (*CANARIES, *MODELS))]
                     for load in loads])
    date = datetime.date.today().isoformat()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"canary-{date}{'-' + args.tag if args.tag else ''}.json"
    host = host_info()
    path.write_text(json.dumps({
        "benchmark": "canary", "date": date, "autotune_commit": autotune_commit(),
        "host": {"cpu_model": host["cpu_model"], "cores": host["cores"],
                 "machine": host["machine"]},
        "versions": package_versions(), "cpu": cpu, "minutes": args.minutes,
        "load_cycle_s": args.load_cycle, "canary_limit": args.canary_limit,
        "model_limit": args.model_limit,
        "summary": summary, "windows": windows}, indent=1) + "\n")
    print(f"\nwrote {path}")
    return 0


def _slowdown(windows: list[dict], name: str, load: str) -> float:
    """The median of ``name`` in the windows beside ``load``, over its fastest anywhere."""
    return (statistics.median(w[name] for w in windows if w["load"] == load)
            / min(w[name] for w in windows))


LOADS = ("none", "spin", "none", "numpy", "none", "copy")
_LOAD_CODE = {
    "spin": "while True: pass",
    "numpy": ("import numpy as np\na = np.ones(1 << 20, dtype=np.float32); b = a.copy()\n"
              "while True: np.multiply(a, b, out=b); np.add(a, b, out=b)"),
    "copy": ("import numpy as np\na = np.ones(64 << 20, dtype=np.float32); b = a.copy()\n"
             "while True: np.copyto(b, a)"),
}


def _cycle_loads(child: subprocess.Popen, cpus: list[int], phase_file: Path,
                 seconds: float) -> None:
    """Until the child ends: each load of LOADS in turn for ``seconds``, one process per CPU
    of ``cpus``, pinned there; the phase file names the load that runs."""
    turn = 0
    while child.poll() is None:
        load = LOADS[turn % len(LOADS)]
        processes = [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity("
                                       f"0, {{{cpu}}})\n{_LOAD_CODE[load]}"])
                     for cpu in cpus] if load != "none" else []
        phase_file.write_text(load)
        try:
            child.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        phase_file.write_text("none")
        for process in processes:
            process.kill()
            process.wait()
        turn += 1


def summarise(windows: list[dict], canary_limit: float, model_limit: float) -> list[dict]:
    """Per canary and model: r of the logs, and the canary's hits on the model's slow windows."""
    from toggling import correlation

    rows = []
    for canary in CANARIES:
        flagged = [w[canary] > canary_limit * min(x[canary] for x in windows) for w in windows]
        for model in MODELS:
            fastest = min(w[model] for w in windows)
            slow = [w[model] > model_limit * fastest for w in windows]
            r = correlation([math.log(w[canary]) for w in windows],
                            [math.log(w[model]) for w in windows])
            rows.append({
                "canary": canary, "model": model, "r": r, "slow": sum(slow),
                "not_slow": len(slow) - sum(slow),
                "found": sum(s and f for s, f in zip(slow, flagged, strict=True)),
                "false_alarms": sum(f and not s for s, f in zip(slow, flagged, strict=True)),
                "model_min_ms": fastest, "model_max_ms": max(w[model] for w in windows)})
    return rows


def _child(spec: dict) -> int:
    os.sched_setaffinity(0, {spec["cpu"]})
    import numpy as np
    import openvino

    with np.load(spec["dataset"]) as data:
        inputs = {key.split("/", 1)[1]: data[key] for key in data.files
                  if key.startswith("evaluation/")}
    count = min(len(next(iter(inputs.values()))), 64)
    core = openvino.Core()
    requests, tensors = {}, [
        {name: openvino.Tensor(np.ascontiguousarray(array[i])) for name, array in inputs.items()}
        for i in range(count)]
    for name, blob in spec["blobs"].items():
        compiled = core.import_model(Path(blob).read_bytes(), "CPU", spec["config"])
        requests[name] = compiled.create_infer_request()
    from autotune.canary import time_canary

    source = np.ones(64 << 18, dtype=np.float32)  # 64 MiB
    target = np.empty_like(source)

    def memory() -> float:
        start = time.perf_counter_ns()
        for _ in range(4):
            np.copyto(target, source)
        return (time.perf_counter_ns() - start) / 1e6

    def block(model: str) -> float:
        request, samples = requests[model], []
        for run in range(BLOCK_RUNS[model]):
            for name, tensor in tensors[run % count].items():
                request.set_tensor(name, tensor)
            start = time.perf_counter_ns()
            request.infer()
            samples.append((time.perf_counter_ns() - start) / 1e6)
        return statistics.median(samples)

    for model in MODELS:  # warm-up
        block(model)
    began = time.monotonic()
    index = 0
    while time.monotonic() - began < spec["seconds"]:
        window = {"window": index, "t_s": round(time.monotonic() - began, 2),
                  "load": Path(spec["phase_file"]).read_text().strip(),
                  "compute": time_canary(),
                  "memory": statistics.median(memory() for _ in range(3))}
        for model in MODELS:
            window[model] = block(model)
        print(json.dumps(window), flush=True)
        index += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

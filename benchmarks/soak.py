"""Soak: 200 real trials with faults injected into 20% of them, and a run killed mid-way.

The faulty trials are chosen up front (seeded): each gets one fault kind (segfault, hang,
oom, raise, exit) in one phase (quantize, compile, measure), passed to the workers through
``AUTOTUNE_INJECT_FAULT`` (``;``-separated specs). The first run is SIGKILLed (its whole
process group, as an OOM killer or a lost CI runner would) once half its trials are stored,
then resumed with ``--resume``. Afterwards every non-faulty trial must be stored ``ok`` and
every faulty one with the status its fault causes, once each. Prints a table per fault kind
and exits 1 on any mismatch.

    python benchmarks/soak.py [--trials 200] [--fault-rate 0.2] [--seed 0] [--keep DIR]

Real quantization, real OpenVINO, on the tiny test CNN with a very short measurement
protocol; on a busy 2-core machine it takes 15 to 30 minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import psutil

KINDS = ("segfault", "hang", "oom", "raise", "exit")
PHASES = ("quantize", "compile", "measure")
# Every config here quantizes and compiles on OpenVINO for x86 (uint8 weights with int8
# activations are left out: onnxruntime's quantizer rejects that pair; fp16 needs AVX512-FP16).
SPACE = """description = "soak: fp32, bf16 and every int8-weight scheme this suite knows"
[float]
dtypes = ["bf16"]
[integer]
weight_dtypes = ["int8"]
activation_dtypes = ["uint8", "int8", "int16"]
weight_schemes = ["symmetric", "asymmetric"]
activation_schemes = ["asymmetric", "symmetric"]
granularities = ["per_channel", "per_tensor"]
calibrations = ["minmax", "percentile", "entropy"]
"""


@dataclass(frozen=True)
class Fault:
    kind: str
    phase: str

    @property
    def status(self) -> str:
        """The trial status this fault must end in (see autotune.worker)."""
        if self.kind in ("hang", "oom"):
            return {"hang": "timeout", "oom": "oom"}[self.kind]
        return "runtime_error" if self.phase == "measure" else "compile_error"

    @property
    def evidence(self) -> str:
        """Text the stored error must contain, so a real failure is not taken for this one."""
        return {"segfault": f"SIGSEGV during {self.phase}",
                "raise": f"injected failure in {self.phase}",
                "exit": f"exited with code 3 and no result during {self.phase}",
                "hang": f"(in {self.phase})", "oom": f"(in {self.phase})"}[self.kind]


@dataclass
class Plan:
    """One ``autotune run``: how many trials, and which config ids get which fault."""

    trials: int
    faults: dict[str, Fault]
    interrupt: bool

    def env_spec(self) -> str:
        by_fault: dict[Fault, list[str]] = defaultdict(list)
        for config_id, fault in sorted(self.faults.items()):
            by_fault[fault].append(config_id)
        return ";".join(f"{fault.kind}@{fault.phase}:{','.join(ids)}"
                        for fault, ids in by_fault.items())


def plan_runs(config_ids: list[str], trials: int, fault_rate: float, seed: int) -> list[Plan]:
    """Split ``trials`` into runs of the space's size and pick the faulty trials (seeded)."""
    rng = random.Random(seed)
    plans = []
    left = trials
    while left > 0:
        count = min(left, len(config_ids))
        ids = config_ids[:count]
        faulty = rng.sample(ids, round(count * fault_rate))
        faults = {config_id: Fault(rng.choice(KINDS), rng.choice(PHASES)) for config_id in faulty}
        plans.append(Plan(count, faults, interrupt=not plans))
        left -= count
    return plans


def autotune_run(workdir: Path, args: list[str], fault_spec: str) -> subprocess.Popen:
    env = {**os.environ, "AUTOTUNE_INJECT_FAULT": fault_spec}
    return subprocess.Popen([sys.executable, "-m", "autotune", "run", *args], cwd=workdir,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def execute(plan: Plan, workdir: Path, common: list[str]) -> tuple[str, str]:
    """Run one plan to the end (killing and resuming it once if asked); returns (run id, log)."""
    from autotune.store import Store

    store = Store(f"sqlite:///{workdir}/results/autotune.db")
    run = autotune_run(workdir, [*common, "--budget", str(plan.trials)], plan.env_spec())
    run_id = run.stdout.readline().split()[1]
    log = f"run {run_id}: {plan.trials} trials, {len(plan.faults)} faulty"
    if plan.interrupt:
        while run.poll() is None and len(store.trials(run_id)) < plan.trials // 2:
            time.sleep(0.5)
        if run.poll() is None:
            workers = psutil.Process(run.pid).children()
            os.killpg(run.pid, signal.SIGKILL)
            log += f"; SIGKILLed after {len(store.trials(run_id))} stored trials"
            _, alive = psutil.wait_procs(workers, timeout=10)
            log += f" ({len(workers)} worker(s) in flight, {len(alive)} outlived the run)"
            if alive:
                log += " MISMATCH"
        run.communicate()
        store_args = ["--store", f"sqlite:///{workdir}/results/autotune.db", "--report-dir",
                      str(workdir / "reports"), "--no-progress"]
        run = autotune_run(workdir, ["--resume", run_id, *store_args], plan.env_spec())
        log += "; resumed"
    _, err = run.communicate()
    if run.returncode != 0:
        log += f"; exit code {run.returncode}: {err.strip().splitlines()[-1:]} MISMATCH"
    return run_id, log


def check(plan: Plan, run_id: str, workdir: Path, config_ids: list[str]) -> list[dict]:
    """One row per planned trial: its fault (or none), what was stored, and whether it fits."""
    from autotune.store import Store

    store = Store(f"sqlite:///{workdir}/results/autotune.db")
    stored = defaultdict(list)
    for trial in store.trials(run_id):
        stored[trial.config.id].append(trial)
    rows = []
    for config_id in config_ids[:plan.trials]:
        fault = plan.faults.get(config_id)
        trials = stored.pop(config_id, [])
        status = trials[0].status if len(trials) == 1 else f"{len(trials)} stored"
        if fault is None:
            fits = status == "ok"
        else:
            fits = status == fault.status and fault.evidence in trials[0].error
        rows.append({"kind": fault.kind if fault else "none", "status": status, "fits": fits,
                     "config": config_id, "error": trials[0].error[:200] if trials else ""})
    for config_id, extra in stored.items():  # trials nobody planned: a duplicate or a stray
        rows.append({"kind": "unplanned", "status": extra[0].status, "fits": False,
                     "config": config_id, "error": ""})
    if store.get_run(run_id).status != "finished":
        rows.append({"kind": "run status", "status": store.get_run(run_id).status,
                     "fits": False, "config": run_id, "error": ""})
    return rows


def print_table(rows: list[dict]) -> int:
    """The table per fault kind; returns the number of mismatches."""
    print(f"{'fault kind':<12} {'count':>5}  {'statuses stored':<44} {'mismatches':>10}")
    print(f"{'-' * 12} {'-' * 5}  {'-' * 44} {'-' * 10}")
    kinds = [*KINDS, "none", "unplanned", "run status"]
    for kind in kinds:
        group = [row for row in rows if row["kind"] == kind]
        if not group and kind in ("unplanned", "run status"):
            continue
        statuses = Counter(row["status"] for row in group)
        text = ", ".join(f"{status} {count}" for status, count in statuses.most_common()) or "-"
        print(f"{kind:<12} {len(group):>5}  {text:<44} {sum(not r['fits'] for r in group):>10}")
    mismatches = [row for row in rows if not row["fits"]]
    print(f"{'total':<12} {len(rows):>5}  {'':<44} {len(mismatches):>10}")
    for row in mismatches:
        print(f"MISMATCH {row['kind']} {row['config']}: stored {row['status']} {row['error']}")
    return len(mismatches)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trial-timeout", type=float, default=30.0,
                        help="seconds; each hang costs this much (default: 30)")
    parser.add_argument("--trial-memory", type=int, default=1024, help="MiB (default: 1024)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    from autotune.space import load_space
    from autotune.testing.models import tiny_cnn

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autotune-soak-") as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        model = tiny_cnn(workdir / "tiny.onnx")
        (workdir / "soak.toml").write_text(SPACE)
        config_ids = [config.id for config in load_space(str(workdir / "soak.toml")).configs]
        plans = plan_runs(config_ids, args.trials, args.fault_rate, args.seed)
        common = ["--model", str(model), "--space", str(workdir / "soak.toml"), "--backend",
                  "openvino", "--store", f"sqlite:///{workdir}/results/autotune.db",
                  "--report-dir", str(workdir / "reports"), "--min-repeats", "3", "--min-time",
                  "0.01", "--max-spread", "0", "--trial-timeout", str(args.trial_timeout),
                  "--trial-memory", str(args.trial_memory), "--no-progress"]
        rows, logs = [], []
        for plan in plans:
            run_id, log = execute(plan, workdir, common)
            print(log, flush=True)
            logs.append(log)
            rows += check(plan, run_id, workdir, config_ids)
    print(f"\nsoak: {args.trials} trials, {sum(len(p.faults) for p in plans)} with injected "
          f"faults (seed {args.seed}), {len(plans)} run(s), the first SIGKILLed and resumed\n")
    mismatches = print_table(rows) + sum("MISMATCH" in log for log in logs)
    print(f"\ntook {time.monotonic() - began:.0f} s")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())

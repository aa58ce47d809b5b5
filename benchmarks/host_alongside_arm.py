"""host-cpu latencies measured alone vs alongside the emulated ARM board (the host lock at work).

A run over host-cpu and arm-cortex-a76 measures both targets at once (autotune.scheduling):
the board's cross-compiles run here, and so does its timing when the board is the emulated one
(`scripts/arm-emulator up`: an aarch64 worker under qemu on this machine's cores). The host
lock (autotune.hostlock) keeps all of that off host-cpu's timed runs. This benchmark runs
host-cpu alone and host-cpu with the board, alternately (alone, together, alone, ...), and
prints each config's host-cpu median per run side by side: the ratio of the two groups'
medians, and whether it is within the runs' own run-to-run spread (the largest max/min of the
run medians within either group). It also shows how long host-cpu's workers waited for the
lock and whether the two targets' trials overlapped in time (else there was nothing to keep
apart).

    scripts/arm-emulator up
    python benchmarks/host_alongside_arm.py [--runs 3] [--backend tvm] [--model NAME-or-PATH]

The default model is the tests' tiny CNN (2 convolutions on 1x3x16x16): untuned TVM runs
digits-cnn's 500 evaluation images ~100x slower than tuned, minutes per trial on 2 cores.

Writes benchmarks/results/host_alongside_arm-DATE.json (date, host, versions, the table).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

from autotune.backends import get_backend
from autotune.config import FP32, QuantConfig
from autotune.driver import RunSettings, execute_run, start_run
from autotune.host import autotune_commit, host_info
from autotune.runtimes import package_versions
from autotune.search import ExhaustiveSearch
from autotune.space import SearchSpace
from autotune.store import Store
from autotune.target import load_target
from autotune.testing.models import tiny_cnn
from autotune.zoo import resolve_model

INT8 = "w:int8:sym:per_channel a:uint8:asym cal:minmax"
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="zoo name or ONNX file (default: the tests' tiny CNN)")
    parser.add_argument("--backend", default="tvm")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind (default: 3)")
    parser.add_argument("--passes", type=int, default=3,
                        help="measurement passes per trial, as `autotune run` (default: 3)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    host, board = load_target("host-cpu"), load_target("arm-cortex-a76")
    reachable = get_backend(args.backend).available(board)
    if not reachable.ok:
        print(f"arm-cortex-a76 is not reachable: {reachable.reason} (run "
              f"scripts/arm-emulator up)", file=sys.stderr)
        return 2
    configs = (FP32, QuantConfig.from_text(INT8))
    space = SearchSpace("host-alongside-arm", "", configs)
    kinds = {"alone": [host], "alongside": [host, board]}
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        model = resolve_model(args.model or str(tiny_cnn(Path(scratch) / "tiny-cnn.onnx")))
        args.model = model.name
        # One store and one cache for every run: quantized models are made once.
        settings = RunSettings(backends=(args.backend,), workspace=Path(scratch),
                               progress=False, passes=args.passes)
        store = Store(f"sqlite:///{scratch}/bench.db")
        for number, (kind, targets) in enumerate(list(kinds.items()) * args.runs):
            run_id = start_run(store, model, space, targets, settings, ExhaustiveSearch())
            outcome = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch())
            for trial in outcome.trials:
                if not trial.ok:
                    print(f"run {number + 1} ({kind}): {trial.config.label} on {trial.target}: "
                          f"{trial.status}: {trial.error}", file=sys.stderr)
            if not all(trial.ok for trial in outcome.trials):
                return 1
            runs.append(_run_record(kind, outcome.trials))
            print(f"run {number + 1}/{len(kinds) * args.runs} ({kind}) done", file=sys.stderr)
    table = _compare(runs, [config.label for config in configs])
    _print(table, runs, args)
    date = datetime.date.today().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"host_alongside_arm-{date}.json"
    board_trial = next(t for r in runs for t in r["trials"] if t["target"] == board.name)
    path.write_text(json.dumps({
        "benchmark": "host_alongside_arm", "schema": 1, "date": date, "host": host_info(),
        "commit": autotune_commit(), "versions": package_versions(),
        "board": board_trial["device"], "model": args.model, "backend": args.backend,
        "runs_per_kind": args.runs, "passes": args.passes, "table": table, "runs": runs}, indent=1))
    print(f"wrote {path}")
    return 0


def _run_record(kind: str, trials) -> dict:
    return {"kind": kind, "trials": [{
        "target": t.target, "config": t.config.label, "latency_ms": t.latency_ms,
        "median_ms": t.latency_median_ms, "spread": t.latency_spread,
        "passes": [{"median_ms": p.median_ms, "contended": p.contended,
                    "remeasured": p.remeasured,
                    "other_share": p.machine and p.machine.other_share,
                    "canary_ratio": p.machine and p.machine.canary_ratio} for p in t.passes],
        "samples": len(t.latencies_ms),
        "started_at": t.started_at, "finished_at": t.finished_at,
        "host_lock_wait_s": t.details.get("host_lock_wait_s"), "core_set": list(t.core_set),
        "emulated": t.emulated, "first_inference_ms": t.first_inference_ms,
        "first_inference_warm": t.first_inference_warm,
        "device": None if t.device is None else t.device.to_json()} for t in trials]}


def _compare(runs: list[dict], labels: list[str]) -> list[dict]:
    """Per config: host-cpu's run latencies of each kind (``Trial.latency_ms``, the fastest
    pass's median, which the suite ranks and compares by), their ratio and the noise band."""
    table = []
    for label in labels:
        medians = {kind: [t["latency_ms"] for r in runs if r["kind"] == kind
                          for t in r["trials"] if t["target"] == "host-cpu"
                          and t["config"] == label] for kind in ("alone", "alongside")}
        alone, alongside = (statistics.median(medians[k]) for k in ("alone", "alongside"))
        # Run-to-run noise: the widest max/min of run medians within either group.
        noise = max(max(values) / min(values) - 1 for values in medians.values())
        ratio = alongside / alone
        waits = [t["host_lock_wait_s"] or 0.0 for r in runs if r["kind"] == "alongside"
                 for t in r["trials"] if t["target"] == "host-cpu" and t["config"] == label]
        others = [max((p["other_share"] or 0.0 for p in t["passes"]), default=0.0)
                  for r in runs if r["kind"] == "alongside" for t in r["trials"]
                  if t["target"] == "host-cpu" and t["config"] == label]
        table.append({"config": label, "alone_ms": medians["alone"],
                      "alongside_ms": medians["alongside"], "ratio": ratio, "noise": noise,
                      "within_noise": abs(math.log(ratio)) <= math.log1p(noise),
                      "alongside_lock_wait_s": waits, "alongside_other_share": others})
    return table


def _overlapped(run: dict) -> bool:
    """Whether a board trial and a host-cpu trial of ``run`` ran at the same time."""
    host = [t for t in run["trials"] if t["target"] == "host-cpu"]
    board = [t for t in run["trials"] if t["target"] != "host-cpu"]
    return any(b["started_at"] < h["finished_at"] and h["started_at"] < b["finished_at"]
               for b in board for h in host)


def _print(table: list[dict], runs: list[dict], args) -> None:
    print(f"model {args.model}, backend {args.backend}, host-cpu latency (ms, the fastest pass's "
          f"median) per run; "
          f"{args.runs} runs alone, {args.runs} alongside the emulated arm-cortex-a76")
    print(f"{'config':36} {'alone':>24} {'alongside':>24} {'ratio':>7} {'noise':>7}  within")
    for row in table:
        alone = " ".join(f"{v:.3f}" for v in row["alone_ms"])
        alongside = " ".join(f"{v:.3f}" for v in row["alongside_ms"])
        print(f"{row['config']:36} {alone:>24} {alongside:>24} {row['ratio']:7.3f} "
              f"{row['noise']:7.1%}  {'yes' if row['within_noise'] else 'NO'}")
        waits = ", ".join(f"{w:.1f}" for w in row["alongside_lock_wait_s"])
        print(f"{'':36} host-cpu waited for the host lock (s, alongside runs): {waits}")
        others = ", ".join(f"{share:.1%}" for share in row["alongside_other_share"])
        print(f"{'':36} other processes' share of host-cpu's vCPU in its timed windows "
              f"(largest pass, alongside runs): {others}")
    together = [r for r in runs if r["kind"] == "alongside"]
    print(f"alongside runs where a board trial overlapped a host-cpu trial: "
          f"{sum(map(_overlapped, together))}/{len(together)}")


if __name__ == "__main__":
    sys.exit(main())

"""Power and false positives of paired interleaved re-measurement, against today's rule.

On this machine, with real OpenVINO on a small model (digits-cnn by default): each config is
compiled once; then N A/A comparisons (the same artifact on both sides, each side in its own
worker) and N A/B comparisons whose candidate side runs with ``AUTOTUNE_INJECT_SLOWDOWN``
(busy-waiting 10% of each timed inference inside the timed region: the real artifact runs
10% slower) are measured with ``autotune.paired.measure_paired``, cycling through the
configs. Every A/A verdict is a false positive; every A/B "slower" is a slowdown found.
Today's rule (``regress.compare_trials``: fastest pass, run-to-run noise from the passes)
judges the very same samples, each side's rounds taken as its trial's passes.

Target: at most 1% false positives on A/A, at least 90% of the 10% slowdowns found.

    python benchmarks/paired_power.py [--comparisons 24] [--rounds 32] [--slowdown 0.10]

Writes benchmarks/results/paired_power-DATE.json (date, host, versions, the table).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from autotune.cli.common import print_table
from autotune.config import FP32, QuantConfig
from autotune.host import host_info
from autotune.paired import (
    DEFAULT_ROUNDS,
    ROUND_PROTOCOL,
    PairedSide,
    compile_side,
    measure_paired,
    rounds_as_passes_rule,
)
from autotune.runtimes import package_versions
from autotune.target import load_target
from autotune.worker import SLOWDOWN_ENV, Job
from autotune.zoo import resolve_model

CONFIGS = (FP32.text, "w:int8:sym:per_channel a:uint8:asym cal:minmax",
           "w:int8:sym:per_tensor a:int8:sym cal:minmax")
MAX_FALSE_POSITIVES = 0.01
MIN_POWER = 0.90


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=24,
                        help="A/A comparisons, and as many A/B ones (default: 24)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"round pairs per comparison (default: {DEFAULT_ROUNDS})")
    parser.add_argument("--slowdown", type=float, default=0.10,
                        help="slowdown injected on the A/B candidate (default: 0.10)")
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--config", action="append", default=None,
                        help="config text (repeatable; default: fp32 and two int8)")
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    configs = [QuantConfig.from_text(text) for text in (args.config or CONFIGS)]
    model = resolve_model(args.model)
    target = load_target("host-cpu")
    began = time.monotonic()
    records = []
    with tempfile.TemporaryDirectory(prefix="autotune-paired-power-") as scratch:
        folder = Path(scratch)
        model.dataset.save(folder / "dataset.npz")
        sides = {}
        for config in configs:
            job = Job(model_path=str(model.path), config=config.to_dict(), backend="openvino",
                      target_path=str(target.path), dataset_path=str(folder / "dataset.npz"),
                      cache_dir=str(folder / "cache"), protocol={})
            sides[config.label] = compile_side(PairedSide(job), folder / config.id)
            print(f"compiled {config.label}", file=sys.stderr)
        labels = list(sides)
        for index in range(2 * args.comparisons):
            kind = "A/A" if index % 2 == 0 else "A/B"
            label = labels[(index // 2) % len(labels)]
            base = sides[label]
            cand = base if kind == "A/A" else replace(base, env={SLOWDOWN_ENV:
                                                                 str(args.slowdown)})
            result = measure_paired(base, cand, rounds=args.rounds, seed=index,
                                    threshold=args.threshold, alpha=args.alpha)
            if not result.ok:
                raise SystemExit(f"{kind} {label}: {result.error}")
            today = rounds_as_passes_rule(result.baseline_rounds_ms, result.candidate_rounds_ms,
                                          args.threshold, args.alpha)
            test = result.test
            records.append({"kind": kind, "config": label, "paired": test.verdict,
                            "today": today, "ratio": test.ratio, "ci_low": test.ci_low,
                            "ci_high": test.ci_high, "p_value": test.p_value,
                            "wall_s": result.wall_s,
                            "baseline_medians_ms": test.baseline_medians_ms,
                            "candidate_medians_ms": test.candidate_medians_ms})
            print(f"{index + 1}/{2 * args.comparisons} {kind} {label}: ratio "
                  f"{test.ratio:.3f} [{test.ci_low:.3f}, {test.ci_high:.3f}] p={test.p_value:.2g}"
                  f" paired={test.verdict} today={today} ({result.wall_s:.1f} s)",
                  file=sys.stderr)
    table = _table(records, labels)
    headers = ["config", "rule", "A/A", "false positives", "A/B", "found"]
    print(f"\npaired vs today's rule: {args.model}, OpenVINO on host-cpu, {args.rounds} round "
          f"pairs of {ROUND_PROTOCOL.min_time_s:g} s+ per side, A/B candidate +"
          f"{args.slowdown:.0%} injected, threshold {args.threshold:.0%}, alpha "
          f"{args.alpha:g}\n")
    print_table(headers, [[row[h] for h in headers] for row in table])
    total = {rule: next(row for row in table if row["config"] == "all" and row["rule"] == rule)
             for rule in ("paired", "today")}
    met = (total["paired"]["fp_rate"] <= MAX_FALSE_POSITIVES
           and total["paired"]["power"] >= MIN_POWER)
    print(f"\ntarget (false positives <= {MAX_FALSE_POSITIVES:.0%}, found >= {MIN_POWER:.0%}) "
          f"for the paired rule: {'met' if met else 'NOT met'}; "
          f"{time.monotonic() - began:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    date = datetime.date.today().isoformat()
    host = host_info()
    path = out / f"paired_power-{date}.json"
    path.write_text(json.dumps({
        "benchmark": "paired_power", "schema": 1, "date": date,
        "host": {"cpu_model": host["cpu_model"], "cores": host["cores"],
                 "machine": host["machine"], "system": host["system"]},
        "versions": package_versions(),
        "settings": {"model": args.model, "configs": labels, "rounds": args.rounds,
                     "comparisons": args.comparisons, "slowdown": args.slowdown,
                     "threshold": args.threshold, "alpha": args.alpha,
                     "round_protocol": ROUND_PROTOCOL.to_dict()},
        "table": table, "target_met": met, "comparisons": records}, indent=1))
    print(f"wrote {path}")
    return 0 if met else 1


def _table(records: list[dict], labels: list[str]) -> list[dict]:
    rows = []
    for label in [*labels, "all"]:
        chosen = [r for r in records if label in ("all", r["config"])]
        same = [r for r in chosen if r["kind"] == "A/A"]
        slowed = [r for r in chosen if r["kind"] == "A/B"]
        for rule in ("paired", "today"):
            flagged = sum(r[rule] is not None for r in same)
            found = sum(r[rule] == "slower" for r in slowed)
            fp_rate = flagged / max(len(same), 1)
            power = found / max(len(slowed), 1)
            rows.append({"config": label, "rule": rule, "A/A": len(same),
                         "false positives": f"{flagged} ({fp_rate:.0%})",
                         "A/B": len(slowed),
                         "found": f"{found} ({power:.0%})", "fp_rate": fp_rate, "power": power,
                         "flagged": flagged, "found_count": found})
    return rows


if __name__ == "__main__":
    sys.exit(main())

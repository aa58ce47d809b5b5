"""False positives and power of regression detection on this machine: paired interleaved
re-measurement against the samples rule, on the same measurements.

With real OpenVINO on a small model (digits-cnn by default), each config is compiled twice,
in two separate workers (the baseline and an independent rebuild, as two nightly runs would
build it). Then:

- A/A comparisons: the baseline against the rebuild. Nothing changed: every verdict is a
  false positive.
- A/B comparisons: the baseline against itself run with ``AUTOTUNE_INJECT_SLOWDOWN`` (the
  worker busy-waits 10% of each timed inference inside the timed region: the real artifact
  runs 10% slower, as a slower runtime would). Every "slower" is a slowdown found.

Each comparison is measured by ``autotune.paired.measure_paired`` (one long-lived worker per
side, short rounds in a seeded ABBA order), cycling through the configs and interleaving A/A
and A/B so both see the same spells of the machine. Two rules judge the very same samples:

- paired: the Wilcoxon signed-rank test on the round pairs' log ratios (``compare --paired``);
- samples rule: ``regress.compare_trials`` as ``compare`` without ``--paired`` judges (the
  fastest pass, run-to-run noise from the passes), each side's rounds taken as its passes.

Target: at most 1% false positives on A/A, at least 90% of the 10% slowdowns found. The
result file is rewritten after every comparison (nothing is lost on a crash).

    python benchmarks/false_positives.py [--aa 100] [--ab 40] [--rounds 32] [--slowdown 0.10]

Writes benchmarks/results/false_positives-DATE.json (date, host, versions, every comparison).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
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
RULES = ("paired", "samples rule")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=100, help="A/A comparisons (default: 100)")
    parser.add_argument("--ab", type=int, default=40,
                        help="A/B comparisons with the injected slowdown (default: 40)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"round pairs per comparison (default: {DEFAULT_ROUNDS})")
    parser.add_argument("--slowdown", type=float, default=0.10,
                        help="slowdown injected on the A/B candidate (default: 0.10)")
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--target", default="host-cpu", help="target name or TOML file")
    parser.add_argument("--config", action="append", default=None,
                        help="config text (repeatable; default: fp32 and two int8)")
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    configs = [QuantConfig.from_text(text) for text in (args.config or CONFIGS)]
    model = resolve_model(args.model)
    target = load_target(args.target)
    date = datetime.date.today().isoformat()
    path = Path(args.out) / f"false_positives-{date}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="autotune-false-positives-") as scratch:
        folder = Path(scratch)
        model.dataset.save(folder / "dataset.npz")
        builds: dict[str, tuple[PairedSide, PairedSide]] = {}
        for config in configs:
            job = Job(model_path=str(model.path), config=config.to_dict(), backend="openvino",
                      target_path=str(target.path), dataset_path=str(folder / "dataset.npz"),
                      cache_dir=str(folder / "cache"), protocol={})
            builds[config.label] = (compile_side(PairedSide(job), folder / f"{config.id}-a"),
                                    compile_side(PairedSide(job), folder / f"{config.id}-b"))
            print(f"compiled {config.label} twice", file=sys.stderr)
        labels = list(builds)
        schedule = _schedule(args.aa, args.ab)
        for index, kind in enumerate(schedule):
            label = labels[sum(k == kind for k in schedule[:index]) % len(labels)]
            base, rebuild = builds[label]
            cand = rebuild if kind == "A/A" else replace(
                base, env={SLOWDOWN_ENV: str(args.slowdown)})
            result = measure_paired(base, cand, rounds=args.rounds, seed=index,
                                    threshold=args.threshold, alpha=args.alpha)
            if not result.ok:
                raise SystemExit(f"{kind} {label}: {result.error}")
            samples_rule = rounds_as_passes_rule(result.baseline_rounds_ms,
                                                 result.candidate_rounds_ms,
                                                 args.threshold, args.alpha)
            test = result.test
            records.append({"kind": kind, "config": label, "paired": test.verdict,
                            "samples rule": samples_rule, "ratio": test.ratio,
                            "ci_low": test.ci_low, "ci_high": test.ci_high,
                            "p_value": test.p_value, "wall_s": result.wall_s,
                            "baseline_medians_ms": test.baseline_medians_ms,
                            "candidate_medians_ms": test.candidate_medians_ms})
            print(f"{index + 1}/{len(schedule)} {kind} {label}: ratio {test.ratio:.3f} "
                  f"[{test.ci_low:.3f}, {test.ci_high:.3f}] p={test.p_value:.2g} "
                  f"paired={test.verdict} samples-rule={samples_rule} ({result.wall_s:.1f} s)",
                  file=sys.stderr)
            _write(path, args, labels, date, records, len(schedule),
                   time.monotonic() - began)
    table = _table(records, labels)
    headers = ["config", "rule", "A/A", "false positives", "A/B", "found"]
    print(f"\n{args.model}, OpenVINO on {target.name} ({target.threads} cores), "
          f"{args.rounds} round pairs of "
          f"{ROUND_PROTOCOL.min_time_s:g} s+ per side; A/B candidate +{args.slowdown:.0%} "
          f"injected into the real artifact; threshold {args.threshold:.0%}, alpha "
          f"{args.alpha:g}\n")
    print_table(headers, [[row[h] for h in headers] for row in table])
    met = _target_met(table)
    aa = sum(r["kind"] == "A/A" for r in records)
    flagged = next(r["flagged"] for r in table if r["config"] == "all" and r["rule"] == "paired")
    print(f"\npaired rule: false positives {flagged} of {aa} (95% upper bound "
          f"{_upper_bound(flagged, aa):.1%}); target (false positives <= "
          f"{MAX_FALSE_POSITIVES:.0%}, found >= {MIN_POWER:.0%}): {'met' if met else 'NOT met'}"
          f"; {time.monotonic() - began:.0f} s")
    print(f"wrote {path}")
    return 0 if met else 1


def _schedule(aa: int, ab: int) -> list[str]:
    """A/A and A/B comparisons spread evenly through the run (Bresenham), so both kinds
    meet the same spells of the machine."""
    total = aa + ab
    return ["A/B" if math.floor((i + 1) * ab / total) > math.floor(i * ab / total) else "A/A"
            for i in range(total)]


def _table(records: list[dict], labels: list[str]) -> list[dict]:
    rows = []
    for label in [*labels, "all"]:
        chosen = [r for r in records if label in ("all", r["config"])]
        same = [r for r in chosen if r["kind"] == "A/A"]
        slowed = [r for r in chosen if r["kind"] == "A/B"]
        for rule in RULES:
            flagged = sum(r[rule] is not None for r in same)
            found = sum(r[rule] == "slower" for r in slowed)
            fp_rate = flagged / max(len(same), 1)
            power = found / max(len(slowed), 1)
            rows.append({"config": label, "rule": rule, "A/A": len(same),
                         "false positives": f"{flagged} ({fp_rate:.1%})", "A/B": len(slowed),
                         "found": f"{found} ({power:.0%})", "fp_rate": fp_rate,
                         "power": power, "flagged": flagged, "found_count": found})
    return rows


def _target_met(table: list[dict]) -> bool:
    paired = next(r for r in table if r["config"] == "all" and r["rule"] == "paired")
    return paired["fp_rate"] <= MAX_FALSE_POSITIVES and paired["power"] >= MIN_POWER


def _upper_bound(events: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen ``events`` times in ``trials``."""
    from scipy.stats import beta

    if trials == 0:
        return 1.0
    return 1.0 if events >= trials else float(beta.ppf(confidence, events + 1, trials - events))


def _write(path: Path, args, labels: list[str], date: str, records: list[dict],
           planned: int, wall_s: float) -> None:
    host = host_info()
    table = _table(records, labels)
    path.write_text(json.dumps({
        "benchmark": "false_positives", "schema": 2, "date": date,
        "host": {"cpu_model": host["cpu_model"], "cores": host["cores"],
                 "machine": host["machine"], "system": host["system"]},
        "versions": package_versions(),
        "settings": {"model": args.model, "target": args.target, "configs": labels,
                     "rounds": args.rounds,
                     "aa": args.aa, "ab": args.ab, "slowdown": args.slowdown,
                     "threshold": args.threshold, "alpha": args.alpha,
                     "round_protocol": ROUND_PROTOCOL.to_dict()},
        "complete": len(records) == planned, "wall_s": round(wall_s, 1),
        "table": table, "target_met": _target_met(table), "comparisons": records}, indent=1))


if __name__ == "__main__":
    sys.exit(main())

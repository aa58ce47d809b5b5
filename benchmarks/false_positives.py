"""A/A false positives of ``autotune compare``: how often it cries regression when nothing
changed.

Two measurements, both on real latency samples:

1. Two real runs of the same space on the same runtime versions, compared trial by trial as
   ``autotune compare`` does. Without ``--store`` the two runs are made here: the smoke
   space (fp32 and one int8 config) on a tiny CNN with OpenVINO on this CPU, through the
   driver, each trial in its own worker process.
2. Resampling: each trial's stored samples are split at random into two halves, many times,
   and each split is compared; any regression flagged is a false positive. The target is at
   most 1 in 100 at the default threshold. The rank test alone (no minimum effect) is shown
   too, and the first half of the samples against the second, which shows drift within a
   trial.

    python benchmarks/false_positives.py [--store URL [--runs BASELINE CANDIDATE]]
                                         [--comparisons 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

from autotune.cli.common import print_table
from autotune.regress import Thresholds, compare_pair, compare_trials
from autotune.store import Run, Store
from autotune.trial import Trial

TARGET_RATE = 0.01


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, metavar="URL",
                        help="take two stored runs instead of measuring two here")
    parser.add_argument("--runs", nargs=2, default=None, metavar=("BASELINE", "CANDIDATE"),
                        help="the two runs (default: the latest two of one model, space and "
                             "versions)")
    parser.add_argument("--comparisons", type=int, default=1000,
                        help="random half splits per trial (default: 1000)")
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="timed seconds per trial in runs made here (default: 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    thresholds = Thresholds()
    with tempfile.TemporaryDirectory(prefix="autotune-aa-") as scratch:
        if args.store:
            store = Store(args.store)
            baseline, candidate = _stored_pair(store, args.runs)
        else:
            store = Store(f"sqlite:///{scratch}/aa.db")
            baseline, candidate = _measure_pair(store, Path(scratch), args.min_time)
        base_trials = [t for t in store.trials(baseline.id) if t.ok]
        cand_trials = [t for t in store.trials(candidate.id) if t.ok]
    print(f"A/A: {baseline.id} vs {candidate.id}, model {baseline.model}, versions "
          + ", ".join(f"{k} {v}" for k, v in sorted(baseline.versions.items())))
    print(f"thresholds: latency {thresholds.latency:.0%}, alpha {thresholds.alpha:g}\n")
    aa_flagged, aa_total = _print_aa(base_trials, cand_trials, thresholds)
    print()
    worst = _print_resampling(base_trials + cand_trials, args.comparisons, args.seed,
                              thresholds)
    verdict = "met" if worst <= TARGET_RATE else "NOT met"
    print(f"\nresampling: highest false-positive rate {worst:.2%}; target at most "
          f"{TARGET_RATE:.0%}: {verdict}")
    print(f"two runs: {aa_flagged} of {aa_total} trials flagged slower or faster"
          + (" (the runs differ by more than the samples within one run do: machine load "
             "or frequency changed between them, which no test on one run's samples can "
             "tell from a regression)" if aa_flagged else ""))
    return 0 if worst <= TARGET_RATE and not aa_flagged else 1


def _stored_pair(store: Store, run_ids: list[str] | None) -> tuple[Run, Run]:
    if run_ids:
        return store.get_run(run_ids[0]), store.get_run(run_ids[1])
    runs = list(reversed(store.runs()))
    for index, newer in enumerate(runs):
        for older in runs[index + 1:]:
            if _same_setup(older, newer):
                return older, newer
    raise SystemExit("no two runs of one model, space and runtime versions in the store")


def _same_setup(first: Run, second: Run) -> bool:
    def packages(run: Run) -> dict:
        return {k: v for k, v in run.versions.items() if k != "autotune"}

    return (first.model_hash == second.model_hash and first.space == second.space
            and packages(first) == packages(second))


def _measure_pair(store: Store, workspace: Path, min_time_s: float) -> tuple[Run, Run]:
    """Two real runs of the smoke space on the tiny CNN, one after the other."""
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.measure import MeasurementProtocol
    from autotune.search import ExhaustiveSearch
    from autotune.space import load_space
    from autotune.target import load_target
    from autotune.testing.models import tiny_cnn
    from autotune.zoo import resolve_model

    model = resolve_model(str(tiny_cnn(workspace / "tiny.onnx")))
    space, targets = load_space("smoke"), [load_target("host-cpu")]
    settings = RunSettings(backends=("openvino",), workspace=workspace, progress=False,
                           protocol=MeasurementProtocol(min_time_s=min_time_s))
    runs = []
    for index in range(2):
        run_id = start_run(store, model, space, targets, settings, ExhaustiveSearch(), {})
        outcome = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch())
        failed = [t for t in outcome.trials if not t.ok]
        if failed:
            raise SystemExit(f"run {index + 1}: {failed[0].config.label} {failed[0].status}: "
                             f"{failed[0].error}")
        print(f"run {index + 1}/2 measured: {run_id}", file=sys.stderr)
        runs.append(store.get_run(run_id))
    return runs[0], runs[1]


def _print_aa(base_trials: list[Trial], cand_trials: list[Trial],
              thresholds: Thresholds) -> tuple[int, int]:
    """The two runs compared as ``autotune compare`` does; returns (flagged, compared)."""
    comparison = compare_trials(base_trials, cand_trials, thresholds)
    rows = []
    for pair in comparison.matched:
        test = pair.latency
        rows.append([pair.candidate.config.label, f"{test.baseline_count}/{test.candidate_count}",
                     f"{test.baseline_median_ms:.4f}", f"{test.candidate_median_ms:.4f}",
                     f"{test.change:+.2%}",
                     f"[{test.ci_low - 1:+.2%}, {test.ci_high - 1:+.2%}]", f"{test.p_value:.2g}",
                     ", ".join(f.kind for f in pair.findings) or "unchanged"])
    print("two runs, same versions (what `autotune compare` reports):")
    print_table(["config", "samples", "base ms", "cand ms", "change", "99% CI", "p",
                 "verdict"], rows)
    # Between two runs of one setup any latency verdict is false, faster as much as slower.
    flagged = sum(any(f.kind in ("slower", "faster") for f in pair.findings)
                  for pair in comparison.matched)
    return flagged, len(comparison.matched)


def _print_resampling(trials: list[Trial], comparisons: int, seed: int,
                      thresholds: Thresholds) -> float:
    """Random half splits of each trial's samples; returns the highest flagged rate."""
    rows, worst = [], 0.0
    for trial in trials:
        flagged, significant, changes = _split_many(trial, comparisons, seed, thresholds)
        half = len(trial.latencies_ms) // 2
        drift = compare_pair(_with(trial, trial.latencies_ms[:half]),
                             _with(trial, trial.latencies_ms[half:]), thresholds)
        worst = max(worst, flagged / comparisons)
        rows.append([trial.run_id, trial.config.label, len(trial.latencies_ms), comparisons,
                     flagged, f"{flagged / comparisons:.2%}",
                     f"{significant / comparisons:.2%}", f"{np.max(np.abs(changes)):.2%}",
                     f"{drift.latency.change:+.2%}",
                     ", ".join(f.kind for f in drift.findings) or "unchanged"])
    print(f"random half splits of one trial's samples ({comparisons} per trial):")
    print_table(["run", "config", "samples", "splits", "flagged", "FP rate",
                 "rank test alone", "largest |change|", "1st vs 2nd half", "verdict"], rows)
    return worst


def _split_many(trial: Trial, comparisons: int, seed: int,
                thresholds: Thresholds) -> tuple[int, int, np.ndarray]:
    samples = np.asarray(trial.latencies_ms)
    rng = np.random.default_rng(seed)
    flagged = significant = 0
    changes = np.empty(comparisons)
    for index in range(comparisons):
        order = rng.permutation(samples.size)
        half = samples.size // 2
        pair = compare_pair(_with(trial, samples[order[:half]].tolist()),
                            _with(trial, samples[order[half:]].tolist()), thresholds)
        flagged += pair.regressed
        significant += pair.latency.p_value < thresholds.alpha
        changes[index] = pair.latency.change
    return flagged, significant, changes


def _with(trial: Trial, latencies_ms: list[float]) -> Trial:
    return dataclasses.replace(trial, latencies_ms=latencies_ms)


if __name__ == "__main__":
    sys.exit(main())

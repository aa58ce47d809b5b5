"""A/A false positives of ``autotune compare``: how often it cries regression when nothing
changed, and how often it still finds a real 10% slowdown.

N real runs of one space on the same runtime versions (made here, one after the other, as a
nightly job would make them; or taken from ``--store``) are compared pair by pair, trial by
trial, exactly as ``autotune compare`` does. Every latency verdict between two runs of one
setup is false. The target is at most 1 flagged comparison in 100.

Two columns show why runs are measured in passes: "samples only" is the verdict of the tests
on the samples alone (what one measurement pass can know), "with run noise" adds the
run-to-run noise that the passes show. The "10% found" column scales the candidate's samples
by 1.10 and counts how many of those injected regressions the full test still finds: the
price of the noise, on this machine.

    python benchmarks/false_positives.py [--runs 6] [--space default] [--passes 3]
    python benchmarks/false_positives.py --save URL    # ... keeping the runs in that store
    python benchmarks/false_positives.py --store URL   # the store's runs of one setup
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

from autotune.cli.common import print_table
from autotune.regress import Thresholds, compare_pair, compare_trials
from autotune.store import Run, Store
from autotune.trial import Trial

TARGET_RATE = 0.01
INJECTED = 1.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--store", default=None, metavar="URL",
                        help="compare the stored runs of one setup instead of measuring here")
    source.add_argument("--save", default=None, metavar="URL",
                        help="measure into this store (kept) instead of a scratch one")
    parser.add_argument("--runs", type=int, default=6, help="runs to make (default: 6)")
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--space", default="default")
    parser.add_argument("--passes", type=int, default=3,
                        help="measurement passes per trial (default: 3, as `autotune run`)")
    args = parser.parse_args()
    thresholds = Thresholds()
    with tempfile.TemporaryDirectory(prefix="autotune-aa-") as scratch:
        if args.store:
            store = Store(args.store)
            runs = _one_setup(store)
        else:
            store = Store(args.save or f"sqlite:///{scratch}/aa.db")
            runs = _measure(store, Path(scratch), args)
        trials = {run.id: [t for t in store.trials(run.id) if t.ok] for run in runs}
    print(f"A/A: {len(runs)} runs of model {runs[0].model}, space {runs[0].space.splitlines()[0]}"
          f", versions " + ", ".join(f"{k} {v}" for k, v in sorted(runs[0].versions.items())
                                     if k != "autotune"))
    print(f"thresholds: latency {thresholds.latency:.0%}, alpha {thresholds.alpha:g}\n")
    rows, totals = [], [0, 0, 0, 0]
    for first, second in itertools.combinations(runs, 2):
        base, cand = trials[first.id], trials[second.id]
        compared, flagged, samples_only, found, floors = _pair(base, cand, thresholds)
        for index, value in enumerate((compared, flagged, samples_only, found)):
            totals[index] += value
        rows.append([first.id, second.id, compared, samples_only, flagged, f"{found}/{compared}",
                     f"{statistics.median(floors):.1%}" if floors else "-"])
    print_table(["baseline", "candidate", "trials", "samples only", "with run noise",
                 f"{INJECTED - 1:.0%} found", "median noise floor"], rows)
    compared, flagged, samples_only, found = totals
    rate = flagged / compared if compared else 0.0
    print(f"\nfalse positives: {flagged} of {compared} comparisons = {rate:.2%} "
          f"(samples only: {samples_only} = {samples_only / max(compared, 1):.2%}); target at "
          f"most {TARGET_RATE:.0%}: {'met' if rate <= TARGET_RATE else 'NOT met'}")
    print(f"injected {INJECTED - 1:.0%} slowdowns found: {found} of {compared} = "
          f"{found / max(compared, 1):.1%}")
    return 0 if rate <= TARGET_RATE else 1


def _pair(base: list[Trial], cand: list[Trial], thresholds: Thresholds):
    """(compared, flagged, flagged on samples only, injected slowdowns found, noise floors)."""
    comparison = compare_trials(base, cand, thresholds)
    slowed = [_slowed(trial) for trial in cand]
    injected = compare_trials(base, slowed, thresholds)
    flagged = samples_only = found = 0
    floors = []
    for pair, slow_pair in zip(comparison.matched, injected.matched, strict=True):
        flagged += _latency_verdict(pair)
        plain = compare_pair(pair.baseline, pair.candidate, thresholds)  # no run noise
        samples_only += _latency_verdict(plain)
        found += any(f.kind == "slower" for f in slow_pair.findings)
        if pair.latency.noise_floor is not None:
            floors.append(pair.latency.noise_floor)
    return len(comparison.matched), flagged, samples_only, found, floors


def _latency_verdict(pair) -> bool:
    return any(f.kind in ("slower", "faster") for f in pair.findings)


def _slowed(trial: Trial) -> Trial:
    passes = [{**entry, "median_ms": entry["median_ms"] * INJECTED} if "median_ms" in entry
              else entry for entry in trial.details.get("passes", [])]
    return dataclasses.replace(trial, latencies_ms=[v * INJECTED for v in trial.latencies_ms],
                               details={**trial.details, "passes": passes})


def _one_setup(store: Store) -> list[Run]:
    """The store's finished runs of the newest run's model, space and package versions."""
    def setup(run: Run) -> tuple:
        return (run.model_hash, run.space,
                sorted((k, v) for k, v in run.versions.items() if k != "autotune"))

    runs = [run for run in store.runs() if run.status == "finished"]
    if not runs:
        raise SystemExit("no finished run in the store")
    newest = max(runs, key=lambda run: run.created_at)
    same = sorted((run for run in runs if setup(run) == setup(newest)),
                  key=lambda run: run.created_at)
    if len(same) < 2:
        raise SystemExit("fewer than two runs of one model, space and versions in the store")
    return same


def _measure(store: Store, workspace: Path, args) -> list[Run]:
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.search import ExhaustiveSearch
    from autotune.space import load_space
    from autotune.target import load_target
    from autotune.zoo import resolve_model

    model = resolve_model(args.model)
    space, targets = load_space(args.space), [load_target("host-cpu")]
    settings = RunSettings(backends=("openvino",), workspace=workspace, progress=False,
                           passes=args.passes, max_spread=0.10)
    runs = []
    for index in range(args.runs):
        run_id = start_run(store, model, space, targets, settings, ExhaustiveSearch())
        outcome = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch())
        failed = [t for t in outcome.trials if not t.ok]
        if failed:
            raise SystemExit(f"run {index + 1}: {failed[0].config.label} {failed[0].status}: "
                             f"{failed[0].error}")
        print(f"run {index + 1}/{args.runs} measured: {run_id}", file=sys.stderr)
        runs.append(store.get_run(run_id))
    return runs


if __name__ == "__main__":
    sys.exit(main())

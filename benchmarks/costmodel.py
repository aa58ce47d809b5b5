"""How well the XGBoost cost model predicts trials it never saw, on a store of real trials.

Every finished run of the store is used (its model file must still exist): the trials
become (workload, trial) pairs with the graph of the run's model, the target's roofline
peaks (measured ones where stored) and the config. Two validations:

- random held-out splits (a quarter of the configs of every model out, repeated with
  several seeds); a config measured in more than one run is held out whole, so a second
  measurement of the same config never gives the answer away. With several models it is
  also scored per model, on that model's held-out configs alone: pooled ranks reward telling
  a large model from a small one, which is easy; picking a config is ranking within one;
- leave-one-model-out: train on the other models, predict every config of this one before
  any of it is measured; then with ``--shots`` (5) of its configs measured (seeded random
  picks, ``--seeds`` times), predict the rest; next to it the roofline bound alone as the
  predictor, whole-model and layerwise (its Spearman, and its MAPE once scaled by the median
  measured/bound ratio of the other models' trials), and the ceiling of a within-model
  Spearman on this table (``kernel_ceiling``).

A run's model comes from the store's profile of it (``autotune.transfer``), else from its
file; a run with neither is left out.

Printed per validation: Spearman rank correlation and MAPE of the median latency, TenSet's
peak@1 and peak@5 within each model (the fastest measured latency over the fastest among the
1 or 5 configs predicted fastest: how good a pick the ranking makes), MAPE of
the memory, and Spearman of the fidelity error (1 - cosine vs fp32). The last row is the
noise floor no model can beat: the same configs measured in two runs (any two runs of the
store, interrupted ones included), one run's median "predicting" the other's.

Usage:
    python benchmarks/costmodel.py [--store URL ...] [--model NAME ...] [--seeds 5]
                                   [--test-fraction 0.25]
                                   [--shots 5] [--out benchmarks/results] [--suffix=-NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import fields

import numpy as np

from autotune.costmodel import (
    Validation,
    Workload,
    XGBoostCostModel,
    peak_at,
    reference_ms,
    validate,
)
from autotune.errors import InputError
from autotune.graph import config_cost
from autotune.roofline import peaks_for, roofline_bound
from autotune.store import Store
from autotune.target import load_target
from autotune.transfer import stored_profiles
from autotune.trial import Trial

DEFAULT_STORE = "sqlite:///results/bench/guided.db"


def pairs_from_store(store: Store) -> list[tuple[Workload, Trial]]:
    """Every measured trial of the store's finished runs, with its workload."""
    pairs, targets = [], {}
    profiles = stored_profiles(store)
    for run in store.runs():
        if run.status != "finished" or run.model_hash not in profiles:
            continue
        profile = profiles[run.model_hash]
        for trial in store.trials(run.id):
            if trial.status == "unavailable":
                continue
            if trial.target not in targets:
                try:
                    targets[trial.target] = load_target(trial.target)
                except InputError:
                    continue
            target = targets[trial.target]
            peaks = peaks_for(target, store, trial.cpu_model or None, trial.cores or None)
            pairs.append((Workload(profile, trial.config, trial.backend, target, peaks),
                          trial))
    return pairs


def group_of(trial: Trial) -> tuple[str, str, str, str]:
    return (trial.model_hash, trial.config.id, trial.backend, trial.target)


def random_splits(pairs, fraction: float, seed: int):
    """Hold out ``fraction`` of the configs of every model (at least one each)."""
    rng = np.random.default_rng(seed)
    held = set()
    for model in sorted({t.model_hash for _, t in pairs}):
        groups = sorted({group_of(t) for _, t in pairs if t.model_hash == model})
        count = max(1, round(fraction * len(groups)))
        held |= {groups[i] for i in rng.permutation(len(groups))[:count]}
    return ([p for p in pairs if group_of(p[1]) not in held],
            [p for p in pairs if group_of(p[1]) in held])


def stat(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def describe(results: list[Validation]) -> str:
    return (f"{results[0].train:>5} | {results[0].test:>4} | "
            f"{stat([r.spearman for r in results])} | {stat([r.mape for r in results])} | "
            f"{stat([r.peak_at_1 for r in results])} | {stat([r.peak_at_5 for r in results])} | "
            f"{stat([r.memory_mape for r in results])} | "
            f"{stat([r.fidelity_spearman for r in results])}")


def figures(results: list[Validation]) -> dict:
    """The result file's record of one row: each figure's mean over the seeds."""
    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else None

    return {"train": results[0].train, "test": results[0].test, "seeds": len(results),
            **{name: mean([getattr(r, name) for r in results])
               for name in ("spearman", "mape", "peak_at_1", "peak_at_5", "memory_mape",
                            "fidelity_spearman")}}


def describe_within(results: list[Validation], model: str) -> str:
    """One model's held-out trials alone, over the seeds: its configs ranked among
    themselves."""
    scores = [r.within_model[model] for r in results if model in r.within_model]
    tested = sum(count for count, _, _ in scores) / max(len(scores), 1)
    return (f"{'':>5} | {tested:>4.1f} | {stat([rho for _, rho, _ in scores])} | "
            f"{stat([mape for _, _, mape in scores])} | - | - | - | -")


def leave_one_model_out(pairs, model: str, shots: int, seeds: int) -> tuple[list[str], dict]:
    """Rows for one unseen model: the cost model before any of its configs is measured,
    with ``shots`` of them measured, and the roofline bound alone; and their figures."""
    from scipy.stats import spearmanr

    train = [p for p in pairs if p[1].model != model]
    test = [p for p in pairs if p[1].model == model]
    if not any(t.ok for _, t in train) or not any(t.ok and t.latency_ms for _, t in test):
        return [], {}
    unseen = [validate(XGBoostCostModel(), train, test)]
    rows = [f"| leave out model {model}: nothing of it measured | {describe(unseen)} |"]
    found = {"unseen": figures(unseen)}
    groups = sorted({group_of(t) for _, t in test if t.ok and t.latency_ms})
    if len(groups) > shots + 2:
        results = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            seen = {groups[i] for i in rng.permutation(len(groups))[:shots]}
            results.append(validate(
                XGBoostCostModel(seed=seed),
                train + [p for p in test if group_of(p[1]) in seen],
                [p for p in test if group_of(p[1]) not in seen]))
        rows.append(f"| ... with {shots} of its configs measured, {seeds} seeds | "
                    f"{describe(results)} |")
        found[f"with_{shots}_measured"] = figures(results)
    scored = [(w, t) for w, t in test if t.ok and t.latency_ms]
    measured = np.array([t.latency_ms for _, t in scored])
    for key, name, bound_of in (("roofline_bound", "the roofline bound", whole_model_bound),
                                ("layerwise_bound", "the layerwise bound", reference_ms)):
        # A bound alone: its ranks, and its latencies scaled by the fraction of the roof
        # the other models' trials attained (a lower bound is not a latency).
        scale = statistics.median(t.latency_ms / bound_of(w) for w, t in train
                                  if t.ok and t.latency_ms)
        bound = np.array([bound_of(w) for w, _ in scored])
        rho = float(spearmanr(bound, measured).statistic) if len(scored) > 2 else float("nan")
        mape = float(np.mean(np.abs(bound * scale - measured) / measured))
        peaks = [peak_at(bound, measured, k) if len(scored) > k else None for k in (1, 5)]
        rows.append(f"| ... {name} alone (x {scale:.2f}, the other models' median) | "
                    f"{'-':>5} | {len(scored):>4} | {rho:.3f} | {mape:.3f} | "
                    + " | ".join("-" if p is None else f"{p:.3f}" for p in peaks)
                    + " | - | - |")
        found[key] = {"test": len(scored), "spearman": rho, "mape": mape, "scale": scale,
                      "peak_at_1": peaks[0], "peak_at_5": peaks[1]}
    ceiling = kernel_ceiling([t for _, t in scored])
    rows.append(f"| ... ceiling: every config at the mean of the configs sharing its kernels "
                f"| {'-':>5} | {len(scored):>4} | {ceiling:.3f} | - | - | - | - | - |")
    found["kernel_ceiling_spearman"] = ceiling
    return rows, found


def whole_model_bound(workload: Workload) -> float:
    """The roofline bound of the whole model (all ops at the peak, all bytes at DRAM's)."""
    cost = config_cost(workload.profile, workload.config)
    return roofline_bound(cost.ops_by_precision, cost.bytes, workload.peaks).bound_ms


def kernel_ceiling(trials: Sequence[Trial]) -> float:
    """The Spearman a predictor reaches that knows each config's kernels exactly but, like
    every predictor, cannot see which of the configs sharing them (they differ only in
    calibration, which picks scales, not kernels) the noise of measurement made faster:
    each config predicted at its group's measured mean. Clusters of configs measured within
    noise of each other keep a within-model Spearman below 1 whatever the model."""
    from scipy.stats import spearmanr

    def kernels(trial: Trial) -> tuple:
        return tuple(getattr(trial.config, f.name) for f in fields(trial.config)
                     if f.name != "calibration")

    groups: dict[tuple, list[float]] = {}
    for trial in trials:
        groups.setdefault(kernels(trial), []).append(trial.latency_ms)
    oracle = [statistics.mean(groups[kernels(t)]) for t in trials]
    return float(spearmanr(oracle, [t.latency_ms for t in trials]).statistic)


def remeasured(store: Store) -> list[tuple[Trial, Trial]]:
    """Pairs of ok trials of one config (same model, backend, target) from different runs."""
    seen: dict[tuple, list[Trial]] = {}
    for run in store.runs():
        for trial in store.trials(run.id):
            if trial.ok and trial.latency_ms:
                seen.setdefault(group_of(trial), []).append(trial)
    return [(a, b) for trials in seen.values() for i, a in enumerate(trials)
            for b in trials[i + 1:]]


def noise_floor(pairs: list[tuple[Trial, Trial]]) -> str:
    from scipy.stats import spearmanr

    first = np.array([a.latency_ms for a, _ in pairs])
    second = np.array([b.latency_ms for _, b in pairs])
    # Both directions: either measurement may be the "prediction" of the other.
    mape = float(np.mean(np.r_[np.abs(first - second) / second,
                               np.abs(first - second) / first]))
    rho = float(spearmanr(first, second).statistic) if len(pairs) > 2 else float("nan")
    return f"{'-':>5} | {len(pairs):>4} | {rho:.3f} | {mape:.3f} | - | - | - | - "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", default=None, metavar="URL",
                        help=f"store of measured runs (repeatable; default: {DEFAULT_STORE})")
    parser.add_argument("--model", action="append", default=None, metavar="NAME",
                        help="only the runs of this model (repeatable; default: every model)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--shots", type=int, default=5,
                        help="configs of the left-out model measured in the second row")
    parser.add_argument("--out", default=None, help="write the result file into this folder")
    parser.add_argument("--suffix", default="",
                        help="appended to the result file's name, e.g. -6models")
    args = parser.parse_args()

    stores = [Store(url) for url in args.store or [DEFAULT_STORE]]
    pairs = [pair for store in stores for pair in pairs_from_store(store)
             if args.model is None or pair[1].model in args.model]
    models = sorted({t.model for _, t in pairs})
    ok = sum(t.ok for _, t in pairs)
    print(f"{len(pairs)} measured trials ({ok} ok, {len(pairs) - ok} failed: counted, kept "
          f"out of the regressions) of {len(models)} models: {', '.join(models)}\n")
    print("| validation | train | test ok | latency Spearman | latency MAPE | peak@1 | "
          "peak@5 | memory MAPE | fidelity Spearman |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for seed in range(args.seeds):
        train, test = random_splits(pairs, args.test_fraction, seed)
        results.append(validate(XGBoostCostModel(seed=seed), train, test))
    print(f"| random {args.test_fraction:.0%} of configs held out, {args.seeds} seeds | "
          f"{describe(results)} |")
    if len(models) > 1:
        for model in models:
            print(f"| ... the same splits, {model}'s held-out configs ranked among themselves | "
                  f"{describe_within(results, model)} |")
    unseen = {}
    for model in models:
        rows, unseen[model] = leave_one_model_out(pairs, model, args.shots, args.seeds)
        for row in rows:
            print(row)
    floor = [pair for store in stores for pair in remeasured(store)
             if args.model is None or pair[0].model in args.model]
    if floor:
        print(f"| noise floor: same config measured in two runs | {noise_floor(floor)}|")
    if len(models) > 1:
        for model in models:
            within = [(a, b) for a, b in floor if a.model == model]
            if len(within) > 2:
                print(f"| ... {model}'s configs only | {noise_floor(within)}|")
    print()
    print("Spearman: rank correlation of predicted vs measured median latency (1 = same "
          "order); MAPE: mean |predicted - measured| / measured. ± is the standard deviation "
          "over seeds. peak@k (TenSet): within a model, the fastest measured latency over the "
          "fastest among the k configs predicted fastest.")
    if args.out:
        from result_file import write_result

        path = write_result(args.out, "costmodel", {
            "stores": args.store or [DEFAULT_STORE], "models": models, "trials": len(pairs),
            "ok": ok, "shots": args.shots, "seeds": args.seeds,
            "random_split": figures(results), "leave_one_model_out": unseen}, args.suffix)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

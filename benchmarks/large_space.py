"""Search at scale: guided vs random vs TPE over a per-layer space of 500+ configs, replayed
over a table measured for real (issue #25).

The whole space is measured once, for real, by ``autotune run`` (OpenVINO, this host) into a
store kept for the benchmark (``--store``; reused when it already holds a finished run of
the space). Each strategy is then replayed over that table at a budget of ``--fraction`` of
it: a proposal gets the trial measured for its config and nothing else. The score is the
hypervolume of the replay's front of (median latency, log10 fidelity error) as a fraction
of the hypervolume of every measured config (``guided_search.Scorer``), mean and spread
over ``--seeds`` seeds.

TPE is optuna's sampler, as Olive uses it: a categorical for the config's base (its
backend, target and config without per-layer overrides) and, for a base with layer groups,
one fp32-or-not choice per group. A choice the space does not hold is told as failed, and
one already measured is told its figures again; neither spends the budget.

Usage:
    python benchmarks/large_space.py [--store URL] [--model digits-cnn]
        [--space benchmarks/spaces/per_layer_two_bases.toml] [--fraction 0.1] [--seeds 5]
        [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from guided_search import (  # noqa: E402
    Scorer,
    measured_space,
    objectives,
    print_table_summary,
    replay,
)
from result_file import write_result  # noqa: E402

from autotune.config import FP32, QuantConfig  # noqa: E402
from autotune.host import cpu_model  # noqa: E402
from autotune.roofline import peaks_for  # noqa: E402
from autotune.search import (  # noqa: E402
    Candidate,
    GuidedSearch,
    RandomSearch,
    StrategyContext,
    remaining,
)
from autotune.trial import Trial  # noqa: E402

DEFAULT_SPACE = str(Path(__file__).parent / "spaces" / "per_layer_two_bases.toml")
DEFAULT_STORE = "sqlite:///results/bench/large_space.db"
# A sampled choice the space does not hold, or one measured already, is re-asked; after this
# many in a row the sampler has nothing new to say and a random unmeasured candidate is taken.
MAX_ASKS = 200


def _pair(candidate: Candidate) -> tuple[str, str]:
    return candidate.backend, candidate.target.name


def _base(config: QuantConfig, backend: str, target: str) -> str:
    """The TPE base of a candidate: its backend, target and config without layer overrides."""
    return f"{backend}|{target}|{replace(config, overrides=()).text}"


def _kept(config: QuantConfig) -> frozenset[str]:
    """The layers a per-layer config keeps in fp32."""
    return frozenset(layer for layer, _ in config.overrides)


class Encoding:
    """Candidates as TPE's parameters: a base, and per layer group of that base, kept or not.

    A group is the layers that are always kept in fp32 together in the space's configs (a
    per-layer space decides a residual block's layers as one), found from the candidates.
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        kept_by_base: dict[str, list[frozenset[str]]] = {}
        for candidate in candidates:
            kept = _kept(candidate.config)
            kept_by_base.setdefault(_base(candidate.config, *_pair(candidate)), []).append(kept)
        self.bases = list(kept_by_base)
        self.groups: dict[str, list[frozenset[str]]] = {}
        for base, kept_sets in kept_by_base.items():
            signature: dict[str, list[int]] = {}
            for index, kept in enumerate(kept_sets):
                for layer in kept:
                    signature.setdefault(layer, []).append(index)
            together: dict[tuple[int, ...], set[str]] = {}
            for layer, where in signature.items():
                together.setdefault(tuple(where), set()).add(layer)
            self.groups[base] = sorted((frozenset(g) for g in together.values()), key=sorted)
        self.by_choice = {(_base(c.config, *_pair(c)), _kept(c.config)): c for c in candidates}
        fp32 = {_pair(c): c for c in candidates if c.config == FP32}
        # Per base, the fp32 candidate of its backend and target: every group kept.
        self.fp32 = {_base(c.config, *_pair(c)): fp32.get(_pair(c)) for c in candidates}

    def candidate(self, base: str, kept_groups: Sequence[bool]) -> Candidate | None:
        """The candidate a choice names, None when the space has no such config. Every group
        kept is the fp32 model of the base's backend and target."""
        groups = self.groups[base]
        kept = frozenset().union(*(g for g, k in zip(groups, kept_groups, strict=True) if k))
        found = self.by_choice.get((base, kept))
        if found is None and groups and all(kept_groups):
            found = self.fp32[base]
        return found


class TPESearch:
    """optuna's TPE sampler as a search strategy (fp32 baselines first, as the others)."""

    name = "tpe"

    def __init__(self, seed: int = 0, context: StrategyContext | None = None) -> None:
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        self.optuna = optuna
        self.seed = seed
        self.study = optuna.create_study(
            directions=["minimize", "minimize"],
            sampler=optuna.samplers.TPESampler(seed=seed))
        self.encoding: Encoding | None = None
        self.asked: dict[tuple[str, str, str], object] = {}  # proposed, not yet measured
        self.told: set[tuple[str, str, str]] = set()
        self.fallbacks = 0  # proposals taken at random after MAX_ASKS re-asks

    def propose(self, candidates, history, budget):
        left = remaining(candidates, history)
        baselines = [c for c in left if c.config == FP32]
        if budget <= 0 or not left or baselines:
            return baselines[:max(budget, 0)]
        if self.encoding is None:
            self.encoding = Encoding(candidates)
        for trial in history:
            if trial.key not in self.told:
                self._record(trial)
        measured = {trial.key: trial for trial in history}
        for _ in range(MAX_ASKS):
            asked = self.study.ask()
            base = asked.suggest_categorical("base", self.encoding.bases)
            kept = [asked.suggest_categorical(f"g{index}", [False, True])
                    for index in range(len(self.encoding.groups[base]))]
            candidate = self.encoding.candidate(base, kept)
            if candidate is None:  # not in the space
                self.study.tell(asked, state=self.optuna.trial.TrialState.FAIL)
            elif candidate.key in measured:  # a repeat: the sampler hears its figures again
                self._tell(asked, measured[candidate.key])
            elif candidate.key not in self.asked:
                self.asked[candidate.key] = asked
                return [candidate]
            else:
                self.study.tell(asked, state=self.optuna.trial.TrialState.FAIL)
        self.fallbacks += 1
        return [random.Random(self.seed + len(history)).choice(left)]

    def _record(self, trial: Trial) -> None:
        """Tell the study a measured trial: to the study trial that asked for it, or as a
        trial of its own (baselines and fallbacks, which the sampler did not choose)."""
        self.told.add(trial.key)
        asked = self.asked.pop(trial.key, None)
        if asked is not None:
            self._tell(asked, trial)
            return
        base = _base(trial.config, trial.backend, trial.target)
        if base not in self.encoding.groups:  # a trial of a candidate outside the space
            return
        distributions = self.optuna.distributions
        params = {"base": base}
        spaces = {"base": distributions.CategoricalDistribution(self.encoding.bases)}
        kept = _kept(trial.config)
        for index, group in enumerate(self.encoding.groups[base]):
            params[f"g{index}"] = group <= kept
            spaces[f"g{index}"] = distributions.CategoricalDistribution([False, True])
        point = objectives(trial)
        self.study.add_trial(self.optuna.trial.create_trial(
            params=params, distributions=spaces, values=None if point is None else list(point),
            state=self.optuna.trial.TrialState.COMPLETE if point else
            self.optuna.trial.TrialState.FAIL))

    def _tell(self, asked, trial: Trial) -> None:
        point = objectives(trial)
        if point is None:
            self.study.tell(asked, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(asked, list(point))


def trials_to_reach(curve: Sequence[float], level: float) -> int | None:
    """The first budget at which a replay's hypervolume fraction reaches ``level``."""
    return next((k for k, value in enumerate(curve, 1) if value >= level), None)


def summarize(curves: dict[str, list[list[float]]], budget: int, level: float) -> list[dict]:
    """Per strategy: the mean and spread of the final fraction, and when it reached ``level``."""
    rows = []
    for name, runs in curves.items():
        finals = [curve[budget - 1] for curve in runs]
        reached = [trials_to_reach(curve, level) for curve in runs]
        rows.append({
            "strategy": name, "seeds": len(runs),
            "hypervolume_mean": statistics.mean(finals),
            "hypervolume_sd": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "hypervolume_min": min(finals),
            "seeds_reaching": sum(r is not None for r in reached),
            "trials_to_reach": reached,
            "checkpoints": {str(k): statistics.mean(c[k - 1] for c in runs)
                            for k in checkpoints(budget)},
        })
    return rows


def checkpoints(budget: int) -> list[int]:
    return sorted({max(1, round(budget * f)) for f in (0.25, 0.5, 0.75)} | {budget})


def print_summary(rows: list[dict], budget: int, size: int, level: float) -> None:
    marks = checkpoints(budget)
    print(f"Hypervolume reached (log error axis) as a fraction of the exhaustive front's, "
          f"budget {budget} = {budget / size:.1%} of {size} configs (mean over seeds):")
    print("| strategy | seeds | " + " | ".join(f"{k} trials" for k in marks)
          + f" | at {budget}: mean ± sd | min | seeds >= {level:g} | trials to {level:g} |")
    print("|---|---:|" + "---:|" * len(marks) + "---:|---:|---:|---|")
    for row in rows:
        reached = ", ".join("-" if r is None else str(r) for r in row["trials_to_reach"])
        print(f"| {row['strategy']} | {row['seeds']} | "
              + " | ".join(f"{row['checkpoints'][str(k)]:.4f}" for k in marks)
              + f" | {row['hypervolume_mean']:.4f} ± {row['hypervolume_sd']:.4f} | "
              f"{row['hypervolume_min']:.4f} | {row['seeds_reaching']}/{row['seeds']} | "
              f"{reached} |")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=DEFAULT_STORE)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--space", default=DEFAULT_SPACE)
    parser.add_argument("--target", default="host-cpu")
    parser.add_argument("--fraction", type=float, default=0.10,
                        help="budget as a fraction of the measured space (default: 0.10)")
    parser.add_argument("--level", type=float, default=0.99,
                        help="the hypervolume fraction to reach (default: 0.99)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the result file into this folder")
    args = parser.parse_args()

    store, runs, table, candidates = measured_space(args.store, args.model, [args.space],
                                                   args.target)
    target = candidates[0].target
    budget = math.floor(args.fraction * len(candidates))
    scorer = Scorer(table, "log")
    print_table_summary(runs, table, scorer.reference)

    peaks = peaks_for(target, store, cpu_model(), target.threads)
    context = StrategyContext(Path(runs[0].model_path), None, {target.name: peaks})
    makers = {"random": lambda seed: RandomSearch(seed),
              "tpe (optuna)": lambda seed: TPESearch(seed),
              "guided": lambda seed: GuidedSearch(seed, context)}
    curves: dict[str, list[list[float]]] = {}
    for name, make in makers.items():
        for seed in range(args.seeds):
            trials = replay(make(seed), candidates, table, budget)
            curves.setdefault(name, []).append([scorer(trials[:k])
                                                for k in range(1, budget + 1)])
            print(f"  {name} seed {seed}: {curves[name][-1][-1]:.4f}", file=sys.stderr)
    rows = summarize(curves, budget, args.level)
    print_summary(rows, budget, len(candidates), args.level)
    if args.out:
        ok = sum(trial.ok for trial in table.values())
        path = write_result(args.out, f"large_space-{args.model}", {
            "model": args.model, "space": args.space, "target": args.target,
            "runs": [run.id for run in runs], "configs": len(candidates), "ok": ok,
            "budget": budget, "fraction": args.fraction, "level": args.level,
            "strategies": rows})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

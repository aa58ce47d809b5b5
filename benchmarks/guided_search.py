"""Guided vs random vs exhaustive search, replayed over a table measured for real.

Every config of the spaces is measured once, for real, by ``autotune run`` (isolated
workers, OpenVINO, this host), unless the store already holds finished runs of them: then
those are reused (``--store``). Each strategy is then replayed over that table: when it
proposes a config, it gets the trial that was measured for it, and only the trials it
proposed (the guided strategy never sees another config's figures). A replay's quality is
the hypervolume of its front of (median latency, fidelity error = 1 - cosine vs fp32), as a
fraction of the hypervolume of every measured trial, with one reference point for all (the
worst latency and error of the table plus 10% of their ranges). The error axis is
log10(error + 1e-7) (``pareto.fidelity_objective``; what the guided strategy optimizes);
the same replays are also scored on a linear error axis, where nearly every int8 config
sits at "0" and all strategies score alike.

Usage:
    python benchmarks/guided_search.py [--store URL] [--model digits-cnn]
        [--space full --space mixed] [--fraction 0.25] [--seeds 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from autotune.host import cpu_model
from autotune.pareto import fidelity_objective, hypervolume_2d, pareto_front, reference_point
from autotune.roofline import peaks_for
from autotune.search import (
    Candidate,
    ExhaustiveSearch,
    GuidedSearch,
    RandomSearch,
    StrategyContext,
)
from autotune.store import Run, Store
from autotune.target import Target, load_target
from autotune.trial import Trial

BACKEND = "openvino"
DEFAULT_STORE = "sqlite:///results/bench/guided.db"


def finished_run(store: Store, model: str, space: str) -> Run | None:
    """The latest run of ``model`` over ``space`` on this backend that measured all of it."""
    name = Path(space).stem if space.endswith(".toml") else space  # a TOML file's run: its stem
    runs = [run for run in store.runs() if run.model == model and run.space == name
            and measured_whole(run) and BACKEND in (run.settings.backends or (BACKEND,))]
    return runs[-1] if runs else None


def measured_whole(run: Run) -> bool:
    """Finished, or stopped during its repeat passes (``--passes``) after its first pass
    measured every candidate of the space: either is a whole table."""
    search = run.search
    return run.status == "finished" or (search.space_size is not None
                                        and search.measured == search.space_size)


def ensure_measured(store_url: str, model: str, spaces: Sequence[str]) -> list[Run]:
    """Finished runs of every space, measuring (``autotune run``) the ones the store lacks."""
    store = Store(store_url)
    runs = []
    for space in spaces:
        run = finished_run(store, model, space)
        if run is None:
            print(f"measuring {model} over space {space} (every config, for real) ...",
                  file=sys.stderr)
            subprocess.run([sys.executable, "-m", "autotune", "run", "--model", model,
                            "--space", space, "--backend", BACKEND, "--store", store_url,
                            "--no-progress"], check=True)
            run = finished_run(store, model, space)
        runs.append(run)
    return runs


def measured_table(store: Store, runs: Sequence[Run]) -> dict[str, Trial]:
    """One measured trial per config (the first run that measured it wins)."""
    table: dict[str, Trial] = {}
    for run in runs:
        for trial in store.trials(run.id):
            if trial.backend == BACKEND and trial.status != "unavailable":
                table.setdefault(trial.config.id, trial)
    return table


def measured_space(store_url: str, model: str, spaces: Sequence[str], target_name: str
                   ) -> tuple[Store, list[Run], dict[str, Trial], list[Candidate]]:
    """The store, the runs that measured ``spaces``, their table, and its configs as
    candidates on ``target_name`` (fp32, the baseline, first)."""
    Path("results/bench").mkdir(parents=True, exist_ok=True)
    runs = ensure_measured(store_url, model, spaces)
    store = Store(store_url)
    table = measured_table(store, runs)
    target = load_target(target_name)
    candidates = [Candidate(trial.config, BACKEND, target) for trial in table.values()]
    candidates.sort(key=lambda c: c.config.is_quantized)
    return store, runs, table, candidates


def objectives(trial: Trial, scale: str = "log") -> tuple[float, float] | None:
    """(median latency, error coordinate) of a successful trial, None for a failed one."""
    if not trial.ok or trial.latency_ms is None or trial.fidelity_error is None:
        return None
    error = trial.fidelity_error
    return trial.latency_ms, fidelity_objective(error) if scale == "log" else error


class Scorer:
    """Hypervolume fractions of subsets of the table on one error scale."""

    def __init__(self, table: dict[str, Trial], scale: str) -> None:
        self.scale = scale
        points = [p for p in (objectives(t, scale) for t in table.values()) if p]
        self.reference = reference_point(points)
        self.total = hypervolume_2d(points, self.reference)

    def __call__(self, trials: Sequence[Trial]) -> float:
        points = [p for p in (objectives(t, self.scale) for t in trials) if p]
        return hypervolume_2d(points, self.reference) / self.total


def replay(strategy, candidates: list[Candidate], table: dict[str, Trial],
           budget: int) -> list[Trial]:
    """Drive ``strategy`` as the driver does, answering each proposal from the table."""
    history: list[Trial] = []
    while len(history) < budget:
        batch = strategy.propose(candidates, history, budget - len(history))
        if not batch:
            break
        for candidate in batch[:budget - len(history)]:
            if candidate.key in {trial.key for trial in history}:
                raise AssertionError(f"{strategy.name} proposed {candidate.key} twice")
            history.append(table[candidate.config.id])
    return history


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=DEFAULT_STORE)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--space", action="append", default=None,
                        help="spaces measured into the table (default: full and mixed)")
    parser.add_argument("--target", default="host-cpu")
    parser.add_argument("--fraction", type=float, default=0.25,
                        help="budget as a fraction of the table (default: 0.25)")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    store, runs, table, candidates = measured_space(args.store, args.model,
                                                   args.space or ["full", "mixed"], args.target)
    target = candidates[0].target
    budget = math.floor(args.fraction * len(candidates))
    scorers = {scale: Scorer(table, scale) for scale in ("log", "linear")}

    print_table_summary(runs, table, scorers["log"].reference)
    chosen = run_strategies(args, store, runs[0], target, candidates, table, budget)
    for scale, scorer in scorers.items():
        curves = {name: [[scorer(trials[:k]) for k in range(1, budget + 1)] for trials in runs]
                  for name, runs in chosen.items()}
        print_results(curves, budget, len(candidates), scale)
    print_mixed_findings(table)
    return 0


def run_strategies(args, store: Store, run: Run, target: Target, candidates, table,
                   budget) -> dict[str, list[list[Trial]]]:
    """Per strategy, the trials each seed's replay chose, in order."""
    peaks = peaks_for(target, store, cpu_model(), target.threads)
    context = StrategyContext(Path(run.model_path), None, {target.name: peaks})
    makers = {
        "exhaustive (space order)": lambda seed: ExhaustiveSearch(),
        "random": lambda seed: RandomSearch(seed),
        "guided": lambda seed: GuidedSearch(seed, context),
    }
    chosen: dict[str, list[list[Trial]]] = {}
    for name, make in makers.items():
        seeds = [0] if name.startswith("exhaustive") else range(args.seeds)
        for seed in seeds:
            trials = replay(make(seed), candidates, table, budget)
            chosen.setdefault(name, []).append(trials)
            print(f"  {name} seed {seed}: {', '.join(t.config.label for t in trials)}",
                  file=sys.stderr)
    return chosen


def print_table_summary(runs, table, reference) -> None:
    ok = sum(t.ok for t in table.values())
    print(f"Measured table: {len(table)} configs ({ok} ok, {len(table) - ok} failed) from runs "
          f"{', '.join(f'{r.id} ({r.space})' for r in runs)}")
    print(f"Objectives: median latency (ms), log10(1 - cosine vs fp32 + 1e-7); reference "
          f"point ({reference[0]:.3f} ms, {reference[1]:.3f})\n")
    trials = [t for t in table.values() if objectives(t)]
    front = sorted((trials[i] for i in pareto_front([objectives(t) for t in trials])),
                   key=lambda t: t.latency_ms)
    print("Exhaustive frontier (every measured config):")
    print(f"| {'config':<58} | median ms | 1 - cosine |")
    print(f"|{'-' * 60}|----------:|-----------:|")
    for t in front:
        print(f"| {t.config.text:<58} | {t.latency_ms:9.3f} | "
              f"{t.fidelity_error:10.3g} |")
    print()


def print_results(curves: dict[str, list[list[float]]], budget: int, size: int,
                  scale: str) -> None:
    checkpoints = sorted({max(1, round(budget * f)) for f in (0.4, 0.6, 0.8)} | {budget})
    print(f"Hypervolume reached ({scale} error axis), as a fraction of the exhaustive front's "
          f"(mean over seeds; budget {budget} = {budget / size:.0%} of {size} configs):")
    header = " | ".join(f"{k} trials" for k in checkpoints)
    print(f"| strategy | seeds | {header} | min at {budget} | seeds >= 0.99 at {budget} |")
    print("|---|---:|" + "---:|" * len(checkpoints) + "---:|---:|")
    for name, runs in curves.items():
        means = " | ".join(f"{statistics.mean(c[k - 1] for c in runs):.4f}"
                           for k in checkpoints)
        finals = [c[-1] for c in runs]
        print(f"| {name} | {len(runs)} | {means} | {min(finals):.4f} | "
              f"{sum(f >= 0.99 for f in finals)}/{len(runs)} |")
    print()


def print_mixed_findings(table: dict[str, Trial]) -> None:
    """Mixed configs on the frontier of everything measured, against the uniform ones."""
    trials = [t for t in table.values() if objectives(t)]
    front = [trials[i] for i in pareto_front([objectives(t) for t in trials])]
    mixed = sorted((t for t in front if t.config.overrides), key=lambda t: t.latency_ms)
    uniform = [t for t in trials if not t.config.overrides]
    print("Mixed-precision configs on the frontier, against every uniform config:")
    if not mixed:
        print("(none: no mixed config is on the frontier of this table)\n")
        return
    print("| mixed config (layers kept fp32) | median ms | 1 - cosine | fastest uniform at "
          "<= its error | most accurate uniform at <= its latency |")
    print("|---|---:|---:|---|---|")
    for t in mixed:
        latency, error = t.latency_ms, t.fidelity_error
        as_good = [u for u in uniform if u.fidelity_error <= error]
        as_fast = [u for u in uniform if u.latency_ms <= latency]
        faster = min(as_good, key=lambda u: u.latency_ms, default=None)
        better = min(as_fast, key=lambda u: u.fidelity_error, default=None)
        print(f"| {t.config.label}: {', '.join(layer for layer, _ in t.config.overrides)} | "
              f"{latency:.3f} | {error:.3g} | "
              + (f"{faster.config.label} {faster.latency_ms:.3f} ms" if faster
                 else "none") + " | "
              + (f"{better.config.label} {better.fidelity_error:.3g}" if better else "none")
              + " |")
    print()


if __name__ == "__main__":
    sys.exit(main())

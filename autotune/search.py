"""Search strategies: which (config, backend, target) candidates to measure next.

A strategy is an object with one method, ``propose(candidates, history, budget)``; the
driver calls it until it proposes nothing or the budget of measured trials is spent.
Strategies that need more than that (the guided one needs the model's graph and the
targets' roofline peaks) get it through their constructor, as a ``StrategyContext``.
"""

from __future__ import annotations

import bisect
import inspect
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from autotune.config import FP32, QuantConfig
from autotune.errors import InputError
from autotune.space import LazySequence, countable
from autotune.store import Convergence
from autotune.target import Target
from autotune.trial import Trial


@dataclass(frozen=True)
class Candidate:
    config: QuantConfig
    backend: str
    target: Target

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.config.id, self.backend, self.target.name)


class SearchStrategy(Protocol):
    """Every strategy is built the same way, ``cls(seed, context)``: one that needs no context
    (or no seed) takes and ignores it, so ``make_strategy`` is one registry lookup."""

    name: str

    def __init__(self, seed: int = 0, context: StrategyContext | None = None) -> None: ...

    def propose(self, candidates: Sequence[Candidate], history: Sequence[Trial],
                budget: int) -> list[Candidate]:
        """Up to ``budget`` candidates not yet in ``history``, in the order to measure them."""


class CandidateSpace(LazySequence):
    """Every (config, backend, target) candidate of a space, fp32 baselines first, then each
    (backend, target)'s configs in space order, made on demand from the index: a per-layer
    space of 10^5 configs is never listed.

    Args:
        pairs: (backend, target, the configs that backend measures there), in order.
    """

    def __init__(self, pairs: Sequence[tuple[str, Target, Sequence[QuantConfig]]]) -> None:
        self.pairs = tuple(pairs)
        # A pair's fp32 (its first config) is its baseline: it moves to the front.
        self._skip = [1 if len(configs) and configs[0] == FP32 else 0
                      for _, _, configs in self.pairs]
        self._baselines = [index for index, skip in enumerate(self._skip) if skip]
        self._starts = list(itertools.accumulate(
            [len(self._baselines), *(len(configs) - skip for (_, _, configs), skip
                                     in zip(self.pairs, self._skip, strict=True))]))
        self._pair_of = {(backend, target.name): index
                         for index, (backend, target, _) in enumerate(self.pairs)}
        countable(self._starts[-1], "candidates")

    def __len__(self) -> int:
        return self._starts[-1]

    def _item(self, index: int) -> Candidate:
        if index < len(self._baselines):
            backend, target, _ = self.pairs[self._baselines[index]]
            return Candidate(FP32, backend, target)
        pair = bisect.bisect_right(self._starts, index) - 1
        backend, target, configs = self.pairs[pair]
        return Candidate(configs[index - self._starts[pair] + self._skip[pair]], backend,
                         target)

    def find(self, candidate) -> int | None:
        if not isinstance(candidate, Candidate):
            return None
        pair = self._pair_of.get((candidate.backend, candidate.target.name))
        if pair is None:
            return None
        if candidate.config == FP32 and self._skip[pair]:
            return self._baselines.index(pair)
        configs = self.pairs[pair][2]
        if candidate.config not in configs:
            return None
        return self._starts[pair] + configs.index(candidate.config) - self._skip[pair]

    def __iter__(self) -> Iterator[Candidate]:
        for pair in self._baselines:
            yield Candidate(FP32, self.pairs[pair][0], self.pairs[pair][1])
        for (backend, target, configs), skip in zip(self.pairs, self._skip, strict=True):
            for config in itertools.islice(configs, skip, None):
                yield Candidate(config, backend, target)

    def holds(self, config: QuantConfig, backend: str, target: str) -> bool:
        """Whether the space has ``config`` on ``backend`` and the target named ``target``."""
        pair = self._pair_of.get((backend, target))
        return pair is not None and config in self.pairs[pair][2]

    def unmeasured_count(self, history: Sequence[Trial]) -> int:
        """How many candidates ``history`` has no trial of (without listing them)."""
        done = {trial.key: trial for trial in history}.values()
        return len(self) - sum(self.holds(t.config, t.backend, t.target) for t in done)

    def neighbours(self, config: QuantConfig, backend: str, target: str) -> list[Candidate]:
        """The candidates one layer group away from ``config`` on the same backend and
        target (none outside a per-layer space)."""
        pair = self._pair_of.get((backend, target))
        if pair is None:
            return []
        _, found, configs = self.pairs[pair]
        near = getattr(configs, "neighbours", None)
        return [] if near is None else [Candidate(c, backend, found) for c in near(config)]


def remaining(candidates: Sequence[Candidate], history: Sequence[Trial]) -> list[Candidate]:
    """The candidates ``history`` has no trial of, in their order."""
    return list(unmeasured(candidates, history))


def unmeasured(candidates: Sequence[Candidate], history: Sequence[Trial]) -> Iterator[Candidate]:
    """The candidates ``history`` has no trial of, in their order, one at a time."""
    done = {trial.key for trial in history}
    return (candidate for candidate in candidates if candidate.key not in done)


def leading_baselines(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The fp32 baselines a baselines-first sequence starts with."""
    return list(itertools.takewhile(lambda candidate: candidate.config == FP32, candidates))


def draw(candidates: Sequence[Candidate], count: int, seed: int, skip: int = 0,
         done: frozenset | set = frozenset()) -> list[Candidate]:
    """Up to ``count`` distinct candidates at random indices from ``skip`` on (seeded), none
    whose key is in ``done``; the same seed draws the same indices in the same order, so a
    resumed search goes on where it stopped. Nothing is listed."""
    rng, seen, found = random.Random(seed), set(), []
    span = len(candidates) - skip
    while len(found) < count and len(seen) < span:
        index = rng.randrange(skip, len(candidates))
        if index in seen:
            continue
        seen.add(index)
        if candidates[index].key not in done:
            found.append(candidates[index])
    return found


# Spaces up to this many candidates are searched as lists (every candidate ranked, shuffled);
# larger ones through a pool of this many, drawn at random, plus the measured front's
# neighbours.
POOL_SIZE = 2000


def ranking_pool(candidates: Sequence[Candidate], seed: int) -> Sequence[Candidate]:
    """What guided search ranks first and ``--predict-only`` predicts: a space of up to
    ``POOL_SIZE`` candidates whole; of a larger one (a per-layer space may hold billions),
    its fp32 baselines and ``POOL_SIZE`` candidates drawn at random (seeded)."""
    if len(candidates) <= POOL_SIZE:
        return candidates
    baselines = leading_baselines(candidates)
    return [*baselines, *draw(candidates, POOL_SIZE, seed, skip=len(baselines))]


class ExhaustiveSearch:
    """Every candidate, in space order (fp32 first, the baseline of the others)."""

    name = "exhaustive"

    def __init__(self, seed: int = 0, context: StrategyContext | None = None) -> None:
        pass  # space order needs neither a seed nor the model

    def propose(self, candidates, history, budget):
        return list(itertools.islice(unmeasured(candidates, history), max(budget, 0)))


class RandomSearch:
    """A seeded random sample; fp32 baselines always come first so slowdowns can be judged."""

    name = "random"

    def __init__(self, seed: int = 0, context: StrategyContext | None = None) -> None:
        self.seed = seed  # the context is not needed: a random sample knows no model

    def propose(self, candidates, history, budget):
        if len(candidates) > POOL_SIZE:  # a large space: draw, never shuffle a list of it
            done = {trial.key for trial in history}
            leading = leading_baselines(candidates)
            baselines = [c for c in leading if c.key not in done]
            others = draw(candidates, budget - len(baselines), self.seed, skip=len(leading),
                          done=done)
            return (baselines + others)[:max(budget, 0)]
        left = remaining(candidates, history)
        baselines = [c for c in left if c.config == FP32]
        others = [c for c in left if c.config != FP32]
        random.Random(self.seed).shuffle(others)
        return (baselines + others)[:budget]


@dataclass(frozen=True)
class StrategyContext:
    """What a model-aware strategy may use besides candidates and history.

    ``peaks`` (by target name) overrides the roofline peaks; otherwise they are the ones
    measured into ``store`` or the target TOML's. ``store`` also receives predictions, and
    ``model_dir`` the latest cost model of each run (``guided-RUN_ID.json``).
    """

    model_path: Path | None = None
    store: object | None = None  # an autotune.store.Store
    peaks: dict = field(default_factory=dict)
    model_dir: Path | None = None
    # The run being searched: the guided search stores its prior predictions under it and
    # learns from every other run in ``store``.
    run_id: str | None = None
    # --until-converged: stop once no remaining candidate's expected hypervolume improvement
    # reaches this fraction of the current hypervolume (None: spend the whole budget).
    converge_below: float | None = None


# Diverse seeds guided search measures before it trusts its cost model.
SEEDS = 4


class GuidedSearch:
    """Cost-model-guided search: measure a few diverse seeds, then, one batch at a time,
    the candidates with the largest expected hypervolume improvement of the (latency,
    error) front, retraining the cost model on everything measured so far.

    The error objective is ``quality``: "fidelity" (1 - cosine vs fp32; continuous, and
    defined with or without labels, unlike a task metric on a few hundred samples that is
    often 0 for every config) or "accuracy_drop" (the task metric's drop).

    The cost model learns from every other run in the context's store too (all models,
    targets and backends; ``autotune.transfer``), so a model the search has not measured
    yet starts from a prediction: before its first measurement the search predicts every
    candidate and stores that as the run's prior (``autotune.predict``). With
    ``context.converge_below`` it stops once the best remaining expected improvement falls
    below that fraction of the current hypervolume, and says so in ``converged``.
    """

    name = "guided"

    def __init__(self, seed: int = 0, context: StrategyContext | None = None, *,
                 seeds: int = SEEDS, batch: int = 1, quality: str = "fidelity",
                 model_factory=None) -> None:
        if context is None or context.model_path is None:
            raise InputError("--strategy guided needs the model (its graph feeds the cost "
                             "model)")
        if quality not in ("fidelity", "accuracy_drop"):
            raise ValueError(f"unknown quality objective {quality!r}")
        from autotune.costmodel import XGBoostCostModel

        self.seed, self.context, self.seeds, self.batch = seed, context, seeds, batch
        self.quality = quality
        self.model_factory = model_factory or (lambda: XGBoostCostModel(seed=seed))
        self.last_model = None  # the cost model behind the latest proposal
        self.sampled = None  # (candidates, the pool drawn from them) of a large space
        self.stored = None  # the store's other runs as training rows (loaded once)
        # Set when --until-converged stopped the search: what it saw (``Convergence``).
        self.converged: Convergence | None = None

    def propose(self, candidates, history, budget):
        sample = self._sample(candidates, history)
        measured = [trial for trial in history if trial.attempted]
        pool = {c.key: c for c in [*sample, *self._front_neighbours(candidates, measured)]}
        left = remaining(list(pool.values()), history)
        if budget <= 0 or not left or self.converged is not None:
            return []
        if not measured:
            self._predict_prior(sample)
        keys = {candidate.key for candidate in left}
        seeds = [c for c in diverse_seeds(sample, self.seeds, self.seed) if c.key in keys]
        if len(measured) < self.seeds and seeds:
            return seeds[:min(budget, self.seeds - len(measured))]
        return self._rank(candidates, left, measured)[:min(budget, self.batch)]

    def _sample(self, candidates: Sequence[Candidate],
                history: Sequence[Trial] = ()) -> Sequence[Candidate]:
        """What the search ranks from: every candidate of a space up to ``POOL_SIZE``; of a
        larger one, the baselines and ``POOL_SIZE`` candidates drawn once (seeded), and a
        fresh draw of the unmeasured ones once every drawn candidate is measured, so a
        budget larger than the pool is spent."""
        if len(candidates) <= POOL_SIZE:
            return candidates
        if self.sampled is None or self.sampled[0] is not candidates:
            self.sampled = (candidates, ranking_pool(candidates, self.seed))
        done = {trial.key for trial in history}
        if done and all(candidate.key in done for candidate in self.sampled[1]):
            self.sampled = (candidates, draw(candidates, POOL_SIZE, self.seed + len(done),
                                             skip=len(leading_baselines(candidates)),
                                             done=done))
        return self.sampled[1]

    def _front_neighbours(self, candidates: Sequence[Candidate],
                          measured: Sequence[Trial]) -> list[Candidate]:
        """The candidates one layer group away from a measured trial on its (backend,
        target)'s (latency, error) front, in a large per-layer space: where the front moves
        next. None in a space small enough to rank whole."""
        near = getattr(candidates, "neighbours", None)
        if near is None or len(candidates) <= POOL_SIZE:
            return []
        from autotune.pareto import pareto_front

        found = []
        for _, group in itertools.groupby(
                sorted((t for t in measured if t.ok and t.latency_ms
                        and self._error(t) is not None), key=lambda t: (t.backend, t.target)),
                key=lambda t: (t.backend, t.target)):
            trials = list(group)
            for index in pareto_front([(t.latency_ms, self._error(t)) for t in trials]):
                found += near(trials[index].config, trials[index].backend, trials[index].target)
        return found

    def _store_rows(self, candidates: Sequence[Candidate]):
        """The store's other runs as training rows, loaded once per search."""
        if self.stored is None:
            from autotune.transfer import TrainingSet, training_set

            store = self.context.store
            self.stored = TrainingSet() if store is None else training_set(
                store, list({c.target.name: c.target for c in candidates}.values()),
                exclude_runs=[self.context.run_id] if self.context.run_id else [],
                peaks=self.context.peaks)
        return self.stored

    def _predict_prior(self, candidates: Sequence[Candidate]) -> None:
        """Before the first measurement: predict every candidate from the store alone and
        keep it as the run's prior (once; a resumed run has it already)."""
        store, run_id = self.context.store, self.context.run_id
        if store is None or run_id is None:
            return
        from autotune.graph import analyze
        from autotune.predict import predict_space
        from autotune.settings import DEFAULT_CONVERGENCE
        from autotune.store import PRIOR

        if any(p.stage == PRIOR for p in store.predictions(run_id)):
            return
        rows = self._store_rows(candidates)
        if not rows.learnable():
            return
        model = self.model_factory()
        model.fit(rows.workloads, rows.trials)
        workloads = self._workloads(analyze(self.context.model_path), candidates)
        found = predict_space(model, workloads, candidates,
                              diverse_seeds(candidates, self.seeds, self.seed), self.quality,
                              threshold=self.context.converge_below or DEFAULT_CONVERGENCE,
                              trained_on=len(rows.trials), models=rows.models)
        store.add_predictions(found.predictions(run_id, store.get_run(run_id).model_hash,
                                                PRIOR))

    def _rank(self, candidates: Sequence[Candidate], remaining: list[Candidate],
              measured: Sequence[Trial]) -> list[Candidate]:
        from autotune.graph import analyze
        from autotune.pareto import expected_hypervolume_improvement, hypervolume_2d

        profile = analyze(self.context.model_path)
        # Every target has a baseline among ``remaining`` or in ``measured``.
        targets = {**{c.target.name: c.target for c in self._sample(candidates)},
                   **{c.target.name: c.target for c in remaining}}
        known = [t for t in measured if t.target in targets]
        stored = self._store_rows(self._sample(candidates))
        model = self.model_factory()
        seen = [Candidate(t.config, t.backend, targets[t.target]) for t in known]
        model.fit([*stored.workloads, *self._workloads(profile, seen)], [*stored.trials, *known])
        self.last_model = model
        if self.context.model_dir is not None and known:
            Path(self.context.model_dir).mkdir(parents=True, exist_ok=True)
            model.save(Path(self.context.model_dir) / f"guided-{known[0].run_id}.json")
        predicted = model.predict(self._workloads(profile, remaining))
        errors = self._objective(predicted.quality_samples(self.quality))
        scores, relative = [], []
        for index, candidate in enumerate(remaining):
            front, reference = self._front(known, candidate)
            samples = list(zip(predicted.latency_samples[:, index], errors[:, index],
                               strict=True))
            gain = expected_hypervolume_improvement(samples, front, reference)
            optimistic = expected_hypervolume_improvement(
                [(min(s[0] for s in samples), min(s[1] for s in samples))], front, reference)
            survive = 1.0 - float(predicted.failure_probability[index])
            scores.append((-gain * survive, -optimistic * survive,
                           float(predicted.latency_ms[index]), index))
            volume = hypervolume_2d(front, reference) if front else 0.0
            relative.append(gain * survive / volume if volume > 0 else float("inf"))
        order = [remaining[index] for *_, index in sorted(scores)]
        threshold = self.context.converge_below
        if threshold is not None and max(relative) < threshold:
            pooled = len(candidates) > POOL_SIZE  # then what was ranked is a sample
            ranked = len(known) + len(remaining) if pooled else len(candidates)
            self.converged = Convergence(len(known), ranked, max(relative), threshold,
                                         len(candidates) if pooled else None)
            return []
        self._record(order[:self.batch], remaining, predicted, scores, known, model.version)
        return order

    def _front(self, known: Sequence[Trial], candidate: Candidate):
        """The measured (latency, error) points of the candidate's group, and a reference
        point a little beyond the worst of them."""
        from autotune.pareto import reference_point

        points = [(t.latency_ms, self._error(t)) for t in known
                  if t.ok and t.backend == candidate.backend
                  and t.target == candidate.target.name and t.latency_ms
                  and self._error(t) is not None]
        if not points:
            return [], (float("inf"), float("inf"))
        return points, reference_point(points)

    def _error(self, trial: Trial) -> float | None:
        """The front's error coordinate of a measured trial."""
        if self.quality == "fidelity":
            error = trial.fidelity_error
        else:
            error = None if trial.accuracy_drop is None else max(trial.accuracy_drop, 0.0)
        return None if error is None else float(self._objective(np.asarray(error)))

    def _objective(self, errors: np.ndarray) -> np.ndarray:
        from autotune.pareto import error_objective

        return error_objective(errors, self.quality)

    def _workloads(self, profile, candidates: Sequence[Candidate]) -> list:
        """The cost model's workloads of ``candidates``, with the context's peaks."""
        from autotune.predict import candidate_workloads

        return candidate_workloads(profile, candidates, self.context.store, self.context.peaks)

    def _record(self, chosen, remaining, predicted, scores, known, version: str) -> None:
        """Store what the model expected of the chosen candidates, as predictions."""
        if self.context.store is None or not known:
            return
        from autotune.store import PROPOSED, Prediction

        run_id = self.context.run_id or known[0].run_id
        position = {c.key: i for i, c in enumerate(remaining)}
        rows = []
        for candidate in chosen:
            i = position[candidate.key]
            rows.append(Prediction(
                run_id=run_id, model_hash=known[0].model_hash, config=candidate.config,
                backend=candidate.backend, target=candidate.target.name, model_version=version,
                latency_ms=float(predicted.latency_ms[i]),
                memory_bytes=float(predicted.memory_bytes[i]),
                accuracy_drop=float(predicted.accuracy_drop[i]), stage=PROPOSED,
                fidelity_error=float(predicted.fidelity_error[i]),
                failure_probability=float(predicted.failure_probability[i]),
                expected_hypervolume_improvement=-scores[i][0], trained_on=len(known)))
        self.context.store.add_predictions(rows)


def diverse_seeds(candidates: Sequence[Candidate], count: int, seed: int = 0) -> list[Candidate]:
    """fp32 baselines first, then configs of a weight dtype no seed has yet (bf16, int8, ...),
    then configs as far as possible from the seeds (greedy max-min over their settings): the
    first cost model sees every precision and a spread of schemes."""
    baselines = [c for c in candidates if c.config == FP32]
    others = [c for c in candidates if c.config != FP32]
    random.Random(seed).shuffle(others)  # ties go to a seeded random candidate
    chosen = list(baselines)
    vectors = {c.key: _config_vector(c.config) for c in candidates}
    while others and len(chosen) < max(count, len(baselines)):
        best = max(others, key=lambda candidate: _seed_priority(candidate, chosen, vectors))
        chosen.append(best)
        others.remove(best)
    return chosen


def _seed_priority(candidate: Candidate, chosen: Sequence[Candidate],
                   vectors: dict) -> tuple[bool, float]:
    """(a weight dtype no seed has yet, distance to the nearest seed): larger is better."""
    distance = min((_distance(vectors[candidate.key], vectors[c.key]) for c in chosen),
                   default=0.0)
    new_dtype = candidate.config.weight_dtype not in {c.config.weight_dtype for c in chosen}
    return new_dtype, distance


def _config_vector(config: QuantConfig) -> tuple:
    return (config.weight_dtype, config.activation_dtype, config.weight_scheme,
            config.activation_scheme, config.granularity, config.calibration,
            config.algorithm_text, len(config.overrides))


def _distance(a: tuple, b: tuple) -> float:
    # Settings count 1 when they differ; the number of kept layers counts its gap.
    return sum(x != y for x, y in zip(a[:-1], b[:-1], strict=True)) + abs(a[-1] - b[-1])


_STRATEGIES: dict[str, type] = {}


def register_strategy(cls: type) -> type:
    """Register ``cls`` under ``cls.name``; it must be constructible as ``cls(seed, context)``.

    Raises:
        ValueError: the name is taken, or the constructor does not take (seed, context).
    """
    if cls.name in _STRATEGIES:
        raise ValueError(f"search strategy {cls.name!r} is already registered")
    try:
        inspect.signature(cls).bind(0, None)
    except TypeError as error:
        raise ValueError(f"search strategy {cls.name!r}: the constructor must take "
                         f"(seed, context) ({error})") from None
    _STRATEGIES[cls.name] = cls
    return cls


register_strategy(ExhaustiveSearch)
register_strategy(RandomSearch)
register_strategy(GuidedSearch)


def strategy_names() -> list[str]:
    return list(_STRATEGIES)


def make_strategy(name: str, seed: int = 0,
                  context: StrategyContext | None = None) -> SearchStrategy:
    """A strategy by name, built as every strategy is: ``cls(seed, context)``.

    Raises:
        InputError: no strategy has that name, or the strategy cannot work without the
            context it needs (the guided one needs the model).
    """
    if name not in _STRATEGIES:
        raise InputError(f"unknown --strategy {name!r} (known: {', '.join(_STRATEGIES)})")
    return _STRATEGIES[name](seed, context)

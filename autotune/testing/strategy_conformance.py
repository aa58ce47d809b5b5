"""A conformance suite every search strategy's tests subclass, so each proves the same contract.

Subclass ``StrategyConformance`` and override the ``make`` fixture: it returns a function
``seed -> strategy``. The suite drives the strategy over a small synthetic world (six
configs on two backends, made-up figures, some configs that always fail), so even the
guided strategy, which fits a cost model per proposal, runs in seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from autotune.config import FP32, QuantConfig
from autotune.search import Candidate, SearchStrategy, StrategyContext
from autotune.target import Target
from autotune.trial import Trial

# A config whose compile always fails in this world: a strategy must handle failed trials.
FAILING = QuantConfig.from_text("w:int8:sym:per_tensor a:uint8:asym cal:entropy")


def world_configs() -> list[QuantConfig]:
    """fp32, bf16 and int8 configs of several schemes and calibrations."""
    configs = [FP32, QuantConfig("bf16", "bf16")]
    for granularity, scheme in itertools.product(("per_channel", "per_tensor"), ("sym", "asym")):
        calibration = "minmax" if granularity == "per_channel" else "entropy"
        configs.append(QuantConfig.from_text(
            f"w:int8:sym:{granularity} a:uint8:{scheme} cal:{calibration}"))
    return configs


def world_target(name: str = "conformance-cpu") -> Target:
    """A made-up local CPU target with roofline peaks (nothing is compiled for it)."""
    return Target(name=name, description="synthetic target of the strategy conformance suite",
                  device="cpu", arch="x86_64", cores=1, peak_gops={"fp32": 100.0, "int8": 400.0},
                  memory_bandwidth_gbs=10.0, path=Path(f"{name}.toml"))


def world_candidates(target: Target) -> list[Candidate]:
    """Every config on two backends: the same config on two backends is two candidates."""
    return [Candidate(config, backend, target)
            for backend in ("openvino", "tvm") for config in world_configs()]


def synthetic_trial(candidate: Candidate, run_id: str = "conformance") -> Trial:
    """Deterministic made-up figures; ``FAILING`` (and bf16 on tvm) fail as real ones do."""
    config = candidate.config
    base = dict(run_id=run_id, model="tiny", model_hash="h", config=config,
                backend=candidate.backend, target=candidate.target.name)
    if config == FAILING:
        return Trial(**base, status="compile_error", error="synthetic compile failure")
    if config.weight_dtype == "bf16" and candidate.backend == "tvm":
        return Trial(**base, status="unsupported", error="no bf16 on this backend")
    if config.is_float:
        latency, error = {"fp32": (10.0, 0.0), "bf16": (5.0, 1e-5)}[config.weight_dtype]
    else:
        latency = (1.0 if config.activation_scheme == "symmetric" else 3.0) + (
            0.1 * ("minmax", "entropy").index(config.calibration))
        error = 1e-4 * (3.0 if config.granularity == "per_tensor" else 1.0)
    latency *= 1.0 if candidate.backend == "openvino" else 1.5
    return Trial(**base, status="ok", latencies_ms=[latency, latency * 1.01],
                 latency_median_ms=latency, cosine=1.0 - error, accuracy_drop=0.0,
                 memory_bytes=1 << 20)


def drive(strategy: SearchStrategy, candidates: Sequence[Candidate], budget: int,
          history: Sequence[Trial] = ()) -> list[Trial]:
    """What the driver does: propose, measure, append, until the budget is spent or nothing
    is proposed. Checks every proposal against the contract on the way."""
    history = list(history)
    given = {candidate.key for candidate in candidates}
    spent = 0
    while spent < budget:
        batch = strategy.propose(candidates, history, budget - spent)
        if not batch:
            break
        keys = [candidate.key for candidate in batch]
        assert len(batch) <= budget - spent, f"{len(batch)} proposed, {budget - spent} left"
        assert len(set(keys)) == len(keys), f"a candidate proposed twice in one batch: {keys}"
        assert set(keys) <= given, f"proposed candidates that were not given: {set(keys) - given}"
        measured = {trial.key for trial in history}
        assert not set(keys) & measured, f"proposed measured candidates: {set(keys) & measured}"
        for candidate in batch:
            history.append(synthetic_trial(candidate))
        spent += len(batch)
    return history


class StrategyConformance:
    """The contract of ``SearchStrategy.propose(candidates, history, budget)``."""

    @pytest.fixture
    def make(self, context) -> Callable[[int], SearchStrategy]:
        """A function ``seed -> strategy``; subclasses override it."""
        raise NotImplementedError("override the `make` fixture: seed -> strategy")

    @pytest.fixture
    def target(self) -> Target:
        return world_target()

    @pytest.fixture
    def candidates(self, target) -> list[Candidate]:
        return world_candidates(target)

    @pytest.fixture
    def context(self, tmp_path_factory, target) -> StrategyContext:
        """The model (a tiny CNN, for strategies that read its graph) and the peaks."""
        from autotune.roofline import Peaks
        from autotune.testing.models import tiny_cnn

        model = tiny_cnn(tmp_path_factory.mktemp("strategy") / "tiny.onnx")
        return StrategyContext(model, peaks={target.name: Peaks(dict(target.peak_gops),
                                                                target.memory_bandwidth_gbs,
                                                                "target")})

    def test_measures_every_candidate_once_then_proposes_nothing(self, make, candidates):
        strategy = make(0)
        history = drive(strategy, candidates, budget=len(candidates) + 5)
        assert sorted(trial.key for trial in history) == sorted(c.key for c in candidates)
        assert strategy.propose(candidates, history, 5) == []

    def test_never_exceeds_the_budget(self, make, candidates):
        strategy = make(0)
        assert strategy.propose(candidates, [], 0) == []
        assert 1 <= len(strategy.propose(candidates, [], 1)) <= 1
        history = drive(strategy, candidates, budget=5)
        assert len(history) == 5
        assert len(strategy.propose(candidates, history, 2)) <= 2
        assert strategy.propose(candidates, history, 0) == []

    def test_proposes_nothing_when_everything_is_measured(self, make, candidates):
        everything = [synthetic_trial(candidate) for candidate in candidates]
        assert make(0).propose(candidates, everything, 5) == []
        assert make(0).propose([], [], 5) == []

    def test_proposes_only_the_given_candidates(self, make, candidates):
        # Half the candidates, with trials of the other half (and of candidates never given)
        # in the history: only the given, unmeasured ones may come back.
        given = candidates[::2]
        history = [synthetic_trial(candidate) for candidate in candidates[1::2]]
        proposed = drive(make(0), given, budget=len(candidates), history=history)[len(history):]
        assert sorted(trial.key for trial in proposed) == sorted(c.key for c in given)

    def test_same_seed_same_proposals(self, make, candidates):
        first = drive(make(3), candidates, budget=8)
        second = drive(make(3), candidates, budget=8)
        assert [trial.key for trial in first] == [trial.key for trial in second]

    def test_failed_trials_count_as_measured(self, make, candidates):
        failed = [trial for trial in map(synthetic_trial, candidates) if not trial.ok]
        assert {trial.status for trial in failed} == {"compile_error", "unsupported"}
        failed.append(synthetic_trial(candidates[0]))
        failed[-1].status, failed[-1].error = "timeout", "no result after 1 s"
        failed[-1].latencies_ms, failed[-1].latency_median_ms = [], None
        # A history of failures only (nothing to learn a latency from), then the rest.
        proposed = drive(make(0), candidates, budget=len(candidates), history=failed)
        done = {trial.key for trial in failed}
        rest = [trial.key for trial in proposed[len(failed):]]
        assert not done & set(rest), "a failed trial was proposed again"
        assert sorted(rest) == sorted(c.key for c in candidates if c.key not in done)

"""Every registered search strategy, made by name, passes the strategy conformance suite."""

from __future__ import annotations

import pytest

from autotune.errors import InputError
from autotune.search import (
    ExhaustiveSearch,
    GuidedSearch,
    RandomSearch,
    StrategyContext,
    make_strategy,
    register_strategy,
    strategy_names,
)
from autotune.testing.strategy_conformance import StrategyConformance, drive


def _small_cost_model(seed: int):
    from autotune.costmodel import XGBoostCostModel

    return XGBoostCostModel(members=2, rounds=20, seed=seed)  # enough for a dozen candidates


class TestRegisteredStrategy(StrategyConformance):
    """The suite once per registered name, each strategy made as the CLI makes it."""

    @pytest.fixture(params=strategy_names())
    def make(self, request, context):
        if request.param == "guided":
            pytest.importorskip("xgboost", reason="the guided strategy's cost model needs it")

        def make(seed: int):
            strategy = make_strategy(request.param, seed, context)
            if isinstance(strategy, GuidedSearch):
                # The default model (5 members x 150 rounds) takes ~1 s a fit on a busy CI
                # core; a smaller one keeps the suite in seconds and tests the same strategy.
                strategy.model_factory = lambda: _small_cost_model(seed)
            return strategy

        return make


class TestGuidedInBatches(StrategyConformance):
    """The guided strategy with two seeds and batches of two proposals."""

    @pytest.fixture
    def make(self, context):
        pytest.importorskip("xgboost", reason="the guided strategy's cost model needs it")
        return lambda seed: GuidedSearch(seed, context, seeds=2, batch=2,
                                         model_factory=lambda: _small_cost_model(seed))


def test_every_registered_name_is_made_by_one_lookup(tmp_path):
    context = StrategyContext(tmp_path / "model.onnx")
    expected = {"exhaustive": ExhaustiveSearch, "random": RandomSearch, "guided": GuidedSearch}
    assert strategy_names() == list(expected)
    for name in strategy_names():
        strategy = make_strategy(name, 7, context)
        assert type(strategy) is expected[name] and strategy.name == name
    assert make_strategy("random", 7).seed == 7  # the seed reaches the strategy
    assert make_strategy("guided", 7, context).context is context  # and the context


def test_unknown_names_and_duplicates_are_refused():
    with pytest.raises(InputError, match="unknown --strategy 'annealing'.*exhaustive"):
        make_strategy("annealing")
    with pytest.raises(ValueError, match="already registered"):
        register_strategy(RandomSearch)

    class NoSeed:
        name = "no-seed"

        def __init__(self) -> None:
            pass

    with pytest.raises(ValueError, match=r"must take \(seed, context\)"):
        register_strategy(NoSeed)
    assert "no-seed" not in strategy_names()


@pytest.mark.readme_claim("autotune run --space full --budget 20 --strategy random")
def test_random_seeds_differ_and_baselines_come_first():
    from autotune.config import FP32
    from autotune.testing.strategy_conformance import world_candidates, world_target

    candidates = world_candidates(world_target())
    orders = {tuple(t.key for t in drive(RandomSearch(seed), candidates, len(candidates)))
              for seed in range(4)}
    assert len(orders) > 1  # the seed changes the order
    for order in orders:
        assert {key[0] for key in order[:2]} == {FP32.id}  # fp32 on both backends first

"""Hypervolume functions on synthetic fronts, and the guided strategy's contract."""

from __future__ import annotations

import itertools

import pytest

from autotune.config import FP32, QuantConfig
from autotune.pareto import (
    expected_hypervolume_improvement,
    fidelity_objective,
    hypervolume_2d,
    hypervolume_improvement,
    pareto_front,
    reference_point,
)
from autotune.roofline import Peaks
from autotune.search import (
    Candidate,
    GuidedSearch,
    StrategyContext,
    diverse_seeds,
    make_strategy,
    strategy_names,
)
from autotune.settings import RunSpec
from autotune.store import Run, Store, now
from autotune.target import load_target
from autotune.trial import Trial

REFERENCE = (4.0, 4.0)


def test_hypervolume_of_a_staircase():
    # Three steps of a staircase under (4, 4): strips of 1x1, 1x2 and 1x3.
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1)], REFERENCE) == pytest.approx(6.0)
    # Dominated points, duplicates and points beyond the reference change nothing.
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1), (2.5, 2.5), (2, 2), (5, 0), (0, 5)],
                          REFERENCE) == pytest.approx(6.0)
    assert hypervolume_2d([], REFERENCE) == 0.0
    assert hypervolume_2d([(0, 0)], REFERENCE) == pytest.approx(16.0)


def test_hypervolume_matches_a_grid_count_on_random_points():
    import random

    rng = random.Random(3)
    for _ in range(20):
        points = [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(rng.randint(1, 8))]
        # Count the unit cells of a 10x10 grid that some point dominates.
        cells = sum(any(x <= i and y <= j for x, y in points)
                    for i, j in itertools.product(range(10), range(10)))
        assert hypervolume_2d(points, (10, 10)) == pytest.approx(cells)
        front = [points[i] for i in pareto_front(points)]
        assert hypervolume_2d(front, (10, 10)) == pytest.approx(cells)


def test_improvement_and_its_expectation():
    front = [(1, 3), (3, 1)]
    assert hypervolume_improvement((2, 2), front, REFERENCE) == pytest.approx(1.0)
    assert hypervolume_improvement((3, 3), front, REFERENCE) == 0.0  # dominated
    assert hypervolume_improvement((0, 0), [], REFERENCE) == pytest.approx(16.0)
    # Half the outcomes add 1, half add nothing: the expectation is 0.5.
    samples = [(2, 2), (3, 3)]
    assert expected_hypervolume_improvement(samples, front, REFERENCE) == pytest.approx(0.5)
    assert expected_hypervolume_improvement([], front, REFERENCE) == 0.0


def test_reference_point_and_fidelity_axis():
    points = [(1.0, -5.0), (3.0, -3.0)]
    assert reference_point(points) == pytest.approx((3.2, -2.8))  # nadir + 10% of ranges
    assert reference_point([(2.0, -4.0)]) == pytest.approx((2.2, -3.6))  # no range: 10%
    for point in points:
        assert hypervolume_improvement(point, [], reference_point(points)) > 0
    assert fidelity_objective(0.0) == pytest.approx(-7.0)  # the floor: identical to fp32
    assert fidelity_objective(1e-4) < fidelity_objective(1e-3)
    assert fidelity_objective(1e-3) - fidelity_objective(1e-4) == pytest.approx(1.0, abs=1e-3)


# The guided strategy on a synthetic world


def _configs() -> list[QuantConfig]:
    configs = [FP32, QuantConfig("bf16", "bf16")]
    for granularity, scheme, calibration in itertools.product(
            ("per_channel", "per_tensor"), ("sym", "asym"), ("minmax", "percentile", "entropy")):
        configs.append(QuantConfig.from_text(
            f"w:int8:sym:{granularity} a:uint8:{scheme} cal:{calibration}"))
    return configs


def _measure(candidate: Candidate, run_id: str = "run") -> Trial:
    """Deterministic made-up figures: symmetric activations are fast, per-tensor is lossy."""
    config = candidate.config
    if config.is_float:
        latency, error = {"fp32": (10.0, 0.0), "bf16": (5.0, 1e-5)}[config.weight_dtype]
    else:
        latency = (1.0 if config.activation_scheme == "symmetric" else 3.0) + (
            0.1 * ("minmax", "percentile", "entropy").index(config.calibration))
        error = 1e-4 * (3.0 if config.granularity == "per_tensor" else 1.0)
    return Trial(run_id=run_id, model="tiny", model_hash="h", config=config,
                 backend=candidate.backend, target=candidate.target.name, status="ok",
                 latency_median_ms=latency, cosine=1.0 - error, accuracy_drop=0.0,
                 memory_bytes=1 << 20)


@pytest.fixture
def world(tiny_model):
    target = load_target("host-cpu")
    candidates = [Candidate(config, "openvino", target) for config in _configs()]
    context = StrategyContext(tiny_model, peaks={target.name: Peaks({"fp32": 100.0}, 10.0,
                                                                     "target")})
    return candidates, context


def _small_model():
    from autotune.costmodel import XGBoostCostModel

    return XGBoostCostModel(members=3, rounds=40)  # enough for this world, and quick


def _drive(strategy, candidates, budget: int) -> list[Trial]:
    """What the driver does: propose, measure, append, until the budget is spent."""
    history: list[Trial] = []
    while len(history) < budget:
        batch = strategy.propose(candidates, history, budget - len(history))
        if not batch:
            break
        assert len(batch) <= budget - len(history)
        for candidate in batch:
            assert candidate.key not in {trial.key for trial in history}
            history.append(_measure(candidate))
    return history


def test_guided_proposes_only_unmeasured_candidates_within_budget(world):
    pytest.importorskip("xgboost")
    candidates, context = world
    strategy = GuidedSearch(0, context, seeds=3, model_factory=_small_model)
    history = _drive(strategy, candidates, budget=7)
    assert len(history) == 7 == len({trial.key for trial in history})
    assert history[0].config == FP32  # the baseline comes first
    assert strategy.last_model is not None and strategy.last_model.counts.ok >= 3
    assert strategy.propose(candidates, history, 0) == []
    everything = [_measure(c) for c in candidates]
    assert strategy.propose(candidates, everything, 5) == []


@pytest.mark.readme_claim("--strategy guided: expected hypervolume improvement of the (latency, "
                          "fidelity) front")
def test_guided_finds_the_fast_configs_of_the_synthetic_world(world):
    pytest.importorskip("xgboost")
    candidates, context = world
    strategy = GuidedSearch(1, context, seeds=3, model_factory=_small_model)
    history = _drive(strategy, candidates, budget=7)
    # Four of the guided picks: the model must learn that symmetric activations are fast.
    picked = history[3:]
    assert sum(trial.config.activation_scheme == "symmetric" for trial in picked) >= 3


def test_seeds_are_spread_out(world):
    candidates, _ = world
    seeds = diverse_seeds(candidates, 4, seed=0)
    assert seeds[0].config == FP32 and len(seeds) == 4
    # Every precision of the space is seeded: fp32, bf16 and int8.
    assert {c.config.weight_dtype for c in seeds} == {"fp32", "bf16", "int8"}
    assert seeds[3].config.is_quantized  # then the config farthest from the seeds
    assert diverse_seeds(candidates, 4, seed=0) == seeds  # seeded: same seeds every time


@pytest.mark.readme_claim("what guided search predicted is stored in the predictions table, never "
                          "as a trial")
def test_predictions_are_stored_apart_from_trials(world, tmp_path):
    pytest.importorskip("xgboost")
    candidates, context = world
    store = Store(f"sqlite:///{tmp_path}/g.db")
    store.create_run(Run(id="run", created_at=now(), finished_at=None, status="running",
                         model="tiny", model_path=str(context.model_path), model_hash="h",
                         space="s", metric="fidelity", synthetic_data=True,
                         reference_accuracy=None, settings=RunSpec(), host={}, versions={}))
    strategy = GuidedSearch(0, StrategyContext(context.model_path, store, context.peaks,
                                               model_dir=tmp_path / "models"),
                            seeds=2, model_factory=_small_model)
    history = _drive(strategy, candidates, budget=4)
    predictions = store.predictions("run")
    assert len(predictions) == 2  # one per guided pick, none for the seeds
    assert [p.config for p in predictions] == [t.config for t in history[2:]]
    assert all(p.stage == "proposed" and p.model_version and p.trained_on >= 2
               and p.expected_hypervolume_improvement is not None for p in predictions)
    assert store.trials("run") == []  # nothing predicted is ever a trial
    from autotune.costmodel import XGBoostCostModel

    saved = XGBoostCostModel.load(tmp_path / "models" / "guided-run.json")
    assert saved.version == predictions[-1].model_version  # the model behind the last pick


def test_registry_has_every_strategy_and_guided_needs_the_model():
    from autotune.errors import InputError

    assert strategy_names() == ["exhaustive", "random", "guided"]
    with pytest.raises(InputError, match="needs the model"):
        make_strategy("guided", 0)


def _transformer_measure(candidate: Candidate) -> Trial:
    """Made-up figures of a transformer: plain int8 is fast and wrong, keeping LayerNorm and
    friends in float costs time, SmoothQuant (best at 0.75) fixes the accuracy at no cost."""
    config = candidate.config
    if config.is_float:
        latency, error = {"fp32": (10.0, 0.0), "bf16": (6.0, 1e-5)}[config.weight_dtype]
    elif config.activation_dtype == "fp32":
        latency, error = 8.0, 2e-3  # int4 weight-only
    else:
        latency, error = 3.0 + len(config.overrides) * 0.5, 1e-1 / (1 + 10 * len(config.overrides))
        if config.smoothquant_alpha is not None:
            error /= {0.5: 10.0, 0.75: 100.0, 0.95: 30.0}[config.smoothquant_alpha]
    return Trial(run_id="run", model="bert", model_hash="h", config=config,
                 backend=candidate.backend, target=candidate.target.name, status="ok",
                 latency_median_ms=latency, cosine=1.0 - error, accuracy_drop=0.0,
                 memory_bytes=1 << 20)


@pytest.mark.readme_claim("guided search over the transformer space proposes and predicts the "
                          "SmoothQuant configs")
def test_guided_search_learns_smoothquant_in_the_transformer_space(tmp_path):
    pytest.importorskip("xgboost")
    from autotune.costmodel import Workload, features
    from autotune.graph import analyze
    from autotune.space import load_space
    from autotune.zoo.shapes import BertShape, bert_encoder, random_bert_weights

    shape = BertShape(layers=1, hidden=32, heads=2, intermediate=64, vocab=50, max_positions=8)
    model = bert_encoder(tmp_path / "bert.onnx", random_bert_weights(shape, seed=0), shape,
                         seq_len=8)
    target = load_target("host-cpu")
    candidates = [Candidate(config, "openvino", target)
                  for config in load_space("transformer").configs]
    smoothed = [c for c in candidates if c.config.smoothquant_alpha is not None]
    assert len(smoothed) == 9
    profile = analyze(model)
    alphas = {features(Workload(profile, c.config, "openvino", target, None))[
        "smoothquant_alpha"] for c in smoothed}
    assert alphas == {0.5, 0.75, 0.95}  # the cost model tells the alphas apart
    peaks = Peaks({"fp32": 100.0}, 10.0, "target")
    strategy = GuidedSearch(0, StrategyContext(model, peaks={target.name: peaks}), seeds=4,
                            model_factory=_small_model)
    history: list[Trial] = []
    while len(history) < 9:
        batch = strategy.propose(candidates, history, 9 - len(history))
        history += [_transformer_measure(candidate) for candidate in batch]
    picked = [trial.config.label for trial in history]
    assert sum("sq" in label for label in picked[4:]) >= 3, picked[4:]
    # What it predicts for the SmoothQuant configs it has not measured: fast and accurate.
    measured = {trial.config for trial in history}
    left = [c for c in smoothed if c.config not in measured]
    plain = [c for c in candidates if c.config.activation_dtype == "uint8"
             and c.config.smoothquant_alpha is None and not c.config.overrides]
    predicted = strategy.last_model.predict([Workload(profile, c.config, c.backend, target, peaks)
                                             for c in left + plain])
    assert left and all(ms < 8.0 for ms in predicted.latency_ms[:len(left)])
    assert max(predicted.fidelity_error[:len(left)]) < min(predicted.fidelity_error[len(left):])

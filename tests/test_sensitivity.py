"""Per-layer sensitivity scans and the mixed-precision spaces built on them."""

from __future__ import annotations

import pytest

from autotune.config import QuantConfig
from autotune.errors import InputError
from autotune.sensitivity import (
    attach_sensitivity,
    expand_mixed,
    keep_in_float,
    mixed_configs,
    only_layer,
    scan,
)
from autotune.space import load_space, parse_space
from autotune.trial import Trial

BASE = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:sym cal:minmax")


@pytest.fixture(scope="module")
def dataset(tiny_model):
    from autotune.data import random_dataset

    return random_dataset(tiny_model, calibration_count=8, evaluation_count=16)


@pytest.fixture(scope="module")
def tiny_scan(tiny_model, dataset, tmp_path_factory):
    return scan(tiny_model, BASE, dataset, tmp_path_factory.mktemp("cache"))


@pytest.mark.readme_claim("a sensitivity scan quantizes each layer alone, scored against fp32")
def test_scan_has_one_entry_per_compute_layer(tiny_scan):
    assert [s.layer for s in tiny_scan.layers] == ["conv1", "conv2", "fc"]
    for entry in tiny_scan.layers:
        assert entry.fidelity_error > 0  # quantizing any layer moves the outputs a little
        assert entry.sqnr_db > 10 and entry.accuracy_drop is None  # random data: no labels
    assert sorted(tiny_scan.ranking()) == ["conv1", "conv2", "fc"]
    errors = [s.fidelity_error for s in sorted(tiny_scan.layers,
                                                key=lambda s: tiny_scan.ranking().index(s.layer))]
    assert errors == sorted(errors, reverse=True)  # most sensitive first


def test_scan_is_cached_and_its_configs_quantize_one_layer(tiny_model, dataset, tmp_path):
    first = scan(tiny_model, BASE, dataset, tmp_path)
    assert list((tmp_path / "sensitivity").glob("*.json"))
    assert scan(tiny_model, BASE, dataset, tmp_path) == first
    only = only_layer(BASE, "conv2", ["conv1", "conv2", "fc"])
    assert dict(only.overrides) == {"conv1": "fp32", "fc": "fp32"}
    with pytest.raises(InputError, match="integer base"):
        scan(tiny_model, QuantConfig("bf16", "bf16"), dataset, tmp_path)


def test_mixed_configs_keep_the_top_layers():
    ranking = ["conv2", "fc", "conv1"]
    prefix = mixed_configs(BASE, ranking, 2)
    assert [dict(c.overrides) for c in prefix] == [{"conv2": "fp32"},
                                                   {"conv2": "fp32", "fc": "fp32"}]
    assert len(mixed_configs(BASE, [*ranking, "conv3"], 3, "all")) == 7  # non-empty subsets
    # Keeping every layer would be the float model: one layer always stays quantized.
    assert len(mixed_configs(BASE, ranking, 5)) == 2
    assert keep_in_float(BASE, ["fc"]).text.endswith("keep:fc=fp32")


def _space_toml(tmp_path, mixed: str):
    path = tmp_path / "m.toml"
    path.write_text(f'description = "test"\n[mixed]\n{mixed}\n')
    return path


def test_mixed_table_parses_and_rejects_typos(tmp_path):
    import tomllib

    space = load_space("mixed")
    assert space.mixed is not None and space.mixed.max_kept >= 1
    assert all(base in space.configs for base in space.mixed.bases)
    for body, message in ((f'bases = ["{BASE.text}"]\nmax_kep = 2', "max_kep"),
                          ('bases = ["bf16"]\nmax_kept = 2', "base must quantize"),
                          (f'bases = ["{BASE.text}"]\nmax_kept = 0', "positive"),
                          (f'bases = ["{BASE.text}"]\nmax_kept = 1\nsubsets = "some"',
                           "subsets")):
        path = _space_toml(tmp_path, body)
        with pytest.raises(InputError, match=message):
            parse_space(tomllib.loads(path.read_text()), path)


@pytest.mark.readme_claim("[mixed] adds, per base config, the k most sensitive layers kept in fp32")
def test_expand_mixed_adds_configs_from_the_scan(tiny_model, dataset, tmp_path):
    import tomllib

    path = _space_toml(tmp_path, f'bases = ["{BASE.text}"]\nmax_kept = 2')
    space = parse_space(tomllib.loads(path.read_text()), path)
    expanded = expand_mixed(space, tiny_model, dataset, tmp_path / "cache")
    found = expanded.scans[BASE.id]
    kept = [dict(c.overrides) for c in expanded.space.configs if c.overrides]
    assert kept == [{found.ranking()[0]: "fp32"},
                    {layer: "fp32" for layer in found.ranking()[:2]}]
    assert expanded.space.mixed is None
    trial = Trial(run_id="r", model="m", model_hash="h", config=BASE, backend="openvino",
                  target="host-cpu", status="ok")
    attach_sensitivity(trial, expanded.scans)
    assert set(trial.sensitivity.drops) == {"conv1", "conv2", "fc"}
    assert trial.sensitivity.metric == "fidelity_error"  # random data: no task
    fixed = _space_toml(tmp_path, f'bases = ["{BASE.text}"]\nmax_kept = 1\nlayers = ["nope"]')
    with pytest.raises(InputError, match="nope"):
        expand_mixed(parse_space(tomllib.loads(fixed.read_text()), fixed), tiny_model, dataset,
                     tmp_path / "cache")


@pytest.mark.readme_claim("autotune sensitivity [--model M] [--json]: per-layer sensitivity scan")
def test_sensitivity_command_ranks_the_layers(workspace, tiny_model, capsys):
    import json

    from autotune.cli import main

    assert main(["sensitivity", "--model", str(tiny_model), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert sorted(answer["ranking"]) == ["conv1", "conv2", "fc"]
    assert answer["base"] == BASE.text and len(answer["layers"]) == 3
    assert list((workspace / "results" / "cache" / "sensitivity").glob("*.json"))  # cached
    assert main(["sensitivity", "--model", str(tiny_model), "--config", "w:int9"]) == 2

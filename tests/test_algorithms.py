"""The algorithm dimension (SmoothQuant, bias correction, AWQ-style int4), realised by NNCF.

Identity first: every config made before the dimension existed keeps its text and id, so the
trials in every store still match. Then the real thing on the tests' tiny models: NNCF's
SmoothQuant and bias correction on ONNX, AWQ in OpenVINO's weight compression.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from autotune.config import ConfigError, QuantConfig
from autotune.data import random_dataset
from autotune.errors import InputError, UnsupportedConfig
from autotune.quantize import quantize
from autotune.zoo.shapes import BertShape, bert_encoder, random_bert_weights

PLAIN = "w:int8:sym:per_tensor a:uint8:asym cal:minmax"
SHAPE = BertShape(layers=1, hidden=64, heads=2, intermediate=128, vocab=100, max_positions=16)

# Texts and ids as the suite wrote them before the algorithm dimension existed.
OLD_IDS = [
    ("fp32", "4fc86248cb"),
    ("bf16", "1946127fcd"),
    ("w:int8:sym:per_channel a:uint8:asym cal:minmax", "e0c77a5341"),
    ("w:int8:sym:per_tensor a:uint8:asym cal:minmax", "5fed0ae83e"),
    ("w:int8:asym:per_tensor a:int8:sym cal:percentile", "e792ee4ddc"),
    ("w:int8:sym:per_channel a:uint8:asym cal:minmax "
     "keep:op:LayerNormalization=fp32,op:Softmax=fp32", "060796ca70"),
    ("w:int4:sym:per_group:128 a:fp32", "23246e5855"),
    ("w:int4:asym:per_channel a:bf16", "82a04a9a3a"),
    ("w:int8:sym:per_channel a:fp32", "b1158dd3f0"),
]


@pytest.mark.parametrize(("text", "config_id"), OLD_IDS)
@pytest.mark.readme_claim("configs without an algorithm keep their text, id and onnxruntime "
                          "quantizer")
def test_configs_without_an_algorithm_keep_their_text_id_and_stored_form(text, config_id):
    config = QuantConfig.from_text(text)
    assert (config.text, config.id) == (text, config_id)
    assert config.algorithm_text == ""
    if "a:fp" in text:  # weight-only: naming the default algorithm is the same config
        assert QuantConfig.from_text(f"{text} alg:rtn") == config
    stored = config.to_dict()
    assert not {"smoothquant_alpha", "bias_correction", "weight_algorithm",
                "int4_ratio"} & set(stored)
    assert QuantConfig.from_dict(json.loads(json.dumps(stored))) == config


def test_algorithm_fields_round_trip_through_text_and_dict():
    for text in (f"{PLAIN} alg:bc", f"{PLAIN} alg:sq0.75", f"{PLAIN} alg:sq0.5+bc",
                 "w:int4:sym:per_group:32 a:fp32 alg:awq",
                 "w:int4:asym:per_channel a:fp32 alg:scale_estimation",
                 "w:int4:sym:per_group:128 a:fp32 alg:gptq+r0.8",
                 "w:int4:sym:per_group:32 a:int8_dynamic alg:r0.5"):
        config = QuantConfig.from_text(text)
        assert config.text == text and config.id != QuantConfig.from_text(
            text.split(" alg:")[0]).id
        assert QuantConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # Seven significant digits: the text keeps them all (``:g`` would round to six).
    for text in (f"{PLAIN} alg:sq0.1234567", "w:int4:sym:per_group:32 a:fp32 alg:r0.1234567"):
        config = QuantConfig.from_text(text)
        assert config.text == text and QuantConfig.from_text(config.text) == config
        assert config.id != QuantConfig.from_text(text.replace("1234567", "123457")).id
    both = QuantConfig.from_text(f"{PLAIN} alg:sq0.75+bc")
    assert (both.smoothquant_alpha, both.bias_correction) == (0.75, True)
    assert both.label.endswith("sq0.75+bc")


@pytest.mark.parametrize(("fields", "named"), [
    ({"smoothquant_alpha": 1.5}, "smoothquant_alpha"),
    ({"smoothquant_alpha": 0}, "smoothquant_alpha"),
    ({"bias_correction": "yes"}, "bias_correction"),
    ({"weight_algorithm": "awq"}, "weight_algorithm"),
    ({"weight_algorithm": "magic"}, "weight_algorithm"),
])
def test_invalid_algorithm_fields_name_the_field(fields, named):
    with pytest.raises(ConfigError, match=named):
        QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_tensor", None, "minmax",
                    **fields)


def test_int4_ratio_is_for_int4_weight_only_configs_and_names_its_field():
    config = QuantConfig.from_text("w:int4:asym:per_channel a:fp32 alg:r0.8")
    assert (config.weight_algorithm, config.int4_ratio) == ("rtn", 0.8)
    assert config.label.endswith("r0.8")
    int4 = dict(weight_dtype="int4", activation_dtype="fp32", weight_scheme="symmetric",
                granularity="per_group", group_size=32)
    for ratio in (0, 1, 1.5, True, "0.8"):
        with pytest.raises(ConfigError, match="int4_ratio"):
            QuantConfig(**int4, int4_ratio=ratio)
    with pytest.raises(ConfigError, match="int4_ratio"):
        QuantConfig("bf16", "bf16", int4_ratio=0.8)
    for text in ("w:int8:sym:per_channel a:fp32 alg:r0.8", f"{PLAIN} alg:r0.8",
                 "w:int4:sym:per_group:32 a:fp32 alg:r1", "w:int4:sym:per_group:32 a:fp32 alg:rx"):
        with pytest.raises(ConfigError, match="int4_ratio"):
            QuantConfig.from_text(text)


def test_the_cost_model_and_the_roofline_know_the_int4_ratio(one_layer_bert):
    from autotune.costmodel import Workload, features
    from autotune.graph import analyze, config_cost
    from autotune.target import load_target

    profile, target = analyze(one_layer_bert), load_target("host-cpu")
    texts = ("w:int4:sym:per_group:32 a:fp32", "w:int4:sym:per_group:32 a:fp32 alg:r0.5",
             "w:int8:sym:per_channel a:fp32")
    configs = [QuantConfig.from_text(text) for text in texts]
    ratios = [features(Workload(profile, config, "openvino", target, None))["int4_ratio"]
              for config in configs]
    assert ratios == [1.0, 0.5, 0.0]
    # Half the weights int8: the weight bytes lie between all-int4's and all-int8's.
    all_int4, half, all_int8 = (config_cost(profile, config).weight_bytes
                                for config in configs)
    assert all_int4 < half < all_int8


def test_algorithms_need_the_right_kind_of_config():
    with pytest.raises(ConfigError, match="smoothquant_alpha"):
        QuantConfig.from_text("w:int4:sym:per_group:32 a:fp32 alg:sq0.5")
    with pytest.raises(ConfigError, match="bias_correction"):
        QuantConfig("bf16", "bf16", bias_correction=True)
    with pytest.raises(ConfigError, match="unknown algorithm"):
        QuantConfig.from_text(f"{PLAIN} alg:foo")


@pytest.mark.readme_claim("--space algorithms; the transformer space adds SmoothQuant")
def test_algorithms_space_and_transformer_space():
    from autotune.space import load_space

    texts = {config.text for config in load_space("algorithms").configs}
    for granularity in ("per_tensor", "per_channel"):
        base = f"w:int8:sym:{granularity} a:uint8:asym cal:minmax"
        assert {base, f"{base} alg:bc", f"{base} alg:sq0.5", f"{base} alg:sq0.75",
                f"{base} alg:sq0.95"} <= texts
    assert {"w:int4:sym:per_group:128 a:fp32", "w:int4:sym:per_group:128 a:fp32 alg:awq"} <= texts
    transformer = {c.smoothquant_alpha for c in load_space("transformer").configs}
    assert transformer == {None, 0.5, 0.75, 0.95}


def test_a_space_with_a_misspelt_algorithm_names_file_and_field(tmp_path):
    from autotune.space import load_space

    path = tmp_path / "bad.toml"
    path.write_text('[integer]\nweight_dtypes = ["int8"]\nactivation_dtypes = ["uint8"]\n'
                    'activation_schemes = ["asymmetric"]\ngranularities = ["per_tensor"]\n'
                    'calibrations = ["minmax"]\nalgorithms = ["rtn", "sq2"]\n')
    with pytest.raises(InputError, match=r"bad.toml.*integer.algorithms.*smoothquant_alpha"):
        load_space(str(path))


@pytest.mark.readme_claim("NNCF has no entropy or mse calibration, so those answer unsupported")
def test_entropy_calibration_with_bias_correction_is_unsupported(tiny_model, tmp_path):
    config = QuantConfig.from_text("w:int8:sym:per_tensor a:uint8:asym cal:entropy alg:bc")
    with pytest.raises(UnsupportedConfig, match="NNCF has no entropy calibration"):
        quantize(tiny_model, config, [], tmp_path)
    awq8 = QuantConfig.from_text("w:int8:sym:per_channel a:fp32 alg:awq")
    with pytest.raises(UnsupportedConfig, match="awq is for int4"):
        quantize(tiny_model, awq8, [], tmp_path)


@pytest.mark.openvino
@pytest.mark.readme_claim("alg:bc: NNCF's bias correction")
def test_bias_correction_brings_a_tiny_cnn_closer_to_fp32(tiny_model, tmp_path):
    """Measured first (seeds 0-2 of the tiny CNN): bias correction cut the output MSE against
    fp32 by 3-4000x against onnxruntime's plain per-tensor model, and 2-10x against NNCF's
    own model without it."""
    from autotune.accuracy import onnxruntime_outputs
    from autotune.backends.openvino import OpenVINOBackend
    from autotune.measure import MeasurementProtocol
    from autotune.target import load_target

    dataset = random_dataset(tiny_model, calibration_count=16, evaluation_count=16)
    plain = quantize(tiny_model, QuantConfig.from_text(PLAIN), dataset.calibration,
                     tmp_path / "cache")
    corrected = quantize(tiny_model, QuantConfig.from_text(f"{PLAIN} alg:bc"),
                         dataset.calibration, tmp_path / "cache")
    assert corrected.fresh and corrected.path != plain.path and "nncf" in corrected.path.name
    assert corrected.calibration_samples == 16
    reference = onnxruntime_outputs(tiny_model, dataset.evaluation)
    errors = {}
    for name, model in (("plain", plain), ("bc", corrected)):
        errors[name] = np.mean((onnxruntime_outputs(model.path, dataset.evaluation)
                                - reference) ** 2)
    assert errors["bc"] < 0.5 * errors["plain"], errors
    # OpenVINO reads NNCF's QDQ model and runs it in integer kernels.
    host = load_target("host-cpu")
    (tmp_path / "ov").mkdir()
    artifact = OpenVINOBackend().compile(corrected, host, tmp_path / "ov")
    assert artifact.details["float_fallback"] == []
    measured = OpenVINOBackend().measure(artifact, dataset.evaluation[:4], host,
                                         MeasurementProtocol(0, 1, 0.0))
    ov = np.stack([sample[0].reshape(-1) for sample in measured.outputs])
    assert np.mean((ov - reference[:4]) ** 2) < errors["plain"]


@pytest.fixture(scope="module")
def one_layer_bert(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("algorithms") / "bert1.onnx"
    return bert_encoder(path, random_bert_weights(SHAPE, seed=1), SHAPE, seq_len=16)


@pytest.mark.readme_claim("alg:sq0.75: SmoothQuant, alpha 0.75")
def test_smoothquant_quantizes_with_smoothing_scales(one_layer_bert, tmp_path):
    dataset = random_dataset(one_layer_bert, calibration_count=4, evaluation_count=2)
    base = "w:int8:sym:per_channel a:uint8:asym cal:minmax"
    plain = quantize(one_layer_bert, QuantConfig.from_text(base), dataset.calibration,
                     tmp_path)
    smoothed = quantize(one_layer_bert, QuantConfig.from_text(f"{base} alg:sq0.75"),
                        dataset.calibration, tmp_path)
    assert smoothed.path != plain.path and smoothed.calibration_samples == 4

    def scales(path: Path) -> dict[str, np.ndarray]:
        model = onnx.load(str(path))
        return {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer
                if init.name.endswith("nncf_smooth_quant_scale")}

    found = scales(smoothed.path)
    assert not scales(plain.path) and len(found) >= SHAPE.layers * 3
    # Real per-channel scales (not all ones), applied by Mul nodes on the MatMul inputs.
    assert any(not np.allclose(values, 1.0) for values in found.values())
    nodes = onnx.load(str(smoothed.path)).graph.node
    assert sum(node.op_type == "Mul" and node.name.endswith("nncf_smooth_quant")
               for node in nodes) == len(found)
    assert sum(node.op_type == "QuantizeLinear" for node in nodes) > 0


@pytest.mark.openvino
@pytest.mark.readme_claim("int4 alg:awq runs in OpenVINO's weight compression, on the calibration "
                          "split only")
def test_awq_compresses_with_calibration_data_only(one_layer_bert, tmp_path):
    from autotune.backends.openvino import OpenVINOBackend
    from autotune.target import load_target

    dataset = random_dataset(one_layer_bert, calibration_count=4, evaluation_count=2)
    host = load_target("host-cpu")
    awq = QuantConfig.from_text("w:int4:sym:per_group:32 a:fp32 alg:awq")
    model = quantize(one_layer_bert, awq, dataset.calibration, tmp_path / "cache")
    assert model.path == one_layer_bert and model.calibration_samples == 4
    assert model.weight_compression.algorithm == "awq"
    # The worker hands the model to the compile stage as JSON: the data's path goes along.
    from autotune.quantize import QuantizedModel, load_calibration

    again = QuantizedModel.from_json(json.loads(json.dumps(model.to_json())), awq)
    assert again == model
    saved = load_calibration(again.calibration_path)
    assert len(saved) == 4 and all(np.array_equal(saved[i][name], dataset.calibration[i][name])
                                   for i in range(4) for name in saved[i])
    (tmp_path / "awq").mkdir()
    artifact = OpenVINOBackend().compile(again, host, tmp_path / "awq")
    compression = artifact.details["weight_compression"]
    assert compression["algorithm"] == "awq" and compression["calibration_samples"] == 4
    assert compression["weights_int4"] > 0 and artifact.details["float_fallback"] == []
    assert compression["weights_transposed"] == 6 * SHAPE.layers  # read as [out, in]


@pytest.mark.openvino
@pytest.mark.readme_claim("int4 alg:gptq runs in NNCF's GPTQ, the MatMul weights stored as "
                          "[out, in] first")
def test_gptq_compresses_once_weights_are_stored_out_in(one_layer_bert, tmp_path):
    from autotune.backends.openvino import OpenVINOBackend
    from autotune.target import load_target

    dataset = random_dataset(one_layer_bert, calibration_count=2, evaluation_count=1)
    gptq = QuantConfig.from_text("w:int4:sym:per_group:32 a:fp32 alg:gptq")
    model = quantize(one_layer_bert, gptq, dataset.calibration, tmp_path / "cache")
    artifact = OpenVINOBackend().compile(model, load_target("host-cpu"), tmp_path)
    compression = artifact.details["weight_compression"]
    assert compression["algorithm"] == "gptq" and compression["calibration_samples"] == 2
    assert compression["weights_transposed"] == 6 * SHAPE.layers
    assert compression["weights_int4"] > 0 and artifact.details["float_fallback"] == []


@pytest.mark.readme_claim("calibration_samples in trials.csv says how many samples the quantizer "
                          "saw")
def test_calibration_samples_are_kept_with_a_trial():
    from autotune.trial import Trial

    trial = Trial("run", "m", "h", QuantConfig.from_text(f"{PLAIN} alg:bc"), "openvino",
                  "host-cpu", "ok", calibration_samples=200)
    facts = json.loads(json.dumps(trial.facts_json()))
    assert Trial.facts_from_json(facts)["calibration_samples"] == 200
    assert Trial.facts_from_json({})["calibration_samples"] == 0  # stored before it was kept


@pytest.mark.readme_claim("a sensitivity scan's base config may carry SmoothQuant or bias "
                          "correction; NNCF keeps the other layers out (its ignored scope)")
def test_a_smoothquant_base_scans_one_layer_at_a_time_and_keeps_layer_norm(one_layer_bert,
                                                                           tmp_path):
    from autotune.graph import analyze
    from autotune.sensitivity import keep_in_float, mixed_configs, only_layer

    dataset = random_dataset(one_layer_bert, calibration_count=4, evaluation_count=1)
    base = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax alg:sq0.75")
    graph = onnx.load(str(one_layer_bert)).graph
    weights = {init.name for init in graph.initializer}
    names = [layer.name for layer in analyze(one_layer_bert).compute_layers]
    layer = next(node.name for node in graph.node
                 if node.name in names and node.input[1] in weights)

    def dequantized(path: Path) -> dict[str, list[str]]:
        """Per node, which of its inputs come out of a DequantizeLinear."""
        nodes = onnx.load(str(path)).graph.node
        made_by = {output: node.op_type for node in nodes for output in node.output}
        return {node.name: [name for name in node.input
                            if made_by.get(name) == "DequantizeLinear"] for node in nodes}

    # The scan's model of one layer: the others in NNCF's ignored scope, not quantized.
    scanned = dequantized(quantize(one_layer_bert, only_layer(base, layer, names),
                                   dataset.calibration, tmp_path).path)
    assert [name for name in names if scanned.get(name)] == [layer]
    # A mixed config on it: int8 + SmoothQuant 0.75 with every LayerNorm kept in float.
    kept = keep_in_float(base, ["op:LayerNormalization"])
    assert kept.text == f"{base.text} keep:op:LayerNormalization=fp32"
    assert QuantConfig.from_text(kept.text) == kept
    found = dequantized(quantize(one_layer_bert, kept, dataset.calibration, tmp_path).path)
    norms = [node.name for node in graph.node if node.op_type == "LayerNormalization"]
    assert norms and not any(found[name] for name in norms)
    assert sum(bool(found.get(name)) for name in names) > 1
    assert all(c.smoothquant_alpha == 0.75 for c in mixed_configs(base, names, 2))

"""Weight-only int4 (and the transformer int8 options) on a small MatMul model, for real.

The model is a 2-layer BERT-like encoder built with onnx.helper (autotune.zoo.shapes):
MatMuls with 64 and 128 input channels, LayerNorm, Softmax and GELU, as in a transformer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autotune.config import FP32, ConfigError, QuantConfig
from autotune.data import random_dataset
from autotune.errors import InputError, UnsupportedConfig
from autotune.quantize import WeightCompression, kept_in_float, quantize
from autotune.zoo.shapes import BertShape, bert_encoder, random_bert_weights

pytestmark = pytest.mark.openvino

SHAPE = BertShape(layers=2, hidden=64, heads=2, intermediate=128, vocab=100, max_positions=16)
INT4_G32 = QuantConfig.from_text("w:int4:sym:per_group:32 a:fp32")
QUICK = ["--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05",
         "--no-progress"]


@pytest.fixture(scope="module")
def matmul_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("int4") / "tiny_bert.onnx"
    return bert_encoder(path, random_bert_weights(SHAPE, seed=1), SHAPE, seq_len=16)


@pytest.fixture(scope="module")
def host():
    from autotune.target import load_target

    return load_target("host-cpu")


def _compile(model_path: Path, config: QuantConfig, target, workdir: Path, calibration=()):
    from autotune.backends.openvino import OpenVINOBackend

    model = quantize(model_path, config, list(calibration), workdir / "cache")
    workdir.mkdir(parents=True, exist_ok=True)
    return OpenVINOBackend().compile(model, target, workdir)


def test_weight_only_configs_become_compression_requests(matmul_model, tmp_path):
    model = quantize(matmul_model, INT4_G32, [], tmp_path)
    assert model.path == matmul_model and model.precision_hint == "fp32"
    assert model.weight_compression == WeightCompression("int4", True, 32)
    asym = quantize(matmul_model, QuantConfig.from_text("w:int4:asym:per_channel a:bf16"), [],
                    tmp_path)
    assert asym.weight_compression == WeightCompression("int4", False, None)
    assert asym.precision_hint == "bf16"
    for text in ("w:int4:sym:per_tensor a:fp32", "w:int8:sym:per_group:32 a:fp32"):
        with pytest.raises(UnsupportedConfig):
            quantize(matmul_model, QuantConfig.from_text(text), [], tmp_path)


def test_int4_compiles_with_int4_weights_in_the_runtime_model(matmul_model, host, tmp_path):
    from autotune.backends.openvino import OpenVINOBackend
    from autotune.measure import MeasurementProtocol

    dataset = random_dataset(matmul_model, calibration_count=2, evaluation_count=4)
    fp32 = _compile(matmul_model, FP32, host, tmp_path / "fp32")
    int4 = _compile(matmul_model, INT4_G32, host, tmp_path / "int4")
    compression = int4.details["weight_compression"]
    assert compression["mode"] == "int4_sym" and compression["group_size"] == 32
    # NNCF keeps the embeddings and the last layer in int8; every other MatMul weight is int4.
    assert compression["weights_int4"] == 6 * SHAPE.layers - 1
    connected = [op for op in int4.details["op_precisions"] if op["type"] == "FullyConnected"]
    assert len(connected) == 6 * SHAPE.layers
    assert sum(op["precision"] == "i4" for op in connected) == 6 * SHAPE.layers - 1
    assert int4.details["float_fallback"] == []
    # Weight-only means float activations: the CPU plugin's dynamic quantization is off.
    assert int4.state["dynamic_quantization"] == 0 and "dynamic_quantization" not in fp32.state
    assert all(op["precision"] == "f32" for op in fp32.details["op_precisions"])
    assert int4.size_bytes < 0.6 * fp32.size_bytes

    protocol = MeasurementProtocol(warmup_runs=1, min_repeats=3, min_time_s=0.0)
    backend = OpenVINOBackend()
    outputs = [backend.measure(artifact, dataset.evaluation, host, protocol).outputs
               for artifact in (fp32, int4)]
    reference, candidate = (np.stack([sample[0].reshape(-1) for sample in run])
                            for run in outputs)
    cosine = np.sum(reference * candidate, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1))
    assert cosine.min() > 0.98 and np.abs(reference - candidate).max() > 0  # int4 for real


@pytest.mark.readme_claim("the OpenVINO backend rewrites each constant MatMul weight transposed "
                          "with transpose_b set: the same products")
def test_matmul_weights_stored_as_out_in_give_the_same_outputs(matmul_model):
    import openvino

    from autotune.backends.openvino import transpose_matmul_weights

    core = openvino.Core()
    feeds = random_dataset(matmul_model, calibration_count=1, evaluation_count=1).evaluation[0]

    def outputs(network) -> np.ndarray:
        return core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(feeds)[0]

    original, rewritten = (core.read_model(str(matmul_model)) for _ in range(2))
    assert transpose_matmul_weights(rewritten) == 6 * SHAPE.layers  # q, k, v, o, up, down
    weights = [op for op in rewritten.get_ops() if op.get_type_name() == "MatMul"
               and op.input_value(1).get_node().get_type_name() == "Constant"]
    assert len(weights) == 6 * SHAPE.layers
    assert all(op.get_attributes()["transpose_b"] for op in weights)
    np.testing.assert_allclose(outputs(rewritten), outputs(original), rtol=1e-5, atol=1e-6)
    assert transpose_matmul_weights(rewritten) == 0  # already [out, in]


@pytest.mark.readme_claim("alg:rR: NNCF's int4 ratio, the rest of the weights in int8")
def test_an_int4_ratio_keeps_more_layers_in_int8(matmul_model, host, tmp_path):
    plain = _compile(matmul_model, INT4_G32, host, tmp_path / "all")
    half = _compile(matmul_model, QuantConfig.from_text(f"{INT4_G32.text} alg:r0.5"), host,
                    tmp_path / "half")
    counts = {name: artifact.details["weight_compression"]
              for name, artifact in (("all", plain), ("half", half))}
    assert counts["half"]["ratio"] == 0.5 and counts["all"]["ratio"] == 1.0
    assert counts["half"]["weights_int4"] < counts["all"]["weights_int4"]
    assert counts["half"]["weights_int8"] > counts["all"]["weights_int8"]

    def int4_layers(artifact) -> int:
        return sum(op["precision"] == "i4" for op in artifact.details["op_precisions"]
                   if op["type"] == "FullyConnected")

    assert 0 < int4_layers(half) < int4_layers(plain)
    assert half.size_bytes > plain.size_bytes


W4A8 = QuantConfig.from_text("w:int4:sym:per_group:32 a:int8_dynamic")


@pytest.mark.readme_claim("a:int8_dynamic (W4A8) runs where OpenVINO quantizes activations at "
                          "run time, else unsupported with the reason")
def test_w4a8_runs_only_where_openvino_quantizes_activations(matmul_model, host, tmp_path):
    dataset = random_dataset(matmul_model, calibration_count=1, evaluation_count=1)
    model = quantize(matmul_model, W4A8, dataset.calibration, tmp_path / "cache")
    assert model.weight_compression == WeightCompression("int4", True, 32,
                                                         dynamic_activations=True)
    assert model.precision_hint == "fp32" and model.calibration_samples == 1
    try:
        artifact = _compile(matmul_model, W4A8, host, tmp_path, dataset.calibration)
    except UnsupportedConfig as error:
        # An AVX2 CPU (this suite's host): float kernels, outputs bit for bit weight-only's.
        assert "does not quantize activations at run time" in str(error)
        assert "brgemm" in str(error) or "none" not in str(error)
    else:  # a CPU whose kernels quantize activations: the outputs moved, the hint is kept
        assert artifact.state["dynamic_quantization"] == 32
        assert artifact.details["weight_compression"]["weights_int4"] > 0


def test_dynamic_activations_take_no_scheme_and_keep_old_ids(matmul_model, tmp_path):
    from autotune.space import parse_space

    assert QuantConfig.from_text(W4A8.text) == W4A8 and W4A8.label.endswith("int8_dynamic act")
    assert QuantConfig.from_text("w:int4:sym:per_group:32 a:fp32").id == INT4_G32.id
    for bad in ("w:int4:sym:per_group:32 a:int8_dynamic:asym",
                "w:int4:sym:per_group:32 a:int8_dynamic cal:minmax"):
        with pytest.raises(ConfigError, match="int8_dynamic"):
            QuantConfig.from_text(bad)
    space = parse_space({"weight_only": {"weight_dtypes": ["int4", "int8"],
                                         "granularities": ["per_channel"],
                                         "activation_dtypes": ["fp32", "int8_dynamic"]}},
                        Path("w4a8.toml"))
    assert QuantConfig.from_text("w:int8:sym:per_channel a:int8_dynamic") in space.configs
    with pytest.raises(InputError, match="activation_dtypes"):
        parse_space({"integer": {"weight_dtypes": ["int8"], "activation_dtypes": ["int8_dynamic"],
                                 "activation_schemes": ["symmetric"],
                                 "granularities": ["per_channel"], "calibrations": ["minmax"]}},
                    Path("bad.toml"))
    # NNCF's compression cannot keep layers in float, nor quantize weights per tensor.
    for text in ("w:int4:sym:per_tensor a:int8_dynamic",
                 "w:int4:sym:per_group:32 a:int8_dynamic keep:x=fp32"):
        with pytest.raises(UnsupportedConfig):
            quantize(matmul_model, QuantConfig.from_text(text), [], tmp_path)


def test_group_size_that_does_not_divide_is_unsupported(matmul_model, host, tmp_path):
    config = QuantConfig.from_text("w:int4:sym:per_group:128 a:fp32")  # hidden is 64
    with pytest.raises(UnsupportedConfig, match="group size 128"):
        _compile(matmul_model, config, host, tmp_path)


@pytest.mark.readme_claim("weight-only int4 per group of 32 or 128 is compressed by NNCF when "
                          "OpenVINO compiles")
def test_int4_through_the_cli(matmul_model, workspace, capsys):
    from autotune.cli import main
    from autotune.store import Store

    code = main(["run", "--model", str(matmul_model), "--backend", "openvino",
                 "--config", INT4_G32.text, *QUICK])
    out = capsys.readouterr().out
    assert code == 0, out
    trials = Store(f"sqlite:///{workspace}/results/autotune.db").trials(out.split()[1])
    assert [t.status for t in trials] == ["ok", "ok"]
    int4 = next(t for t in trials if t.config == INT4_G32)
    assert int4.details["weight_compression"]["weights_int4"] > 0 and int4.cosine > 0.98


# The int8 options for transformers: what stays in float is part of the config.


@pytest.mark.readme_claim("keep_float keeps nodes or op types (op:Softmax) in float")
def test_op_type_overrides_keep_those_nodes_in_float(matmul_model):
    config = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax "
                                   "keep:op:Softmax=fp32,op:LayerNormalization=fp32")
    kept = kept_in_float(matmul_model, config)
    assert len(kept) == SHAPE.layers + 2 * SHAPE.layers + 1  # Softmax, and LayerNorm + 1
    assert all(name.endswith(("/Softmax", "/LayerNormalization")) for name in kept)
    unknown = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax "
                                    "keep:op:Conv=fp32")
    with pytest.raises(UnsupportedConfig, match="op:Conv"):
        kept_in_float(matmul_model, unknown)


def test_int8_with_transformer_ops_in_float_runs_integer_matmuls(matmul_model, host, tmp_path):
    dataset = random_dataset(matmul_model, calibration_count=8, evaluation_count=2)
    config = QuantConfig.from_text(
        "w:int8:sym:per_channel a:uint8:asym cal:minmax keep:op:Add=fp32,op:Div=fp32,"
        "op:Erf=fp32,op:Gather=fp32,op:LayerNormalization=fp32,op:Mul=fp32,op:Softmax=fp32")
    artifact = _compile(matmul_model, config, host, tmp_path, dataset.calibration)
    matmuls = [op for op in artifact.details["op_precisions"]
               if op["type"] in ("FullyConnected", "MatMul")]
    assert matmuls and artifact.details["float_fallback"] == []
    assert all(op["integer"] for op in matmuls)


def test_transformer_and_int4_spaces():
    from autotune.space import load_space

    transformer = {config.text for config in load_space("transformer").configs}
    assert {"fp32", "bf16", "w:int8:sym:per_channel a:uint8:asym cal:minmax",
            "w:int4:sym:per_group:32 a:fp32", "w:int4:asym:per_group:128 a:fp32"} <= transformer
    # Two variants keep Softmax in float, each plain and after SmoothQuant at 3 alphas.
    assert sum("op:Softmax=fp32" in text for text in transformer) == 2 * 4
    assert "w:int4:sym:per_group:32 a:fp32 alg:r0.8" in transformer
    int4 = load_space("int4").configs
    assert all(c.weight_dtype == "int4" and c.activation_dtype == "fp32" for c in int4[1:])
    assert {c.group_size for c in int4[1:]} == {32, 128, None}
    assert {c.int4_ratio for c in int4[1:]} == {None, 0.8}

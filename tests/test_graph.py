"""Per-layer operation and byte counts, checked against counts worked out by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autotune.config import QuantConfig
from autotune.graph import analyze, analyze_model, config_cost, layer_precisions

INT8 = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:sym cal:minmax")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from autotune.testing.models import tiny_cnn

    return analyze(tiny_cnn(tmp_path_factory.mktemp("graph") / "tiny.onnx", channels=8,
                            size=16))


def test_tiny_cnn_macs_by_hand(tiny):
    layers = {layer.name: layer for layer in tiny.layers}
    # conv1: 8 outputs x 16x16 positions x (3 channels x 3x3 window)
    assert layers["conv1"].macs == 8 * 16 * 16 * 3 * 3 * 3
    # conv2: 16 outputs x 16x16 positions x (8 channels x 3x3 window)
    assert layers["conv2"].macs == 16 * 16 * 16 * 8 * 3 * 3
    assert layers["fc"].macs == 10 * 16
    assert tiny.macs == 55296 + 294912 + 160
    assert [layer.name for layer in tiny.compute_layers] == ["conv1", "conv2", "fc"]
    assert layers["relu2"].ops == 16 * 16 * 16 and not layers["relu2"].compute
    assert layers["pool"].ops == 16 * 16 * 16  # global pooling reads every input element
    assert "flatten" not in layers  # a view: no operations, no bytes
    assert tiny.parameters == 8 * 27 + 8 + 16 * 72 + 16 + 160 + 10


def test_bytes_follow_the_precision_of_each_layer(tiny):
    fp32 = {layer.name: layer for layer in config_cost(tiny, QuantConfig()).layers}
    # conv1 at fp32: weights and bias, the 3x16x16 input, the 8x16x16 output, 4 bytes each.
    assert fp32["conv1"].weight_bytes == (8 * 27 + 8) * 4
    assert fp32["conv1"].activation_bytes == (3 * 256 + 8 * 256) * 4
    int8 = {layer.name: layer for layer in config_cost(tiny, INT8).layers}
    # int8 weights, 32-bit bias, the fp32 graph input, a uint8 output.
    assert int8["conv1"].weight_bytes == 8 * 27 + 8 * 4
    assert int8["conv1"].activation_bytes == 3 * 256 * 4 + 8 * 256
    assert int8["relu1"].precision == "int8"  # carries on in its producer's precision
    assert int8["relu1"].activation_bytes == 2 * 8 * 256
    bf16 = config_cost(tiny, QuantConfig("bf16", "bf16"))
    assert bf16.precision == "bf16" and bf16.ops == config_cost(tiny, QuantConfig()).ops


def test_overrides_keep_layers_in_float(tiny):
    mixed = QuantConfig.from_text(INT8.text + " keep:conv1=fp32")
    precisions = layer_precisions(tiny, mixed)
    assert precisions["conv1"] == ("fp32", "fp32")
    assert precisions["conv2"] == ("int8", "uint8")
    assert precisions["relu1"] == ("fp32", "fp32")  # reads the float output of conv1
    cost = config_cost(tiny, mixed)
    by_name = {layer.name: layer for layer in cost.layers}
    assert by_name["conv1"].precision == "fp32" and by_name["conv2"].precision == "int8"
    assert cost.ops_by_precision["fp32"] == 2 * 55296 + 8 * 256  # conv1 (2 per MAC), relu1
    assert config_cost(tiny, INT8).bytes < cost.bytes < config_cost(tiny, QuantConfig()).bytes
    assert cost.intensity == pytest.approx(cost.ops / cost.bytes)
    by_type = layer_precisions(tiny, QuantConfig.from_text(INT8.text + " keep:op:Relu=fp32"))
    assert by_type["relu1"] == by_type["relu2"] == ("fp32", "fp32")  # op:TYPE selects a type
    assert by_type["conv2"] == ("int8", "uint8")


def _odd_model() -> onnx.ModelProto:
    """Depthwise and grouped convolutions and a batched MatMul, shapes worked out by hand."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
             for name, shape in (("dw.w", (4, 1, 3, 3)), ("gc.w", (8, 2, 1, 1)),
                                 ("mm.w", (5, 7)))]
    nodes = [
        helper.make_node("Conv", ["x", "dw.w"], ["d"], name="depthwise", group=4,
                         pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d", "gc.w"], ["g"], name="grouped", group=2),
        helper.make_node("MatMul", ["m", "mm.w"], ["y"], name="matmul"),
        helper.make_node("MaxPool", ["g"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "odd",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
         helper.make_tensor_value_info("m", TensorProto.FLOAT, ["batch", 3, 5])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_grouped_depthwise_and_batched_matmul():
    layers = {layer.name: layer for layer in analyze_model(_odd_model()).layers}
    assert layers["depthwise"].macs == 4 * 8 * 8 * 1 * 3 * 3
    assert layers["grouped"].macs == 8 * 8 * 8 * 2  # 8 outputs, 4 channels in 2 groups
    assert layers["matmul"].macs == 1 * 3 * 7 * 5  # symbolic batch counts as 1
    assert layers["pool"].ops == 8 * 4 * 4 * 4  # every output element reads a 2x2 window
    assert layers["pool"].macs == 0 and not layers["pool"].compute

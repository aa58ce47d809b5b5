"""Tiny ONNX models built with onnx.helper, for tests that must compile and run for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autotune.onnx_files import save_model


def tiny_cnn(path: Path, *, channels: int = 8, size: int = 16, classes: int = 10,
             seed: int = 0, flatten: bool = False) -> Path:
    """Conv-Relu-Conv-Relu-GlobalAveragePool-Gemm on a 1x3xSIZExSIZE input, random weights.

    The pooled features reach the Gemm through a Reshape to [1, C], which fixes the batch at
    1 as many exporters do; ``flatten`` uses a Flatten instead, so any batch runs."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) or 1
        values = rng.normal(0, (2.0 / fan_in) ** 0.5, shape).astype(np.float32)
        return numpy_helper.from_array(values, name)

    def bias(name: str, count: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.05, count).astype(np.float32), name)

    initializers = [
        weight("conv1.w", channels, 3, 3, 3), bias("conv1.b", channels),
        weight("conv2.w", channels * 2, channels, 3, 3), bias("conv2.b", channels * 2),
        weight("fc.w", classes, channels * 2), bias("fc.b", classes),
    ]
    if not flatten:
        initializers.append(numpy_helper.from_array(np.array([1, channels * 2], dtype=np.int64),
                                                    "flat_shape"))
    nodes = [
        helper.make_node("Conv", ["input", "conv1.w", "conv1.b"], ["c1"], name="conv1",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.w", "conv2.b"], ["c2"], name="conv2",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1) if flatten
        else helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    return _save(path, "tiny_cnn", nodes, initializers, ("input", [1, 3, size, size]),
                 ("logits", [1, classes]))


def one_conv(path: Path, *, channels: int = 8, size: int = 8, seed: int = 0) -> Path:
    """Conv(3x3, CHANNELS -> CHANNELS)-Relu on 1xCHANNELSxSIZExSIZE, random weights.

    The smallest network that MetaSchedule tunes as the backend really does (one packed
    convolution, its layout transforms): three tuning tasks, so tests that tune stay cheap.
    """
    rng = np.random.default_rng(seed)
    fan_in = channels * 9
    weight = rng.normal(0, (2.0 / fan_in) ** 0.5, (channels, channels, 3, 3)).astype(np.float32)
    bias = rng.normal(0, 0.05, channels).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], name="conv",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["output"], name="relu"),
    ]
    shape = [1, channels, size, size]
    return _save(path, "one_conv", nodes,
                 [numpy_helper.from_array(weight, "conv.w"),
                  numpy_helper.from_array(bias, "conv.b")], ("input", shape), ("output", shape))


def tiny_residual(path: Path, *, channels: int = 8, size: int = 8, classes: int = 10,
                  seed: int = 0) -> Path:
    """Three residual blocks on 1x3xSIZExSIZE, random weights: the layer groups of a ResNet
    in nine compute layers.

    stem conv; block a (two convs, identity shortcut); block b (two convs, 1x1 projection
    shortcut ``b.skip``); block c (two convs, identity shortcut from block b); pooled Gemm.
    """
    rng = np.random.default_rng(seed)
    initializers, nodes = [], []

    def conv(x: str, name: str, cin: int, kernel: int = 3) -> str:
        fan_in = cin * kernel * kernel
        initializers.append(numpy_helper.from_array(
            rng.normal(0, (2.0 / fan_in) ** 0.5, (channels, cin, kernel, kernel))
            .astype(np.float32), f"{name}.w"))
        initializers.append(numpy_helper.from_array(
            rng.normal(0, 0.05, channels).astype(np.float32), f"{name}.b"))
        pad = kernel // 2
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [name], name=name,
                                      pads=[pad] * 4))
        return name

    def relu(x: str, name: str) -> str:
        nodes.append(helper.make_node("Relu", [x], [name], name=name))
        return name

    def block(x: str, name: str, projection: bool) -> str:
        out = conv(relu(conv(x, f"{name}.conv1", channels), f"{name}.relu1"), f"{name}.conv2",
                   channels)
        shortcut = conv(x, f"{name}.skip", channels, kernel=1) if projection else x
        nodes.append(helper.make_node("Add", [out, shortcut], [f"{name}.add"], name=f"{name}.add"))
        return relu(f"{name}.add", f"{name}.relu2")

    x = relu(conv("input", "stem", 3), "stem.relu")
    x = block(block(block(x, "a", False), "b", True), "c", False)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1))
    initializers.append(numpy_helper.from_array(
        rng.normal(0, 0.3, (classes, channels)).astype(np.float32), "fc.w"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w"], ["logits"], name="fc", transB=1))
    return _save(path, "tiny_residual", nodes, initializers, ("input", [1, 3, size, size]),
                 ("logits", [1, classes]))


def _save(path: Path, name: str, nodes: list, initializers: list, graph_input: tuple,
          graph_output: tuple) -> Path:
    """An opset-17 model of ``nodes`` with one float input and output, (name, shape) each."""
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(graph_input[0], TensorProto.FLOAT,
                                                    graph_input[1])],
        [helper.make_tensor_value_info(graph_output[0], TensorProto.FLOAT, graph_output[1])],
        initializers)
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                      path)

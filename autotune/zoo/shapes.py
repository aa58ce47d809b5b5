"""Standard architectures at their usual shapes, built with ``onnx.helper`` from seeded weights.

Latency work needs the shapes users deploy (ResNet, MobileNetV2, BERT), not their trained
weights: speed depends on the graph, not on the values. These builders make those graphs
without torch or a download, with seeded random weights, so the same builder gives the same
file on every machine. Quality on them is fidelity against fp32, never a task metric.

The BERT builder also takes real weights (in Hugging Face's naming), which is how the
MiniLM zoo entry is exported (:mod:`autotune.zoo.minilm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autotune.onnx_files import checked, save_model

OPSET = 17
IMAGE_SHAPE = (1, 3, 224, 224)
CLASSES = 1000


class GraphBuilder:
    """Collects nodes and initializers; each ``op`` returns the name of its output."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._constants: dict[tuple, str] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        """Adds an initializer named ``name`` (weights keep their source names)."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def scalar(self, value: float | int | Sequence[int], dtype=np.float32) -> str:
        """A shared small constant (shapes, axes, scalars), added once."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = self.const(f"const_{len(self._constants)}", array)
        return self._constants[key]

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attributes) -> str:
        """Adds node ``name``; its single output is named ``name + ':0'``."""
        output = f"{name}:0"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=name,
                                           **attributes))
        return output

    def finish(self, inputs: Sequence[onnx.ValueInfoProto], output: str, output_name: str,
               output_shape: Sequence[int]) -> onnx.ModelProto:
        """The checked model, with ``output`` renamed to ``output_name``."""
        self.nodes.append(helper.make_node("Identity", [output], [output_name],
                                           name=f"{output_name}_identity"))
        graph = helper.make_graph(
            self.nodes, self.name, list(inputs),
            [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(output_shape))],
            self.initializers)
        return checked(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                         producer_name="autotune.zoo"))


# Convolutional networks (batch-norm folded into the convolutions, as deployed).


class _ConvNet:
    """He-initialised convolutions from one seeded generator."""

    def __init__(self, name: str, seed: int) -> None:
        self.graph = GraphBuilder(name)
        self.rng = np.random.default_rng(seed)

    def conv(self, x: str, name: str, cin: int, cout: int, kernel: int, stride: int = 1,
             groups: int = 1, gain: float = 1.0) -> str:
        fan_in = cin // groups * kernel * kernel
        weight = self.rng.normal(0, gain * (2.0 / fan_in) ** 0.5,
                                 (cout, cin // groups, kernel, kernel)).astype(np.float32)
        bias = self.rng.normal(0, 0.01, cout).astype(np.float32)
        pad = kernel // 2
        return self.graph.op("Conv", [x, self.graph.const(f"{name}.weight", weight),
                                      self.graph.const(f"{name}.bias", bias)], name,
                             kernel_shape=[kernel, kernel], strides=[stride, stride],
                             pads=[pad] * 4, group=groups)

    def relu(self, x: str, name: str) -> str:
        return self.graph.op("Relu", [x], name)

    def relu6(self, x: str, name: str) -> str:
        return self.graph.op("Clip", [x, self.graph.scalar(0.0), self.graph.scalar(6.0)], name)

    def classifier(self, x: str, channels: int) -> str:
        pooled = self.graph.op("GlobalAveragePool", [x], "avgpool")
        flat = self.graph.op("Flatten", [pooled], "flatten", axis=1)
        weight = self.rng.normal(0, channels ** -0.5, (CLASSES, channels)).astype(np.float32)
        return self.graph.op("Gemm", [flat, self.graph.const("fc.weight", weight),
                                      self.graph.const("fc.bias", np.zeros(CLASSES, np.float32))],
                             "fc", transB=1)

    def save(self, logits: str, path: Path) -> Path:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, list(IMAGE_SHAPE))
        return save_model(self.graph.finish([image], logits, "logits", [1, CLASSES]), path)


# The residual branch's last convolution is scaled down (like a zero-initialised last
# batch-norm) so that activations stay in range through the depth of a random network.
_RESIDUAL_GAIN = 0.3


def _basic_block(net: _ConvNet, x: str, name: str, cin: int, cout: int, stride: int) -> str:
    out = net.relu(net.conv(x, f"{name}.conv1", cin, cout, 3, stride), f"{name}.relu1")
    out = net.conv(out, f"{name}.conv2", cout, cout, 3, gain=_RESIDUAL_GAIN)
    shortcut = x if stride == 1 and cin == cout else net.conv(
        x, f"{name}.downsample", cin, cout, 1, stride)
    return net.relu(net.graph.op("Add", [out, shortcut], f"{name}.add"), f"{name}.relu2")


def _bottleneck(net: _ConvNet, x: str, name: str, cin: int, width: int, stride: int) -> str:
    cout = width * 4
    out = net.relu(net.conv(x, f"{name}.conv1", cin, width, 1), f"{name}.relu1")
    out = net.relu(net.conv(out, f"{name}.conv2", width, width, 3, stride), f"{name}.relu2")
    out = net.conv(out, f"{name}.conv3", width, cout, 1, gain=_RESIDUAL_GAIN)
    shortcut = x if stride == 1 and cin == cout else net.conv(
        x, f"{name}.downsample", cin, cout, 1, stride)
    return net.relu(net.graph.op("Add", [out, shortcut], f"{name}.add"), f"{name}.relu3")


def _resnet(path: Path, name: str, blocks: Sequence[int], bottleneck: bool, seed: int) -> Path:
    net = _ConvNet(name, seed)
    x = net.relu(net.conv("image", "conv1", 3, 64, 7, 2), "relu")
    x = net.graph.op("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2],
                     pads=[1, 1, 1, 1])
    channels = 64
    for stage, count in enumerate(blocks):
        width = 64 * 2 ** stage
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            block_name = f"layer{stage + 1}.{index}"
            if bottleneck:
                x = _bottleneck(net, x, block_name, channels, width, stride)
                channels = width * 4
            else:
                x = _basic_block(net, x, block_name, channels, width, stride)
                channels = width
    return net.save(net.classifier(x, channels), path)


def resnet18(path: Path, seed: int = 0) -> Path:
    """ResNet-18 (basic blocks 2-2-2-2, 11.7M parameters) on 1x3x224x224, seeded weights.

    Args:
        path: Where to write the ONNX file.
        seed: Seed of the weights; the same seed gives the same file.

    Returns:
        ``path``.
    """
    return _resnet(path, "resnet18", [2, 2, 2, 2], bottleneck=False, seed=seed)


def resnet50(path: Path, seed: int = 0) -> Path:
    """ResNet-50 (v1.5 bottlenecks 3-4-6-3, 25.6M parameters) on 1x3x224x224, seeded weights."""
    return _resnet(path, "resnet50", [3, 4, 6, 3], bottleneck=True, seed=seed)


# MobileNetV2 inverted residuals: (expansion, output channels, repeats, first stride).
_MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2(path: Path, seed: int = 0) -> Path:
    """MobileNetV2 (depthwise separable inverted residuals, 3.5M parameters), seeded weights."""
    net = _ConvNet("mobilenet_v2", seed)
    x = net.relu6(net.conv("image", "features.0", 3, 32, 3, 2), "features.0.relu6")
    channels = 32
    block = 1
    for expansion, cout, repeats, first_stride in _MOBILENET_V2:
        for index in range(repeats):
            stride = first_stride if index == 0 else 1
            name = f"features.{block}"
            hidden = channels * expansion
            out = x
            if expansion != 1:
                out = net.relu6(net.conv(out, f"{name}.expand", channels, hidden, 1),
                                f"{name}.expand.relu6")
            out = net.relu6(net.conv(out, f"{name}.depthwise", hidden, hidden, 3, stride,
                                     groups=hidden), f"{name}.depthwise.relu6")
            residual = stride == 1 and channels == cout
            out = net.conv(out, f"{name}.project", hidden, cout, 1,
                           gain=_RESIDUAL_GAIN if residual else 1.0)
            x = net.graph.op("Add", [x, out], f"{name}.add") if residual else out
            channels = cout
            block += 1
    x = net.relu6(net.conv(x, "features.18", channels, 1280, 1), "features.18.relu6")
    return net.save(net.classifier(x, 1280), path)


# BERT encoders.


@dataclass(frozen=True)
class BertShape:
    """The hyper-parameters that fix a BERT encoder's graph."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int = 30522
    max_positions: int = 512
    type_vocab: int = 2
    layer_norm_eps: float = 1e-12


BERT_BASE = BertShape(layers=12, hidden=768, heads=12, intermediate=3072)
BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The additive attention mask of the original BERT: padded keys get -10000 before Softmax.
_MASKED = -10000.0


def random_bert_weights(shape: BertShape, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights in Hugging Face's names and layouts (Linear weights are [out, in])."""
    rng = np.random.default_rng(seed)

    def normal(*dims: int) -> np.ndarray:
        return rng.normal(0, 0.02, dims).astype(np.float32)

    hidden = shape.hidden
    weights = {
        "embeddings.word_embeddings.weight": normal(shape.vocab, hidden),
        "embeddings.position_embeddings.weight": normal(shape.max_positions, hidden),
        "embeddings.token_type_embeddings.weight": normal(shape.type_vocab, hidden),
    }
    norms = ["embeddings.LayerNorm"]
    for layer in range(shape.layers):
        prefix = f"encoder.layer.{layer}"
        linears = {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
                   "attention.self.value": (hidden, hidden),
                   "attention.output.dense": (hidden, hidden),
                   "intermediate.dense": (shape.intermediate, hidden),
                   "output.dense": (hidden, shape.intermediate)}
        for name, dims in linears.items():
            weights[f"{prefix}.{name}.weight"] = normal(*dims)
            weights[f"{prefix}.{name}.bias"] = np.zeros(dims[0], np.float32)
        norms += [f"{prefix}.attention.output.LayerNorm", f"{prefix}.output.LayerNorm"]
    for name in norms:
        weights[f"{name}.weight"] = np.ones(hidden, np.float32)
        weights[f"{name}.bias"] = np.zeros(hidden, np.float32)
    return weights


class _Bert:
    """Emits one BERT encoder into a GraphBuilder, node names after Hugging Face's modules."""

    def __init__(self, weights: Mapping[str, np.ndarray], shape: BertShape, seq_len: int) -> None:
        self.graph = GraphBuilder("bert")
        self.weights = weights
        self.shape = shape
        self.seq_len = seq_len

    def weight(self, name: str, transpose: bool = False) -> str:
        value = np.asarray(self.weights[name], dtype=np.float32)
        return self.graph.const(name, np.ascontiguousarray(value.T if transpose else value))

    def linear(self, x: str, module: str) -> str:
        """x @ W^T + b, as MatMul + Add (the form quantizers and compilers expect)."""
        node = "/" + module.replace(".", "/")
        product = self.graph.op("MatMul", [x, self.weight(f"{module}.weight", transpose=True)],
                                f"{node}/MatMul")
        return self.graph.op("Add", [product, self.weight(f"{module}.bias")], f"{node}/Add")

    def layer_norm(self, x: str, module: str) -> str:
        return self.graph.op("LayerNormalization", [x, self.weight(f"{module}.weight"),
                                                    self.weight(f"{module}.bias")],
                             "/" + module.replace(".", "/") + "/LayerNormalization", axis=-1,
                             epsilon=self.shape.layer_norm_eps)

    def embeddings(self) -> str:
        g = self.graph
        words = g.op("Gather", [self.weight("embeddings.word_embeddings.weight"), "input_ids"],
                     "/embeddings/word_embeddings/Gather")
        types = g.op("Gather", [self.weight("embeddings.token_type_embeddings.weight"),
                                "token_type_ids"], "/embeddings/token_type_embeddings/Gather")
        # Static shapes: the position embeddings of positions 0..seq_len-1 are a constant.
        positions = np.asarray(self.weights["embeddings.position_embeddings.weight"],
                               dtype=np.float32)[None, : self.seq_len]
        summed = g.op("Add", [words, types], "/embeddings/Add")
        summed = g.op("Add", [summed, g.const("embeddings.position_embeddings.used", positions)],
                      "/embeddings/Add_1")
        return self.layer_norm(summed, "embeddings.LayerNorm")

    def additive_mask(self) -> str:
        g = self.graph
        mask = g.op("Cast", ["attention_mask"], "/mask/Cast", to=TensorProto.FLOAT)
        mask = g.op("Unsqueeze", [mask, g.scalar([1, 2], np.int64)], "/mask/Unsqueeze")
        inverted = g.op("Sub", [g.scalar(1.0), mask], "/mask/Sub")
        return g.op("Mul", [inverted, g.scalar(_MASKED)], "/mask/Mul")

    def heads(self, x: str, node: str, transpose_to: list[int]) -> str:
        g = self.graph
        head_dim = self.shape.hidden // self.shape.heads
        # 0 copies the batch from the input: the graph runs at any batch (throughput mode).
        split = g.op("Reshape", [x, g.scalar([0, self.seq_len, self.shape.heads, head_dim],
                                             np.int64)], f"{node}/Reshape")
        return g.op("Transpose", [split], f"{node}/Transpose", perm=transpose_to)

    def attention(self, x: str, mask: str, layer: int) -> str:
        g = self.graph
        prefix = f"encoder.layer.{layer}.attention"
        node = f"/encoder/layer.{layer}/attention/self"
        query = self.heads(self.linear(x, f"{prefix}.self.query"), f"{node}/query", [0, 2, 1, 3])
        key = self.heads(self.linear(x, f"{prefix}.self.key"), f"{node}/key", [0, 2, 3, 1])
        value = self.heads(self.linear(x, f"{prefix}.self.value"), f"{node}/value", [0, 2, 1, 3])
        scores = g.op("MatMul", [query, key], f"{node}/MatMul")
        head_dim = self.shape.hidden // self.shape.heads
        scores = g.op("Mul", [scores, g.scalar(head_dim ** -0.5)], f"{node}/Mul")
        scores = g.op("Add", [scores, mask], f"{node}/Add")
        probs = g.op("Softmax", [scores], f"{node}/Softmax", axis=-1)
        context = g.op("MatMul", [probs, value], f"{node}/MatMul_1")
        context = g.op("Transpose", [context], f"{node}/context/Transpose", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, g.scalar([0, self.seq_len, self.shape.hidden],
                                                     np.int64)], f"{node}/context/Reshape")
        out = self.linear(context, f"{prefix}.output.dense")
        out = g.op("Add", [out, x], f"/encoder/layer.{layer}/attention/output/Add_residual")
        return self.layer_norm(out, f"{prefix}.output.LayerNorm")

    def feed_forward(self, x: str, layer: int) -> str:
        g = self.graph
        prefix = f"encoder.layer.{layer}"
        node = f"/encoder/layer.{layer}/intermediate"
        hidden = self.linear(x, f"{prefix}.intermediate.dense")
        # Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): the pattern runtimes fuse into one op.
        scaled = g.op("Div", [hidden, g.scalar(2 ** 0.5)], f"{node}/gelu/Div")
        erf = g.op("Erf", [scaled], f"{node}/gelu/Erf")
        erf = g.op("Add", [erf, g.scalar(1.0)], f"{node}/gelu/Add")
        gelu = g.op("Mul", [hidden, erf], f"{node}/gelu/Mul")
        gelu = g.op("Mul", [gelu, g.scalar(0.5)], f"{node}/gelu/Mul_1")
        out = self.linear(gelu, f"{prefix}.output.dense")
        out = g.op("Add", [out, x], f"/encoder/layer.{layer}/output/Add_residual")
        return self.layer_norm(out, f"{prefix}.output.LayerNorm")

    def mean_pool_normalized(self, x: str) -> str:
        """Mean over the unmasked tokens, then L2-normalised (sentence-transformers' head)."""
        g = self.graph
        mask = g.op("Cast", ["attention_mask"], "/pooling/Cast", to=TensorProto.FLOAT)
        mask = g.op("Unsqueeze", [mask, g.scalar([2], np.int64)], "/pooling/Unsqueeze")
        summed = g.op("ReduceSum", [g.op("Mul", [x, mask], "/pooling/Mul"),
                                    g.scalar([1], np.int64)], "/pooling/ReduceSum", keepdims=0)
        count = g.op("ReduceSum", [mask, g.scalar([1], np.int64)], "/pooling/ReduceSum_1",
                     keepdims=0)
        count = g.op("Max", [count, g.scalar(1e-9)], "/pooling/Clamp")
        mean = g.op("Div", [summed, count], "/pooling/Div")
        # Opset 17's ReduceL2 still takes its axes as an attribute (ReduceSum as an input).
        norm = g.op("ReduceL2", [mean], "/normalize/ReduceL2", axes=[1], keepdims=1)
        norm = g.op("Max", [norm, g.scalar(1e-12)], "/normalize/Clamp")
        return g.op("Div", [mean, norm], "/normalize/Div")

    def build(self, pooled: bool) -> onnx.ModelProto:
        x = self.embeddings()
        mask = self.additive_mask()
        for layer in range(self.shape.layers):
            x = self.feed_forward(self.attention(x, mask, layer), layer)
        inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, [1, self.seq_len])
                  for name in BERT_INPUTS]
        if pooled:
            return self.graph.finish(inputs, self.mean_pool_normalized(x), "sentence_embedding",
                                     [1, self.shape.hidden])
        return self.graph.finish(inputs, x, "last_hidden_state",
                                 [1, self.seq_len, self.shape.hidden])


def bert_encoder(path: Path, weights: Mapping[str, np.ndarray], shape: BertShape,
                 seq_len: int = 128, pooled: bool = False) -> Path:
    """Writes a static-shape BERT encoder (batch 1, ``seq_len`` tokens) as ONNX.

    Args:
        path: Where to write the ONNX file.
        weights: Tensors in Hugging Face ``BertModel`` names (Linear weights [out, in]).
        shape: Layer count and widths; must match ``weights``.
        seq_len: The fixed sequence length of the inputs.
        pooled: Output the mean-pooled, L2-normalised sentence embedding ([1, hidden]) as
            sentence-transformers does, instead of the last hidden state.

    Returns:
        ``path``. Inputs are ``input_ids``, ``attention_mask`` and ``token_type_ids``
        (int64, [1, seq_len]).
    """
    if not 0 < seq_len <= shape.max_positions:
        raise ValueError(f"seq_len must be in 1..{shape.max_positions}, got {seq_len}")
    return save_model(_Bert(weights, shape, seq_len).build(pooled), path)


def bert_base(path: Path, seq_len: int = 128, seed: int = 0) -> Path:
    """BERT-base (12 layers, hidden 768, 110M parameters) at ``seq_len`` tokens, seeded weights."""
    return bert_encoder(path, random_bert_weights(BERT_BASE, seed), BERT_BASE, seq_len)

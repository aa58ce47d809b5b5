"""Per-layer analysis of an ONNX model: operations and bytes moved, per quantization config.

The roofline bound of a config and most features of the cost model come from here. Shapes
come from ONNX shape inference, so the model needs static shapes (symbolic dimensions count
as 1, the batch of one inference). Counting rules, kept simple on purpose:

- compute layers (Conv incl. grouped and depthwise, ConvTranspose, Gemm, MatMul) count two
  operations per multiply-accumulate;
- other layers (elementwise, pooling, normalization) are memory layers: one operation per
  output element (pooling: per window element), and views (Reshape, Flatten, ...) are free;
- every layer reads its activation inputs and weights and writes its outputs once, at the
  precision the config gives that layer (``layer_precisions``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autotune.config import QuantConfig

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Layout-only ops that compiled graphs fold away: no operations, no bytes.
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant",
            "Shape")
POOL_OPS = ("MaxPool", "AveragePool", "LpPool")
GLOBAL_POOL_OPS = ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")

# Bytes per element of each dtype a config can give a tensor.
ELEMENT_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "uint8": 1.0,
                 "int16": 2.0, "int4": 0.5,
                 # quantized inside the kernel at run time: stored float between layers
                 "int8_dynamic": 4.0}


@dataclass(frozen=True)
class Layer:
    """One node of the graph with what it costs, independent of precision."""

    name: str
    op_type: str
    compute: bool  # a MAC layer (Conv/Gemm/MatMul) that the quantizer can quantize
    macs: int
    ops: int
    weight_elements: int  # the weight tensor (quantized with the layer)
    bias_elements: int  # kept at 32 bits by integer quantizers
    inputs: tuple[tuple[str, int], ...]  # activation tensors read: (name, elements)
    outputs: tuple[tuple[str, int], ...]  # activation tensors written: (name, elements)


@dataclass(frozen=True)
class GraphProfile:
    """All layers of a model, in graph order, with the shapes of its inputs."""

    layers: tuple[Layer, ...]
    graph_inputs: tuple[tuple[str, int], ...]

    @property
    def compute_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.compute]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def parameters(self) -> int:
        return sum(layer.weight_elements + layer.bias_elements for layer in self.layers)

    def to_json(self) -> dict:
        """Plain lists and numbers: the store keeps a model's profile so that the cost model
        can learn from its trials after the ONNX file is gone."""
        return {"layers": [[layer.name, layer.op_type, layer.compute, layer.macs, layer.ops,
                            layer.weight_elements, layer.bias_elements,
                            [list(pair) for pair in layer.inputs],
                            [list(pair) for pair in layer.outputs]] for layer in self.layers],
                "graph_inputs": [list(pair) for pair in self.graph_inputs]}

    @classmethod
    def from_json(cls, data: dict) -> GraphProfile:
        layers = tuple(Layer(name, op_type, bool(compute), macs, ops, weights, bias,
                             tuple((tensor, count) for tensor, count in inputs),
                             tuple((tensor, count) for tensor, count in outputs))
                       for name, op_type, compute, macs, ops, weights, bias, inputs, outputs
                       in data["layers"])
        return cls(layers, tuple((name, count) for name, count in data["graph_inputs"]))


@dataclass(frozen=True)
class LayerCost:
    """One layer under one config: its precision, operations and bytes moved."""

    name: str
    precision: str  # the precision its arithmetic runs in: fp32, fp16, bf16 or int8
    ops: int
    weight_bytes: float
    activation_bytes: float

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.activation_bytes


@dataclass(frozen=True)
class ConfigCost:
    """A whole model under one config: totals per precision, and the layers behind them."""

    layers: tuple[LayerCost, ...]

    @property
    def ops(self) -> int:
        return sum(layer.ops for layer in self.layers)

    @property
    def bytes(self) -> float:
        return sum(layer.bytes for layer in self.layers)

    @property
    def weight_bytes(self) -> float:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def ops_by_precision(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for layer in self.layers:
            totals[layer.precision] = totals.get(layer.precision, 0) + layer.ops
        return totals

    @property
    def precision(self) -> str:
        """The precision most operations run in (the roof a config is judged against)."""
        totals = self.ops_by_precision
        return max(totals, key=totals.get) if totals else "fp32"

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: operations per byte moved."""
        return self.ops / self.bytes if self.bytes else 0.0


# Analysis of the graph (precision-independent)


def analyze(model_path: Path) -> GraphProfile:
    """The profile of an ONNX file; cached by path, size and modification time."""
    stat = Path(model_path).stat()
    return _analyze_cached(str(Path(model_path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _analyze_cached(path: str, _size: int, _mtime_ns: int) -> GraphProfile:
    import onnx

    return analyze_model(onnx.load(path))


def analyze_model(model) -> GraphProfile:
    """The profile of a loaded ``onnx.ModelProto`` (shapes inferred here)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = _shapes(graph)
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for name in node.output:
                weights.setdefault(name, shapes.get(name, ()))
    aliases: dict[str, str] = {}
    layers = []
    for index, node in enumerate(graph.node):
        if node.op_type in VIEW_OPS:
            if node.input and node.output and node.input[0] not in weights:
                # A view's output is its input re-labelled: it keeps the producer's dtype.
                aliases[node.output[0]] = aliases.get(node.input[0], node.input[0])
            continue
        layers.append(_layer(node, index, shapes, weights, aliases))
    graph_inputs = tuple((value.name, _elements(shapes.get(value.name, ())))
                         for value in graph.input if value.name not in weights)
    return GraphProfile(tuple(layers), graph_inputs)


def _shapes(graph) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            # Symbolic or unknown dimensions are the batch of one inference.
            shapes[value.name] = tuple(dim.dim_value if dim.dim_value > 0 else 1
                                       for dim in value.type.tensor_type.shape.dim)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _elements(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def _attribute(node, name: str, default):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _layer(node, index: int, shapes: dict, weights: dict, aliases: dict[str, str]) -> Layer:
    name = node.name or f"{node.op_type}_{index}"
    activations = tuple((aliases.get(tensor, tensor), _elements(shapes.get(tensor, ())))
                        for tensor in node.input if tensor and tensor not in weights)
    outputs = tuple((tensor, _elements(shapes.get(tensor, ()))) for tensor in node.output
                    if tensor)
    if node.op_type in COMPUTE_OPS:
        macs = _macs(node, shapes)
        weight = weights.get(node.input[1], ()) if len(node.input) > 1 else ()
        bias = weights.get(node.input[2], ()) if len(node.input) > 2 and node.input[2] else ()
        weight_elements = _elements(weight) if node.input[1] in weights else 0
        bias_elements = _elements(bias) if bias else 0
        return Layer(name, node.op_type, True, macs, 2 * macs, weight_elements, bias_elements,
                     activations, outputs)
    weight_elements = sum(_elements(weights[t]) for t in node.input if t in weights)
    return Layer(name, node.op_type, False, 0, _memory_ops(node, shapes, outputs),
                 weight_elements, 0, activations, outputs)


def _macs(node, shapes: dict) -> int:
    """Multiply-accumulates of a compute layer, from its inferred shapes."""
    output = shapes.get(node.output[0], ())
    if node.op_type == "Conv":
        weight = shapes.get(node.input[1], ())
        # Each output element sums over (input channels / group) x kernel window.
        return _elements(output) * _elements(weight[1:]) if weight and output else 0
    if node.op_type == "ConvTranspose":
        source, weight = shapes.get(node.input[0], ()), shapes.get(node.input[1], ())
        # Each input element scatters into (output channels / group) x kernel window.
        return _elements(source) * _elements(weight[1:]) if weight and source else 0
    first = shapes.get(node.input[0], ())
    if not first or not output:
        return 0
    if node.op_type == "Gemm":
        depth = first[0] if _attribute(node, "transA", 0) else first[-1]
    else:  # MatMul, with numpy broadcasting of the batch dimensions
        depth = first[-1]
    return _elements(output) * depth


def _memory_ops(node, shapes: dict, outputs: tuple[tuple[str, int], ...]) -> int:
    written = sum(count for _, count in outputs)
    if node.op_type in POOL_OPS:
        return written * _elements(_attribute(node, "kernel_shape", []))
    if node.op_type in GLOBAL_POOL_OPS:
        return _elements(shapes.get(node.input[0], ()))
    return written


# Precision of each layer under a config


def _element_bytes(dtype: str) -> float:
    return ELEMENT_BYTES[dtype]


def _weight_element_bytes(weight: str, config: QuantConfig) -> float:
    """Bytes per weight; with an int4 ratio, the mean of its int4 and int8 shares (NNCF
    picks which layers stay int8, so no one layer is known to be either)."""
    if weight == "int4" and config.int4_ratio is not None:
        return (config.int4_ratio * ELEMENT_BYTES["int4"]
                + (1 - config.int4_ratio) * ELEMENT_BYTES["int8"])
    return ELEMENT_BYTES[weight]


def layer_precisions(profile: GraphProfile, config: QuantConfig) -> dict[str, tuple[str, str]]:
    """Per layer name, (weight dtype, output activation dtype) under ``config``.

    Float configs run every layer in their dtype. Integer configs quantize every compute
    layer not named in ``config.overrides`` (ONNX Runtime's ``nodes_to_exclude``; by node
    name, or ``op:TYPE`` for every node of a type); an overridden layer keeps its override
    dtype. Memory layers carry on in the precision of the tensor they read, as QDQ graphs do
    between quantized layers.
    """
    tensor_dtype = {name: _input_dtype(config) for name, _ in profile.graph_inputs}
    result: dict[str, tuple[str, str]] = {}
    for layer in profile.layers:
        kept = kept_dtype(layer, config)
        if config.is_float:
            weight = activation = config.weight_dtype
        elif kept is not None:
            weight = activation = _float_of(kept)
        elif layer.compute:
            weight, activation = config.weight_dtype, config.activation_dtype
        else:
            read = [tensor_dtype.get(name) for name, _ in layer.inputs]
            activation = next((dtype for dtype in read if dtype), _input_dtype(config))
            weight = activation
        for name, _ in layer.outputs:
            tensor_dtype[name] = activation
        result[layer.name] = (weight, activation)
    return result


def kept_dtype(layer: Layer, config: QuantConfig) -> str | None:
    """The dtype ``config.overrides`` keeps ``layer`` in (by name or ``op:TYPE``), or None."""
    kept = dict(config.overrides)
    return kept.get(layer.name) or kept.get(f"op:{layer.op_type}")


def _input_dtype(config: QuantConfig) -> str:
    # Graph inputs arrive as the model declares them (fp32); float configs convert once.
    return config.weight_dtype if config.is_float else "fp32"


def _float_of(dtype: str) -> str:
    # A layer kept out of quantization runs in float; integer overrides are not expressible.
    return dtype if dtype in ("fp32", "fp16", "bf16") else "fp32"


def _compute_precision(weight: str, activation: str) -> str:
    """The roof a layer's arithmetic runs against."""
    if weight in ("int8", "uint8", "int4") and activation in ("int8", "uint8", "int8_dynamic"):
        return "int8"
    if weight in ("fp16", "bf16"):
        return weight
    return "fp32"


def config_cost(profile: GraphProfile, config: QuantConfig) -> ConfigCost:
    """Operations and bytes moved per layer when the model runs under ``config``."""
    precisions = layer_precisions(profile, config)
    tensor_dtype = {name: _input_dtype(config) for name, _ in profile.graph_inputs}
    costs = []
    for layer in profile.layers:
        weight, activation = precisions[layer.name]
        read = sum(count * _element_bytes(tensor_dtype.get(name, activation))
                   for name, count in layer.inputs)
        written = sum(count * _element_bytes(activation) for _, count in layer.outputs)
        for name, _ in layer.outputs:
            tensor_dtype[name] = activation
        bias_bytes = layer.bias_elements * (4.0 if not config.is_float
                                            else _element_bytes(config.weight_dtype))
        weight_bytes = layer.weight_elements * _weight_element_bytes(weight, config) + bias_bytes
        costs.append(LayerCost(layer.name, _compute_precision(weight, activation), layer.ops,
                               weight_bytes, read + written))
    return ConfigCost(tuple(costs))


# Layer groups: layers whose precision is decided together

MERGE_OPS = ("Add", "Sum", "Concat")


def layer_groups(profile: GraphProfile) -> list[tuple[str, ...]]:
    """The model's compute layers in groups that a per-layer space decides together.

    Layers whose outputs meet at a residual Add (or a Sum or Concat) share the tensor the
    merge writes, so keeping one of them in float and quantizing another only adds a
    conversion at the merge: they are one group. A merge whose input comes from another merge
    (a residual stream through several blocks) joins that merge's group. The way back from a
    merge input to its producer passes through single-input memory layers (Relu, Clip,
    pooling, normalization). Every other compute layer is a group of its own.

    Returns:
        Groups of layer names, each in graph order, ordered by their first layer.
    """
    producer = {tensor: layer for layer in profile.layers for tensor, _ in layer.outputs}
    order = {layer.name: index for index, layer in enumerate(profile.layers)}
    parent = {layer.name: layer.name for layer in profile.layers}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for merge in profile.layers:
        if merge.op_type not in MERGE_OPS or len(merge.inputs) < 2:
            continue  # an Add of a bias constant is no merge
        for tensor, _ in merge.inputs:
            source = _merge_source(producer.get(tensor), producer)
            if source is not None:
                parent[root(source.name)] = root(merge.name)
    groups: dict[str, list[str]] = {}
    for layer in profile.compute_layers:
        groups.setdefault(root(layer.name), []).append(layer.name)
    return sorted((tuple(names) for names in groups.values()), key=lambda g: order[g[0]])


def _merge_source(layer: Layer | None, producer: dict[str, Layer]) -> Layer | None:
    """The compute layer or merge that feeds a merge input, through single-input memory
    layers; None when the input comes from the graph's inputs."""
    while layer is not None and not layer.compute and layer.op_type not in MERGE_OPS:
        if len(layer.inputs) != 1:
            return None  # e.g. a Mul of two activations: neither input decides alone
        layer = producer.get(layer.inputs[0][0])
    return layer

"""Saturation rate: the share of activation values that a quantized model's ranges clip.

A static int8 config fixes every activation's range at calibration; an evaluation input
whose values fall outside it is clipped, and no accuracy figure says how often that
happens (the SRE view's M7, target below 1%). The ranges are read from the QDQ model the
quantizer made: each activation QuantizeLinear's scale and zero point give the range
[(qmin - zp) * scale, (qmax - zp) * scale], widened by half a step at each end (a value
that close rounds to the end anyway). The values are the fp32 model's own (the QDQ
model keeps the fp32 tensor names), so one layer's clipping is not compounded by the
layers before it. Weights are not counted: their ranges are their own min and max.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np

from autotune.outcome import Saturation
from autotune.quantize import Feeds, feeds_hash, file_hash, is_dynamic, is_weight_only

# Evaluation samples the fp32 model runs on: enough for a rate of 1% to show, bounded so a
# large evaluation set does not make every quantized trial pay for it.
MAX_SAMPLES = 32

_QRANGE = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767),
           21: (0, 15), 22: (-8, 7)}  # ONNX element types: uint8, int8, uint16, int16, 4-bit


def saturation_of(config, source_path: Path, quantized_path: Path,
                  samples: Sequence[Feeds], cache_dir: Path) -> Saturation:
    """The saturation facts of one trial's model: ``config`` decides whether it applies."""
    if config.is_float:
        return Saturation(rate=0.0, note="float activations: no quantization ranges, "
                                         "nothing clipped")
    if is_weight_only(config):
        return Saturation(note="not applicable: weight-only, activations stay float")
    if is_dynamic(config):
        return Saturation(note="not applicable: activations quantized at run time, to the "
                               "range of each group")
    return measure_saturation(source_path, quantized_path, samples, cache_dir)


def measure_saturation(source_path: Path, quantized_path: Path, samples: Sequence[Feeds],
                       cache_dir: Path) -> Saturation:
    """Count the clipped activation values of ``samples[:MAX_SAMPLES]``; cached by the
    quantized model's hash, the samples' hash and the onnxruntime version."""
    samples = list(samples)[:MAX_SAMPLES]
    key = f"{file_hash(quantized_path)}-{feeds_hash(samples)}-ort{version('onnxruntime')}"
    cached = Path(cache_dir) / "saturation" / f"{key}.json"
    if cached.exists():
        return Saturation.from_json(json.loads(cached.read_text()))
    ranges = activation_ranges(quantized_path)
    outside: dict[str, int] = {}
    sizes: dict[str, int] = {}
    # Counted sample by sample: a transformer's activations over 32 inputs would not fit.
    for values in _fp32_tensors(source_path, sorted(ranges), samples):
        for name, tensor in values.items():
            low, high = ranges[name]
            outside[name] = outside.get(name, 0) + int(np.count_nonzero((tensor < low)
                                                                        | (tensor > high)))
            sizes[name] = sizes.get(name, 0) + tensor.size
    per_tensor = {name: round(outside[name] / sizes[name], 6) if sizes[name] else 0.0
                  for name in sizes}
    clipped, counted = sum(outside.values()), sum(sizes.values())
    found = Saturation(rate=clipped / counted if counted else 0.0, tensors=per_tensor,
                       samples=len(samples))
    cached.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(suffix=".json", dir=cached.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(found.to_json(), file)
    os.replace(tmp_name, cached)  # never a half-written cache entry
    return found


# onnxruntime renames a quantized graph output's producer to NAME + this (the last
# DequantizeLinear gives NAME back); in the fp32 model it is NAME.
_RENAMED_OUTPUT = "_QuantizeLinear_Input"


def activation_ranges(quantized_path: Path) -> dict[str, tuple[float, float]]:
    """The float values each activation QuantizeLinear of a QDQ model takes without
    clipping, by the name of the tensor it quantizes (initializers, i.e. weights and
    biases, left out): [(qmin - 0.5 - zp) * scale, (qmax + 0.5 - zp) * scale]."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(quantized_path), load_external_data=False).graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    ranges = {}
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants:
            continue
        scale = np.asarray(constants[node.input[1]], dtype=np.float64)
        if len(node.input) > 2 and node.input[2]:
            point = constants[node.input[2]]
            element = onnx.helper.np_dtype_to_tensor_dtype(point.dtype)
            point = np.asarray(point, dtype=np.float64)
        else:
            element, point = 2, np.zeros_like(scale)  # the ONNX default: uint8, zero point 0
        qmin, qmax = _QRANGE[element]
        # A value within half a step of the range's ends rounds to qmin or qmax anyway: it
        # is clipped only beyond that. Per-tensor activations have one scale; were there
        # several, the widest range counts.
        low = float(np.min((qmin - 0.5 - point) * scale))
        high = float(np.max((qmax + 0.5 - point) * scale))
        ranges[node.input[0].removesuffix(_RENAMED_OUTPUT)] = (low, high)
    return ranges


def _fp32_tensors(model_path: Path, names: list[str], samples: Sequence[Feeds]):
    """Per sample, ``names`` of the fp32 model (graph inputs and intermediate tensors) as a
    dict; a name the fp32 model does not have is left out."""
    import onnx
    import onnxruntime

    model = onnx.load(str(model_path))
    inputs = {value.name for value in model.graph.input}
    produced = {output for node in model.graph.node for output in node.output}
    present = {value.name for value in model.graph.output}
    wanted = [name for name in names if name in produced or name in inputs]
    for name in wanted:
        if name not in present and name not in inputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, None))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # Unfused, so every tensor named in the QDQ model still exists as the graph says.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    outputs = [name for name in wanted if name not in inputs]
    for feeds in samples:
        values = dict(zip(outputs, session.run(outputs, feeds), strict=True))
        values.update({name: feeds[name] for name in wanted if name in inputs})
        yield {name: np.asarray(value) for name, value in values.items()}

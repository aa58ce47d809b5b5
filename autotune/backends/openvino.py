"""OpenVINO backend: compile ONNX (fp32 or QDQ) for an OpenVINO device and measure it.

Compile and measure are separate: ``compile`` writes OpenVINO's exported blob, ``measure``
imports it, so load time is the real cost a deployment pays. The runtime model says which
precision and kernel each heavy op ran in, which is how an int8 request that silently fell
back to float is caught.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from autotune.backends import register
from autotune.backends.base import Artifact, Availability
from autotune.errors import UnsupportedConfig
from autotune.measure import Feeds, Measurement, MeasurementProtocol, Session, measure_session
from autotune.quantize import QuantizedModel
from autotune.target import Target

_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
HEAVY_OPS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")
_INTEGER_PRECISIONS = ("u8", "i8", "i4", "u4")


def _compile_config(target: Target, precision_hint: str) -> dict[str, str]:
    return {
        "INFERENCE_PRECISION_HINT": _HINTS[precision_hint],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(target.threads),
    }


@register
class OpenVINOBackend:
    name = "openvino"

    def available(self, target: Target) -> Availability:
        if target.openvino_device is None:
            return Availability(False, f"target {target.name} has no [openvino] device")
        if not target.is_local:
            return Availability(False, "OpenVINO measures on the device itself; start "
                                       "`autotune worker` there")
        try:
            import openvino
        except ImportError as error:
            return Availability(False, f"openvino is not installed ({error})")
        devices = openvino.Core().available_devices
        wanted = target.openvino_device.split(".")[0]
        if not any(device.split(".")[0] == wanted for device in devices):
            return Availability(False, f"OpenVINO device {target.openvino_device} not present "
                                       f"here (found: {', '.join(devices) or 'none'})")
        return Availability(True)

    def versions(self) -> dict[str, str]:
        try:
            return {"openvino": version("openvino")}
        except PackageNotFoundError:
            return {}

    def compile(self, model: QuantizedModel, target: Target, workdir: Path) -> Artifact:
        import openvino

        if model.precision_hint not in _HINTS:
            raise UnsupportedConfig(f"OpenVINO has no {model.precision_hint} inference precision")
        core = openvino.Core()
        if model.precision_hint != "fp32":
            supported = core.get_property(target.openvino_device, "OPTIMIZATION_CAPABILITIES")
            if model.precision_hint.upper() not in supported:
                raise UnsupportedConfig(
                    f"{target.openvino_device} on this host does not support "
                    f"{model.precision_hint} (capabilities: {', '.join(supported)})")
        start = time.perf_counter()
        compiled = core.compile_model(core.read_model(str(model.path)), target.openvino_device,
                                      _compile_config(target, model.precision_hint))
        compile_s = time.perf_counter() - start
        path = Path(workdir) / "model.blob"
        path.write_bytes(compiled.export_model().getvalue())
        details = {"precision_hint": model.precision_hint,
                   "op_precisions": runtime_op_precisions(compiled)}
        if model.config.is_quantized:
            fallback = [op for op in details["op_precisions"] if not op["integer"]]
            details["float_fallback"] = [op["name"] for op in fallback]
        return Artifact(self.name, path, path.stat().st_size, compile_s, details)

    def measure(self, artifact: Artifact, evaluation: Sequence[Feeds], target: Target,
                protocol: MeasurementProtocol) -> Measurement:
        import openvino

        precision = artifact.details.get("precision_hint", "fp32")

        def load() -> Session:
            core = openvino.Core()
            compiled = core.import_model(artifact.path.read_bytes(), target.openvino_device,
                                         _compile_config(target, precision))
            return _OpenVINOSession(compiled)

        return measure_session(load, evaluation, protocol)


class _OpenVINOSession(Session):
    def __init__(self, compiled) -> None:
        import openvino

        self._openvino = openvino
        self._request = compiled.create_infer_request()

    def set_inputs(self, feeds: Feeds) -> None:
        for name, array in feeds.items():
            self._request.set_tensor(name, self._openvino.Tensor(array))

    def run(self) -> None:
        self._request.infer()

    def outputs(self) -> list:
        return [tensor.data for tensor in self._request.output_tensors]


def runtime_op_precisions(compiled) -> list[dict]:
    """The heavy ops of the compiled graph, with the precision and kernel each runs in."""
    ops = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer_type = _rt(info, "layerType")
        if layer_type not in HEAVY_OPS:
            continue
        precision = _rt(info, "runtimePrecision")
        kernel = _rt(info, "primitiveType")
        ops.append({
            "name": op.get_friendly_name(),
            "type": layer_type,
            "precision": precision,
            "kernel": kernel,
            "integer": precision in _INTEGER_PRECISIONS or kernel.endswith("_I8"),
            "original": _rt(info, "originalLayersNames"),
        })
    return ops


def _rt(info, key: str) -> str:
    if key not in info:
        return ""
    value = info[key]
    return str(value.astype(str)) if hasattr(value, "astype") else str(value)

"""OpenVINO backend: compile ONNX (fp32, QDQ, or weight-only through NNCF) and measure it.

Compile and measure are separate: ``compile`` writes OpenVINO's exported blob, ``measure``
imports it, so load time is the real cost a deployment pays. The runtime model says which
precision and kernel each heavy op ran in, which is how an int8 request that silently fell
back to float is caught.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np

from autotune.backends.base import (
    DEFAULT_OPTIONS,
    Artifact,
    Backend,
    CompileOptions,
    Exported,
    Requirement,
)
from autotune.backends.registry import register
from autotune.errors import InputError, UnsupportedConfig
from autotune.host import installed_versions
from autotune.measure import Feeds, Measurement, MeasurementProtocol, Session, measure_session
from autotune.outcome import CAUSE, FLOAT_FALLBACK, Note
from autotune.quantize import QuantizedModel, WeightCompression, load_calibration
from autotune.target_spec import Target
from autotune.throughput import (
    ThroughputFacts,
    ThroughputPoint,
    batch_of,
    batched_feeds,
    each_batch,
    point,
    timed_window,
)
from autotune.tomlfile import Table

_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
# The nncf release made for each OpenVINO release (NNCF's table of corresponding versions),
# each pair checked here with a weight compression. nncf reads OpenVINO's internals: nncf
# 3.4.0 does not even import with openvino 2025.4.0 (no Type.u2), so a --runtime that swaps
# OpenVINO swaps nncf with it.
NNCF_FOR_OPENVINO = {"2025.4": "2.19.0", "2026.0": "3.0.0", "2026.1": "3.1.0",
                     "2026.2": "3.2.0", "2026.3": "3.3.0", "2026.4": "3.4.0"}
HEAVY_OPS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")
_INTEGER_PRECISIONS = ("u8", "i8", "i4", "u4")


def _compile_config(target: Target, state: dict) -> dict[str, str]:
    """The compile properties of an artifact's ``state`` (its precision hint, and for
    compressed weights the dynamic quantization group size) on ``target``."""
    config = {
        "INFERENCE_PRECISION_HINT": _HINTS[state["precision_hint"]],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(target.threads),
    }
    if state.get("dynamic_quantization") is not None:
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(state["dynamic_quantization"])
    if openvino_device(target) == "CPU":
        # One thread per core of the worker's core set (it is pinned to it), each kept on its
        # core, so a trial's threads do not wander onto the cores the driver was moved to.
        config["ENABLE_CPU_PINNING"] = "YES"
    return config


def _throughput_config(target: Target, state: dict) -> dict[str, str]:
    """The latency config with the THROUGHPUT hint: OpenVINO picks its streams and the
    number of infer requests that keep them busy (no ``NUM_STREAMS``), on the same threads."""
    config = _compile_config(target, state)
    config["PERFORMANCE_HINT"] = "THROUGHPUT"
    del config["NUM_STREAMS"]
    return config


def openvino_device(target: Target) -> str | None:
    """The OpenVINO device of ``target`` (its ``[openvino] device``), None without one."""
    return target.backend_table(OpenVINOBackend.name).get("device")


@register
class OpenVINOBackend(Backend):  # available(): the first missing requirement
    name = "openvino"
    packages = ("openvino", "nncf")  # nncf: the weight compression (int4) of compress_weights
    worker_packages = ("openvino", "nncf")
    target_needs = "an [openvino] device"

    def check_target_table(self, table: Table) -> bool:
        return table.get("device", str, None) is not None

    def requirements(self, target: Target) -> list[Requirement]:
        device = openvino_device(target)
        if device is None:
            return [Requirement("[openvino] device", False,
                                f"target {target.name} has no [openvino] device")]
        try:
            import openvino
        except ImportError as error:
            return [Requirement("openvino", False, f"openvino is not installed ({error})",
                                "pip install openvino")]
        found = [Requirement("openvino", True, openvino.__version__)]
        if not target.is_local:
            # Compiled and measured on the device by `autotune worker` (it says at measure
            # time when it has no OpenVINO).
            from autotune.backends.remote import tracker_requirement

            return [*found, tracker_requirement(target.reach.host, target.reach.port,
                                                target.reach.key)]
        devices = openvino.Core().available_devices
        present = any(name.split(".")[0] == device.split(".")[0] for name in devices)
        return [*found, Requirement(
            f"OpenVINO device {device}", present,
            f"found: {', '.join(devices) or 'none'}" if present else
            f"OpenVINO device {device} not present here (found: {', '.join(devices) or 'none'})",
            "" if present else "Intel's GPU driver, Debian: apt-get install intel-opencl-icd"
            if device.startswith("GPU") else f"a machine with an OpenVINO {device} device")]

    def versions(self) -> dict[str, str]:
        return installed_versions(self.packages)

    def runtime_companions(self, swapped) -> list[str]:
        """The nncf release made for the OpenVINO release a spec asks for (the newest of
        them a range allows), unless the spec names nncf too."""
        if "openvino" not in swapped or "nncf" in swapped:
            return []
        specifier = swapped["openvino"]
        for release in sorted(NNCF_FOR_OPENVINO, key=lambda r: tuple(map(int, r.split("."))),
                              reverse=True):
            if any(specifier.contains(f"{release}.{patch}") for patch in range(10)):
                return [f"nncf=={NNCF_FOR_OPENVINO[release]}"]
        raise InputError(f"--runtime openvino{specifier}: no nncf release is known to go with "
                         f"it (known: OpenVINO {', '.join(NNCF_FOR_OPENVINO)}); name one too, "
                         f"e.g. --runtime nncf==VERSION")

    def compile(self, model: QuantizedModel, target: Target, workdir: Path,
                options: CompileOptions = DEFAULT_OPTIONS) -> Artifact:
        import openvino

        if model.precision_hint not in _HINTS:
            raise UnsupportedConfig(f"OpenVINO has no {model.precision_hint} inference precision")
        core = openvino.Core()
        if model.precision_hint != "fp32" and target.is_local:
            supported = core.get_property(openvino_device(target), "OPTIMIZATION_CAPABILITIES")
            if model.precision_hint.upper() not in supported:
                raise UnsupportedConfig(
                    f"{openvino_device(target)} on this host does not support "
                    f"{model.precision_hint} (capabilities: {', '.join(supported)})")
        compression = model.weight_compression
        state = {"precision_hint": model.precision_hint,
                 "quantized": model.config.is_quantized,
                 "weight_only": compression is not None}
        if compression is not None:
            # The CPU plugin quantizes the activations of compressed-weight layers to int8 at
            # run time by default (group of 32) where its kernels can: weight-only configs
            # turn it off (0), so their activations stay the float they name; W4A8 asks for it.
            state["dynamic_quantization"] = (DYNAMIC_GROUP_SIZE
                                             if compression.dynamic_activations else 0)
            if compression.dynamic_activations and not target.is_local:
                raise UnsupportedConfig("dynamic int8 activations are checked on a local "
                                        "OpenVINO device only (compiled here, outputs "
                                        "compared)")
        details: dict = {}
        start = time.perf_counter()
        network = core.read_model(str(model.path))
        read_s = time.perf_counter() - start
        if model.weight_compression is not None:
            # Timed apart (in details, like quantize_s), so compile_s stays the compiler's cost.
            network, details["weight_compression"] = compress_weights(
                network, model.weight_compression, _calibration(model))
        if not target.is_local:
            # The device compiles (its plugin, its CPU): ship OpenVINO IR, weights compressed.
            path = Path(workdir) / "model.xml"
            openvino.save_model(network, str(path), compress_to_fp16=False)
            details["compiled_on"] = "device"
            size = path.stat().st_size + path.with_suffix(".bin").stat().st_size
            return Artifact(self.name, path, size, read_s, state, details)
        artifact = compile_here(core, network, target, state, details, Path(workdir), read_s)
        if compression is not None and compression.dynamic_activations:
            check_dynamic_activations(core, network, target, state, artifact,
                                      _calibration(model))
        return artifact

    def export(self, artifact: Artifact, model: QuantizedModel, target: Target,
               folder: Path) -> Exported:
        """OpenVINO IR (``model.xml``/``.bin``, what any OpenVINO release and device can
        compile) and, where it was compiled here, the measured compiled blob, which only this
        OpenVINO release imports on this kind of device."""
        import openvino

        folder = Path(folder)
        loader = {"device": openvino_device(target),
                  "config": _compile_config(target, artifact.state),
                  "ir": "model.xml"}
        if artifact.path.suffix == ".xml":  # compiled on the device: the IR was measured
            shutil.copyfile(artifact.path, folder / "model.xml")
            shutil.copyfile(artifact.path.with_suffix(".bin"), folder / "model.bin")
            return Exported(("model.xml", "model.bin"), "model.xml", loader)
        # The IR of the model the blob was compiled from, saved with the settings compile
        # uses for a device's IR (weights as they are, no fp16 compression).
        network = openvino.Core().read_model(str(model.path))
        if model.weight_compression is not None:
            network, _ = compress_weights(network, model.weight_compression,
                                          _calibration(model))
        openvino.save_model(network, str(folder / "model.xml"), compress_to_fp16=False)
        shutil.copyfile(artifact.path, folder / "model.blob")
        loader["blob"] = "model.blob"
        return Exported(("model.xml", "model.bin", "model.blob"), "model.blob", loader)

    def notes(self, artifact: Artifact) -> tuple[Note, ...]:
        # A device-compiled artifact's op precisions arrive with its measurement.
        fallback = artifact.details.get("float_fallback") or []
        heavy = artifact.details.get("op_precisions") or []
        if fallback:
            names = ", ".join(fallback[:4]) + (" ..." if len(fallback) > 4 else "")
            return (Note(FLOAT_FALLBACK, f"int8 requested but {len(fallback)} of "
                                           f"{len(heavy)} heavy ops ran in float ({names})"),)
        if heavy and "float_fallback" in artifact.details:  # quantized, all integer
            kernels = sorted({op["kernel"] for op in heavy})
            return (Note("integer_kernels", f"all {len(heavy)} heavy ops ran integer kernels "
                                            f"({', '.join(kernels)}), so the time goes to "
                                            f"conversions and overhead", CAUSE),)
        return ()

    def measure(self, artifact: Artifact, evaluation: Sequence[Feeds], target: Target,
                protocol: MeasurementProtocol) -> Measurement:
        import openvino

        if not target.is_local:
            from autotune.backends.openvino_remote import measure_on_device

            return measure_on_device(artifact, evaluation, target, protocol,
                                     openvino_device(target))
        def load() -> Session:
            core = openvino.Core()
            compiled = core.import_model(artifact.path.read_bytes(), openvino_device(target),
                                         _compile_config(target, artifact.state))
            return _OpenVINOSession(compiled)

        return measure_session(load, evaluation, protocol)

    def measure_throughput(self, model: QuantizedModel, artifact: Artifact,
                           evaluation: Sequence[Feeds], target: Target,
                           protocol: MeasurementProtocol, batches: Sequence[int],
                           workdir: Path, options: CompileOptions = DEFAULT_OPTIONS
                           ) -> ThroughputFacts:
        """Each batch size under the THROUGHPUT hint: the model (as compiled for the trial)
        reshaped to the batch, compiled with the hint, and its optimal number of infer
        requests kept busy through an ``AsyncInferQueue``."""
        import openvino

        if not target.is_local:
            return ThroughputFacts(error="throughput is measured on local targets only")
        core = openvino.Core()
        return each_batch(batches, lambda requested: _throughput_point(
            core, model, artifact, evaluation, target, protocol, requested))


def _throughput_point(core, model: QuantizedModel, artifact: Artifact,
                      evaluation: Sequence[Feeds], target: Target,
                      protocol: MeasurementProtocol, requested: int) -> ThroughputPoint:
    import openvino

    network = core.read_model(str(model.path))
    if model.weight_compression is not None:
        network, _ = compress_weights(network, model.weight_compression, _calibration(model))
    first = evaluation[0]
    model_batch = next(iter(first.values())).shape[0]
    shapes = [[None if dim.is_dynamic else dim.get_length() for dim in port.get_partial_shape()]
              for port in network.inputs]
    batch, note = batch_of(shapes, requested)
    if batch != model_batch:
        try:
            network.reshape({name: openvino.PartialShape([batch, *array.shape[1:]])
                             for name, array in first.items()})
        except RuntimeError as error:  # a graph that fixes its batch (a Reshape to [1, ...])
            lines = str(error).strip().splitlines()
            raise ValueError(f"the model cannot be reshaped to batch {batch} "
                             f"({lines[0] if lines else 'OpenVINO refused'})") from None
    compiled = core.compile_model(network, openvino_device(target),
                                  _throughput_config(target, artifact.state))
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    streams = int(compiled.get_property("NUM_STREAMS"))
    queue = openvino.AsyncInferQueue(compiled, requests)
    # Tensors made once: the timed loop hands them over, as a server's buffers would.
    feeds = [{name: openvino.Tensor(array) for name, array in batch_feeds.items()}
             for batch_feeds in batched_feeds(evaluation, batch, model_batch)]
    timed = timed_window(lambda index: queue.start_async(feeds[index % len(feeds)]),
                         queue.wait_all, protocol, warmup=max(protocol.warmup_runs, 2 * requests))
    produced = queue[0].get_output_tensor(0).shape
    if produced and produced[0] != batch:
        raise ValueError(f"the graph does not take batch {batch}: its first output has shape "
                         f"{list(produced)}")
    return point(requested, batch, timed,
                 f"THROUGHPUT hint, {streams} stream{'s' if streams != 1 else ''}, "
                 f"{requests} async request{'s' if requests != 1 else ''}", note,
                 streams=streams, requests=requests)


DYNAMIC_GROUP_SIZE = 32  # input channels per int8 scale of a dynamically quantized activation


def check_dynamic_activations(core, network, target: Target, state: dict, artifact: Artifact,
                              calibration: Sequence[Feeds]) -> None:
    """Raise ``UnsupportedConfig`` unless dynamic int8 activations changed what runs.

    OpenVINO takes the dynamic quantization property on any CPU and says nothing when its
    kernels cannot use it (this suite's AVX2 host: ``brgemm_avx2_f32`` kernels, every output
    bit for bit the weight-only model's). Its outputs on one calibration sample, against
    the same model compiled with dynamic quantization off, are the proof either way.
    """
    import openvino

    if not calibration:
        raise UnsupportedConfig("dynamic int8 activations are checked on a calibration sample, "
                                "and none was given")
    dynamic = core.import_model(artifact.path.read_bytes(), openvino_device(target),
                                _compile_config(target, state))
    plain = core.compile_model(network, openvino_device(target),
                               _compile_config(target, {**state, "dynamic_quantization": 0}))
    feeds = {name: openvino.Tensor(array) for name, array in calibration[0].items()}
    same = all(np.array_equal(a, b) for a, b in zip(dynamic(feeds).values(),
                                                    plain(feeds).values(), strict=True))
    if same:
        kernels = sorted({op["kernel"] for op in artifact.details["op_precisions"]
                          if op["weights_integer"]})
        raise UnsupportedConfig(f"OpenVINO {openvino_device(target)} here does not quantize "
                                f"activations at run time: with dynamic quantization (group "
                                f"{DYNAMIC_GROUP_SIZE}) every output is bit for bit the "
                                f"weight-only model's (its compressed-weight kernels: "
                                f"{', '.join(kernels) or 'none'})")


def compile_here(core, network, target: Target, state: dict, details: dict, workdir: Path,
                 read_s: float) -> Artifact:
    """Compile for a device of this machine and export the blob (its op precisions too)."""
    start = time.perf_counter()
    compiled = core.compile_model(network, openvino_device(target),
                                  _compile_config(target, state))
    compile_s = read_s + time.perf_counter() - start
    path = workdir / "model.blob"
    path.write_bytes(compiled.export_model().getvalue())
    details["op_precisions"] = runtime_op_precisions(compiled)
    if state["quantized"]:
        ops = details["op_precisions"]
        if state["weight_only"]:
            # Weight-only: what falls back is a layer whose weights stayed float; a MatMul
            # of two activations has no weights to compress.
            details["float_fallback"] = [op["name"] for op in ops if op["type"] != "MatMul"
                                         and not op["weights_integer"]]
        else:
            details["float_fallback"] = [op["name"] for op in ops if not op["integer"]]
    return Artifact(OpenVINOBackend.name, path, path.stat().st_size, compile_s, state, details)


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


_NNCF_MODES = {("int4", True): "INT4_SYM", ("int4", False): "INT4_ASYM",
               ("int8", True): "INT8_SYM", ("int8", False): "INT8_ASYM"}


def _calibration(model: QuantizedModel) -> list | None:
    """The calibration split a data-aware weight compression reads (None: data-free)."""
    return None if model.calibration_path is None else load_calibration(model.calibration_path)


def compress_weights(network, compression: WeightCompression,
                     calibration: Sequence[Feeds] | None = None) -> tuple[object, dict]:
    """Weight-only quantization of an OpenVINO model with NNCF.

    NNCF's defaults are kept: with int4, every MatMul weight is int4 except the embeddings
    and the last layer, which stay int8 (its backup mode); ``details`` counts both. With
    ``compression.int4_ratio`` NNCF keeps more weights in int8, the share (1 - ratio) its
    sensitivity criterion ranks highest (activation statistics of the calibration split
    with a data-aware algorithm, the weights' own quantization error without). AWQ,
    scale estimation and GPTQ (``compression.algorithm``) read ``calibration``, the
    calibration split only; round to nearest reads no data.

    Returns:
        The compressed model and what was done, with the time it took.

    Raises:
        UnsupportedConfig: nncf is not installed, or the group size does not divide the
            input channels of a layer.
    """
    try:
        import nncf
        import nncf.errors
    except ImportError as error:
        raise UnsupportedConfig(f"weight-only quantization on OpenVINO needs nncf ({error})"
                                ) from None
    logging.getLogger("nncf").setLevel(logging.WARNING)
    mode = _NNCF_MODES[(compression.dtype, compression.symmetric)]
    options: dict = {"mode": getattr(nncf.CompressWeightsMode, mode)}
    if compression.dtype == "int4":
        options.update(group_size=compression.group_size or -1,
                       ratio=compression.int4_ratio or 1.0)
    if compression.data_aware:
        if not calibration:
            raise UnsupportedConfig(f"NNCF's {compression.algorithm} needs calibration data "
                                    f"and none was given")
        options.update({compression.algorithm: True, "dataset": nncf.Dataset(list(calibration)),
                        "subset_size": len(calibration)})
    start = time.perf_counter()
    # The data-aware algorithms read MatMul weights as [out, in] (see the rewrite's note).
    transposed = transpose_matmul_weights(network) if compression.data_aware else 0
    try:
        compressed = nncf.compress_weights(network, **options)
    except (nncf.errors.InvalidGroupSizeError, nncf.errors.UnsupportedModelError) as error:
        # A group size that does not divide a layer's input channels is the model's shape,
        # not a compiler failure: this config cannot be expressed for this model.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UnsupportedConfig(f"NNCF cannot compress this model's weights as {mode.lower()}"
                                f" (group size {options.get('group_size')}): {first_line}"
                                ) from None
    except RuntimeError as error:
        # What NNCF's GPTQ cannot take even as [out, in] (e.g. transposed activations, 3D
        # weights) it says with a RuntimeError: the model's layout, not a crash.
        if compression.algorithm != "gptq" or "not supported" not in str(error):
            raise
        raise UnsupportedConfig(f"NNCF's GPTQ cannot compress this model: {error}") from None
    constants = Counter(op.get_output_element_type(0).get_type_name()
                        for op in compressed.get_ops() if op.get_type_name() == "Constant")
    return compressed, {"mode": mode.lower(), "group_size": options.get("group_size"),
                        "algorithm": compression.algorithm, "ratio": options.get("ratio"),
                        "calibration_samples": options.get("subset_size", 0),
                        "weights_transposed": transposed,
                        "nncf": version("nncf"), "compress_s": time.perf_counter() - start,
                        "weights_int4": constants["i4"] + constants["u4"],
                        "weights_int8": constants["i8"] + constants["u8"]}


def transpose_matmul_weights(network) -> int:
    """Store every constant 2D MatMul weight as [out, in] (``transpose_b``), as PyTorch's
    Linear does; returns how many were rewritten.

    ONNX exports store MatMul weights as [in, out]. NNCF's GPTQ refuses that layout, and
    its scale estimation accepts it but reduces over the wrong axis (all-MiniLM-L6-v2: the
    sentence embeddings' cosine to fp32 falls to 0.05; 0.95 as [out, in]). The rewrite
    is graph surgery, not numerics: the same products, the weight read the other way.
    """
    from openvino import opset13

    rewritten = 0
    for op in network.get_ops():
        if op.get_type_name() != "MatMul" or op.get_attributes()["transpose_b"]:
            continue
        source = op.input_value(1).get_node()
        if source.get_type_name() != "Constant" or len(source.get_output_shape(0)) != 2:
            continue
        transposed = opset13.constant(np.ascontiguousarray(source.get_data().T))
        transposed.set_friendly_name(source.get_friendly_name())
        op.input(1).replace_source_output(transposed.output(0))
        op.set_attribute("transpose_b", True)
        rewritten += 1
    network.validate_nodes_and_infer_types()
    return rewritten


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
            # Integer weights decompressed into a float kernel (weight-only) compute in float.
            "integer": kernel.endswith("_I8") or (precision in _INTEGER_PRECISIONS
                                                  and not kernel.endswith("_f32")),
            "weights_integer": precision in _INTEGER_PRECISIONS,
            "original": _rt(info, "originalLayersNames"),
        })
    return ops


def _rt(info, key: str) -> str:
    if key not in info:
        return ""
    value = info[key]
    return str(value.astype(str)) if hasattr(value, "astype") else str(value)

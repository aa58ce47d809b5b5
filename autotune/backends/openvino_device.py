"""OpenVINO on a remote device, the device's side: ``autotune.openvino_measure``, served by
``autotune worker`` where OpenVINO is installed (``autotune.backends.device``). The host's
side is ``autotune.backends.openvino_remote``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from autotune.backends.openvino import OpenVINOBackend, compile_here
from autotune.backends.openvino_remote import unpack
from autotune.measure import MeasurementProtocol
from autotune.outputs import save_outputs
from autotune.target_spec import Target


def serve_measure(request_json: str) -> str:
    """The device's side (``autotune.openvino_measure``, registered by ``autotune worker``):
    compile the uploaded IR with this device's plugin, measure it, keep the outputs for the
    host to download. Runs in the RPC session's process, in its upload folder."""
    import openvino
    import tvm

    request = json.loads(request_json)
    workpath = tvm.get_global_func("tvm.rpc.server.workpath")
    target = Target(name="device", description="", device="cpu", arch="",
                    cores=request["threads"],
                    backend_tables={OpenVINOBackend.name: {"device": request["device"]}})
    core = openvino.Core()
    start = time.perf_counter()
    network = core.read_model(workpath(request["model"]))
    read_s = time.perf_counter() - start
    compiled_dir = Path(workpath("compiled"))
    compiled_dir.mkdir(exist_ok=True)
    state = {name: request[name] for name in ("precision_hint", "quantized", "weight_only")}
    artifact = compile_here(core, network, target, state, {}, compiled_dir, read_s)
    with np.load(workpath(request["inputs"])) as data:
        evaluation = unpack(data)
    measurement = OpenVINOBackend().measure(artifact, evaluation, target,
                                            MeasurementProtocol(**request["protocol"]))
    save_outputs(Path(workpath(request["outputs"])), measurement.outputs)
    return json.dumps({"compile_s": artifact.compile_s, "load_s": measurement.load_s,
                       "first_inference_ms": measurement.first_inference_ms,
                       "latencies_ms": measurement.latencies_ms, "details": artifact.details,
                       "machine": None if measurement.machine is None
                       else measurement.machine.to_json()})

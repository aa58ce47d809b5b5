"""OpenVINO on a remote device, through the same TVM RPC tracker as the TVM backend.

The host ships OpenVINO IR (weights already compressed where the config asks) and the
evaluation inputs; ``autotune worker`` on the device compiles it with the device's own
plugin (e.g. the ARM CPU plugin) and measures it under the usual protocol
(``autotune.openvino_measure``), then the host fetches the outputs back. This module is the
host's side of that call; ``autotune.backends.openvino_device`` is the device's.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autotune.backends.base import Artifact
from autotune.measure import Feeds, Measurement, MeasurementProtocol
from autotune.outcome import DeviceFacts, MachineState
from autotune.outputs import load_outputs
from autotune.target_spec import Target

DEVICE_FUNCTION = "autotune.openvino_measure"


def measure_on_device(artifact: Artifact, evaluation: Sequence[Feeds], target: Target,
                      protocol: MeasurementProtocol, device: str) -> Measurement:
    """Upload, compile and measure on the target's device (its OpenVINO ``device``); the
    host's side of the call."""
    from autotune.backends.remote import connect, device_info

    reach = target.reach
    start = time.perf_counter()
    session = connect(reach.host, reach.port, reach.key)
    info = device_info(session)
    try:
        measure = session.get_function(DEVICE_FUNCTION)
    except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing function
        raise RuntimeError(f"the device under key {reach.key} does not serve OpenVINO "
                           f"(start `autotune worker` there with openvino installed)") from None
    xml = Path(artifact.path)
    for path in (xml, xml.with_suffix(".bin")):
        session.upload(str(path), path.name)
    session.upload(bytearray(_pack(evaluation)), "inputs.npz")
    upload_s = time.perf_counter() - start
    answer = json.loads(measure(json.dumps({
        "model": xml.name, "inputs": "inputs.npz", "outputs": "outputs.npz",
        "device": device, "threads": target.threads,
        "precision_hint": artifact.state["precision_hint"],
        "quantized": artifact.state["quantized"],
        "weight_only": artifact.state["weight_only"],
        "protocol": protocol.to_dict()})))
    outputs = load_outputs(io.BytesIO(bytes(session.download("outputs.npz"))))
    details = {**answer["details"], "upload_s": upload_s,
               "device_compile_s": answer["compile_s"]}
    return Measurement(load_s=answer["load_s"], first_inference_ms=answer["first_inference_ms"],
                       latencies_ms=answer["latencies_ms"], outputs=outputs, details=details,
                       device=DeviceFacts.from_json(info),
                       # The device's machine during its timed window (None from older ones).
                       machine=MachineState.from_json(answer.get("machine")))


def _pack(evaluation: Sequence[Feeds]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, count=len(evaluation),
             **{f"{index}/{name}": array for index, feeds in enumerate(evaluation)
                for name, array in feeds.items()})
    return buffer.getvalue()


def unpack(data) -> list[Feeds]:
    evaluation: list[Feeds] = [{} for _ in range(int(data["count"]))]
    for key in data.files:
        if "/" in key:
            index, name = key.split("/", 1)
            evaluation[int(index)][name] = data[key]
    return evaluation

"""Remote devices through TVM's RPC tracker, the host side: is the device there, open a
session on it, ask it what it is.

The device side (``autotune worker``: a TVM RPC server plus the suite's own device
functions) is ``autotune.backends.device``. Only numpy and TVM must be installed on the
device; this module imports nothing heavier at module level.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

# Functions `autotune worker` serves on a device (autotune.backends.device registers them).
# The device's clock around one call: how the host times a freshly loaded module's first
# (cold) run, which TVM's time evaluator cannot (it always runs once untimed first).
TIME_CALL_FUNCTION = "autotune.time_call"
MEMORY_LEVELS_FUNCTION = "autotune.memory_levels"  # the roofline's level bandwidths, there

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class TrackerState:
    """What a tracker says about one key: reachable, and the reason when not."""

    ok: bool
    reason: str
    free: int = 0


def tracker_state(host: str, port: int, key: str,
                  timeout_s: float = PROBE_TIMEOUT_S) -> TrackerState:
    """Ask the tracker whether a server is registered under ``key`` (never blocks long).

    TVM's own client retries a refused connection for a minute; listing targets must not.
    """
    from tvm.rpc import base

    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as error:
        why = error.strerror or error
        return TrackerState(False, f"tracker {host}:{port} not answering ({why})")
    try:
        sock.settimeout(timeout_s)
        sock.sendall(base.struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = base.struct.unpack("<i", base.recvall(sock, 4))[0]
        if magic != base.RPC_TRACKER_MAGIC:
            return TrackerState(False, f"{host}:{port} is not a TVM RPC tracker")
        base.sendjson(sock, [base.TrackerCode.SUMMARY])
        code, summary = base.recvjson(sock)
    except (OSError, ValueError) as error:
        return TrackerState(False, f"tracker {host}:{port} did not answer a summary ({error})")
    finally:
        sock.close()
    if code != base.TrackerCode.SUCCESS:
        return TrackerState(False, f"tracker {host}:{port} refused a summary")
    queue = summary.get("queue_info", {})
    if key not in queue:
        known = ", ".join(sorted(queue)) or "none"
        return TrackerState(False, f"no key {key} registered on tracker {host}:{port} "
                                   f"(keys: {known})")
    return TrackerState(True, "", int(queue[key].get("free", 0)))


def tracker_requirement(host: str, port: int, key: str):
    """The device behind a tracker, as a backend's ``Requirement`` (asked with a short
    timeout)."""
    from autotune.backends.base import Requirement  # not at module level: the device lacks onnx

    state = tracker_state(host, port, key)
    return Requirement(f"tracker {host}:{port} key {key}", state.ok,
                       f"{state.free} free server(s)" if state.ok else state.reason,
                       "" if state.ok else f"a tracker on {host}:{port} (python -m "
                                           f"tvm.exec.rpc_tracker --port {port}) and on the "
                                           f"device: autotune worker --tracker {host}:{port} "
                                           f"--key {key}")


def tracker_summary(host: str, port: int, key: str) -> tuple[bool, str]:
    """One line for scripts: whether ``key`` is served on the tracker."""
    state = tracker_state(host, port, key)
    if not state.ok:
        return False, state.reason
    return True, f"key {key} on tracker {host}:{port}: {state.free} free server(s)"


def connect(host: str, port: int, key: str, session_timeout_s: float = 0):
    """An RPC session on a device registered under ``key`` (waits for a free one)."""
    from tvm import rpc

    state = tracker_state(host, port, key)
    if not state.ok:
        raise ConnectionError(state.reason)
    return rpc.connect_tracker(host, port).request(key, priority=1,
                                                   session_timeout=session_timeout_s)


def device_info(session) -> dict:
    """The device's own description (``autotune.device_info``); a plain TVM RPC server
    without the suite's functions answers with what TVM alone can tell."""
    try:
        describe = session.get_function("autotune.device_info")
    except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing function
        return {"served_by": "tvm.exec.rpc_server", "emulated": ""}
    return json.loads(describe())


def device_memory_levels(session, request: dict) -> list[dict]:
    """The device's own cache and DRAM bandwidths (``autotune.memory_levels``, measured
    there); ``LookupError`` when the device does not serve that function."""

    try:
        measure = session.get_function(MEMORY_LEVELS_FUNCTION)
    except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing function
        raise LookupError(f"the device does not serve {MEMORY_LEVELS_FUNCTION} (a plain TVM "
                          "RPC server, or an older `autotune worker`)") from None
    return json.loads(measure(json.dumps(request)))

"""Remote devices through TVM's RPC tracker, the device side: ``autotune worker``.

A device runs ``autotune worker --tracker HOST:PORT --key KEY``: a TVM RPC server registered
on the tracker under KEY, plus the suite's own device functions (``autotune.device_info``:
what the device is, and whether it is emulated; ``autotune.memory_levels``: the roofline's
cache and DRAM bandwidths, measured on the device; ``autotune.openvino_measure`` where
OpenVINO is installed: compile and measure OpenVINO IR on the device), so the TVM and
OpenVINO backends reach a device through the same tracker. Only numpy and TVM must be
installed on the device; this module imports nothing heavier at module level. The host side
is ``autotune.backends.remote``.
"""

from __future__ import annotations

import json
import os
import platform
import time

from autotune.backends.remote import MEMORY_LEVELS_FUNCTION, TIME_CALL_FUNCTION

# Set by whoever starts a worker under an emulator (scripts/arm-emulator does): latencies
# measured there are not the device's and are stored flagged ``emulated``.
EMULATED_ENV = "AUTOTUNE_EMULATED"  # or `autotune worker --emulated WHY`


def _describe_device() -> str:
    from autotune.host import cpu_model, installed_versions, usable_cores

    return json.dumps({
        "served_by": "autotune worker", "machine": platform.machine(),
        "cpu_model": cpu_model(), "cores": usable_cores(),
        "emulated": os.environ.get(EMULATED_ENV, ""),  # inherited by the forked sessions
        "versions": installed_versions(("apache-tvm", "apache-tvm-ffi", "numpy", "openvino")),
    })


def _time_call(module, name: str, device_type: int, device_id: int, *args) -> float:
    """Run ``module[name](*args)`` once and wait for the device; the wall time in ms."""
    import tvm

    function = module[name]
    device = tvm.runtime.device(device_type, device_id)
    start = time.perf_counter()
    function(*args)
    device.sync()
    return (time.perf_counter() - start) * 1e3


def _measure_memory_levels(request: str) -> str:
    """``autotune.memory_levels``: the roofline's cache and DRAM bandwidths, measured here on
    the device (``autotune.bandwidth``, numpy only) with the device's own threads."""
    from autotune.bandwidth import LevelSpec, measure_levels

    asked = json.loads(request)
    figures = measure_levels([LevelSpec(**level) for level in asked["levels"]],
                             int(asked["threads"]), float(asked["min_time_s"]),
                             int(asked["dram_bytes"]))
    return json.dumps([figure.to_json() for figure in figures])


def _register_device_functions() -> None:
    import tvm

    tvm.register_global_func("autotune.device_info", _describe_device, override=True)
    tvm.register_global_func(TIME_CALL_FUNCTION, _time_call, override=True)
    tvm.register_global_func(MEMORY_LEVELS_FUNCTION, _measure_memory_levels, override=True)
    try:
        import openvino  # noqa: F401
    except ImportError:
        return  # a device without OpenVINO serves TVM only
    from autotune.backends.openvino_device import serve_measure
    from autotune.backends.openvino_remote import DEVICE_FUNCTION

    tvm.register_global_func(DEVICE_FUNCTION, serve_measure, override=True)


def serve(tracker_host: str, tracker_port: int, key: str, host: str = "127.0.0.1",
          port: int = 9091, port_end: int | None = None, emulated: str | None = None) -> None:
    """Serve TVM RPC and the suite's device functions under ``key`` until killed.

    TVM's ``rpc.Server`` starts the server in a fresh interpreter process; this serves from
    this process instead (sessions still fork), which also works where a new process cannot
    be started as a plain executable (an aarch64 interpreter under qemu user-mode emulation).
    ``emulated``: why this device is not the real one (its trials are flagged ``emulated``).
    ``host``: the address it listens on; loopback unless asked, since TVM RPC runs whatever
    library a client uploads: whoever reaches the port runs code here.
    """
    from tvm.rpc import server

    if emulated:
        os.environ[EMULATED_ENV] = emulated
    _register_device_functions()
    server._popen_start_rpc_server(host, port, port_end or port + 100, False,
                                   (tracker_host, tracker_port), key, None, None, False, False,
                                   None)
    state = server.PopenRPCServerState.current
    print(f"autotune worker: serving key {key} on {host}:{state.port} via tracker "
          f"{tracker_host}:{tracker_port}", flush=True)
    state.thread.join()


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ValueError names what is wrong."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """``python -m autotune.backends.device``: the worker without the rest of the CLI (for a
    device that has only numpy and TVM installed, like the emulated ARM worker)."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="autotune-worker")
    add_worker_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    host, port = parse_address(args.tracker)
    serve(host, port, args.key, host=args.host, port=args.port, emulated=args.emulated)
    return 0


def add_worker_arguments(parser) -> None:
    parser.add_argument("--tracker", required=True, metavar="HOST:PORT",
                        help="the TVM RPC tracker to register on")
    parser.add_argument("--key", required=True, help="the device key (a target's [reach] key)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the RPC server listens on (default: 127.0.0.1, this "
                             "machine only; TVM RPC loads and runs any library a client "
                             "uploads, so listen elsewhere, e.g. 0.0.0.0, only on a trusted "
                             "network)")
    parser.add_argument("--port", type=int, default=9091,
                        help="first port to try for the RPC server (default: 9091)")
    parser.add_argument("--emulated", default=None, metavar="WHY",
                        help="this device is emulated (e.g. 'qemu-aarch64'): its latencies are "
                             "stored flagged emulated and never compared with real ones")


if __name__ == "__main__":
    raise SystemExit(main())

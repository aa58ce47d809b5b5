"""A remote device on this machine, for tests: a real TVM RPC tracker and `autotune worker`
(x86, not emulated unless a test says it is), under a key of the test's own. Fast: no emulator
involved."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The worker runs this checkout's autotune, not whichever one the interpreter has installed.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Why an emulated LocalWorker says it is emulated (what its `autotune.device_info` answers).
EMULATED_WHY = "qemu-test: emulated for a test"


class LocalWorker:
    """A real tracker and `autotune worker` on this host, under a key of this test's own.

    ``emulated``: started with ``--emulated WHY`` (its device answers that it is emulated).
    ``plain_tvm``: TVM's own RPC server instead, without the suite's device functions.
    ``host``: the worker's ``--host``; None starts it without one (its default address).
    ``port``: the worker's ``--port``, the first port it tries; None: a free one.
    """

    def __init__(self, emulated: str | None = None, plain_tvm: bool = False,
                 host: str | None = "127.0.0.1", port: int | None = None) -> None:
        from tvm.rpc.tracker import Tracker

        from autotune.backends.remote import tracker_state

        self.tracker = Tracker("127.0.0.1", port=free_port(), port_end=65535, silent=True)
        self.port, self.key = self.tracker.port, f"test-{os.getpid()}"
        server = ["tvm.exec.rpc_server"] if plain_tvm else ["autotune", "worker"]
        self.worker = subprocess.Popen(
            [sys.executable, "-m", *server, "--tracker",
             f"127.0.0.1:{self.port}", "--key", self.key, *(["--host", host] if host else []),
             "--port", str(port := port or free_port()),
             *(["--port-end", str(port + 100)] if plain_tvm else []),
             *(["--emulated", emulated] if emulated else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
                str(PACKAGE_ROOT), os.environ.get("PYTHONPATH"))))})
        deadline = time.monotonic() + 60
        while not tracker_state("127.0.0.1", self.port, self.key).ok:
            if self.worker.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("autotune worker did not register on the tracker in 60 s")
            time.sleep(0.2)

    def target_toml(self, path: Path) -> Path:
        path.write_text(f"""
device = "cpu"
arch = "x86_64"
cores = 1
[reach]
kind = "tracker"
host = "127.0.0.1"
port = {self.port}
key = "{self.key}"
[openvino]
device = "CPU"
[tvm]
target = {{ kind = "llvm" }}
""")
        return path

    def stop(self) -> None:
        if self.worker.poll() is None:
            os.killpg(self.worker.pid, 9)
        self.worker.wait()
        if self.tracker.proc is not None:
            self.tracker.terminate()


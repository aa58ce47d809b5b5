"""``autotune worker`` is safe by default: TVM RPC runs whatever library a client uploads, so
the worker listens on loopback unless ``--host`` says otherwise."""

from __future__ import annotations

import ipaddress
import socket

import psutil
import pytest

from autotune.testing.remote import LocalWorker

pytestmark = pytest.mark.tvm
pytest.importorskip("tvm", reason="apache-tvm is not installed")


def _other_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, or None when it has none."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(
                    address.address).is_loopback:
                return address.address
    return None


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.readme_claim("autotune worker listens on 127.0.0.1 unless --host says otherwise")
@pytest.mark.readme_claim("the worker takes the first free port from --port")
def test_a_worker_without_host_listens_on_loopback_only_from_the_first_free_port():
    with socket.socket() as taken:  # something else already listens on --port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        first = taken.getsockname()[1]
        worker = LocalWorker(host=None, port=first)  # the test fails unless it registers
        try:
            listening = [c.laddr for c in psutil.Process(worker.worker.pid).net_connections(
                "tcp") if c.status == psutil.CONN_LISTEN]
            assert len(listening) == 1 and listening[0].ip == "127.0.0.1"
            port = listening[0].port
            assert first < port <= first + 100  # tried upward from --port
            assert _reachable("127.0.0.1", port)
            other = _other_address()  # None: no other address to try from
            assert other is None or not _reachable(other, port), \
                f"the worker answered on {other}:{port}"
        finally:
            worker.stop()

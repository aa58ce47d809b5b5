"""Fixtures of the backend tests (nothing heavy imported here)."""

from __future__ import annotations

import pytest


@pytest.fixture
def local_worker():
    """A real tracker and `autotune worker` on this host (autotune.testing.remote), not
    emulated."""
    from autotune.testing.remote import LocalWorker

    worker = LocalWorker()
    yield worker
    worker.stop()


@pytest.fixture
def emulated_worker():
    """Like ``local_worker``, started with ``--emulated EMULATED_WHY``."""
    from autotune.testing.remote import EMULATED_WHY, LocalWorker

    worker = LocalWorker(emulated=EMULATED_WHY)
    yield worker
    worker.stop()

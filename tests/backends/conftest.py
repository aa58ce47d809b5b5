"""Fixtures of the backend tests (nothing heavy imported here)."""

from __future__ import annotations

import pytest


@pytest.fixture
def local_worker():
    """A real tracker and `autotune worker` on this host (autotune.testing.remote)."""
    from autotune.testing.remote import LocalWorker

    worker = LocalWorker()
    yield worker
    worker.stop()

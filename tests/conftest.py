"""Shared fixtures. Nothing heavy is imported here: backend tests import their runtime."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-conv CNN on 1x3x16x16 with random weights (real ONNX, compiles in a second)."""
    from autotune.testing.models import tiny_cnn

    return tiny_cnn(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A fresh working directory, so results/ and reports/ of a test stay in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per test module (tests/browser.py); skips without one."""
    from browser import Chromium, find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium: apt-get install chromium (or set $CHROMIUM) to check "
                    "reports in a browser")
    pytest.importorskip("websocket", reason="pip install websocket-client (the test extra)")
    with Chromium(binary) as browser:
        yield browser

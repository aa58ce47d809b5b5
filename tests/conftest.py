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

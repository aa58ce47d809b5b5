"""Shared fixtures. Nothing heavy is imported here: backend tests import their runtime."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-conv CNN on 1x3x16x16 with random weights (real ONNX, compiles in a second)."""
    from autotune.testing.models import tiny_cnn

    return tiny_cnn(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_run(tiny_model, tmp_path_factory) -> Path:
    """The workspace of one real smoke run (fp32 and int8 on OpenVINO) of the tiny CNN: its
    store is ``results/autotune.db``, its report under ``reports/``. Read it; a test that
    writes copies the store first."""
    from autotune.cli import main

    workspace = tmp_path_factory.mktemp("real-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workspace)
        code = main(["run", "--model", str(tiny_model), "--space", "smoke", "--backend",
                     "openvino", "--min-repeats", "5", "--min-time", "0.05", "--no-progress"])
        assert code == 0
    return workspace


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


# README claims: tests marked ``readme_claim("...")`` are listed at the end of every pytest
# run (CI's log included) as "claim -> test id -> outcome", so a reader sees which test
# proves each claim and whether it ran here: a skip or a deselection (the `slow` set) is
# shown as such, never as passed. A test may carry several claims (one real run proving
# several flags); each gets its own line.
_CLAIMS: dict[str, tuple[list[str], str]] = {}  # test id -> (claims, outcome)


def _claims(item) -> list[str]:
    return [marker.args[0] for marker in item.iter_markers("readme_claim") if marker.args]


def pytest_collection_modifyitems(items):
    for item in items:
        claims = _claims(item)
        if claims:
            _CLAIMS[item.nodeid] = (claims, "not run")


def pytest_deselected(items):
    for item in items:
        claims = _claims(item)
        if claims:
            _CLAIMS[item.nodeid] = (claims, "deselected")


def pytest_runtest_logreport(report):
    if report.nodeid not in _CLAIMS:
        return
    claims, outcome = _CLAIMS[report.nodeid]
    if report.failed:
        outcome = "failed"
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call" and outcome == "not run":
        outcome = "passed"
    _CLAIMS[report.nodeid] = (claims, outcome)


def pytest_terminal_summary(terminalreporter):
    if not _CLAIMS:
        return
    terminalreporter.section("README claims")
    rows = sorted((claim, nodeid, outcome) for nodeid, (claims, outcome) in _CLAIMS.items()
                  for claim in claims)
    for claim, nodeid, outcome in rows:
        terminalreporter.write_line(f"{claim} -> {nodeid} -> {outcome}")

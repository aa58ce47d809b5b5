"""The reliability suite: real faults, signals, bad input and concurrent runs, on a tiny model.

Run it alone with ``python -m pytest -m reliability``; it ends with one line per case and a
count, so a nightly log shows at a glance which failure mode broke. Nothing heavy is imported
here: the store and the CLI are imported inside the fixtures that need them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each reliability case's outcome (a failing setup or teardown fails it too)."""
    if "reliability" not in report.keywords:
        return
    if report.failed:
        _outcomes[report.nodeid] = "failed" if report.when == "call" else "error"
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Print ``reliability: N cases, P passed, F failed`` and one line per case."""
    if not _outcomes:
        return
    counts = {outcome: sum(value == outcome for value in _outcomes.values())
              for outcome in ("passed", "failed", "error", "skipped")}
    terminalreporter.section("reliability")
    for nodeid, outcome in sorted(_outcomes.items()):
        terminalreporter.write_line(f"{outcome.upper():8} {nodeid}")
    extra = "".join(f", {counts[name]} {name}" for name in ("error", "skipped") if counts[name])
    terminalreporter.write_line(f"reliability: {len(_outcomes)} cases, {counts['passed']} "
                                f"passed, {counts['failed']} failed{extra}")


def _take_sigint() -> None:
    """Let the run take Ctrl-C even when pytest itself ignores SIGINT.

    A shell without job control starts background jobs (``pytest ... &``, nohup in a
    script) with SIGINT ignored, and an ignored signal stays ignored across exec: the run
    would never see the Ctrl-C that a test sends.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def store_url(workspace: Path) -> str:
    return f"sqlite:///{workspace}/results/autotune.db"


@pytest.fixture
def autotune_cli(workspace: Path) -> Callable[..., subprocess.Popen]:
    """Start ``python -m autotune ARGS`` in the workspace as its own process group.

    Its own group, so that a test can signal the run as a terminal or a scheduler would,
    without signalling pytest.
    """
    started: list[subprocess.Popen] = []

    def start(*args: str, fault: str | None = None) -> subprocess.Popen:
        env = {key: value for key, value in os.environ.items()
               if key != "AUTOTUNE_INJECT_FAULT"}
        if fault:
            env["AUTOTUNE_INJECT_FAULT"] = fault
        child = subprocess.Popen([sys.executable, "-m", "autotune", *args], cwd=workspace,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env, start_new_session=True, preexec_fn=_take_sigint)
        started.append(child)
        return child

    yield start
    for child in started:  # a failed test must not leave a run behind
        if child.poll() is None:
            child.kill()
            child.communicate()


@pytest.fixture
def check_store(store_url: str) -> Callable[..., list]:
    """A function that checks a run's stored state and returns its trials.

    Consistent means: SQLite's own integrity check passes, no trial key is stored twice,
    every trial has a known status, and the run's status says whether it finished.
    """
    def check(run_id: str, *, finished: bool, count: int | None = None) -> list:
        import sqlalchemy as sa

        from autotune.store import Store
        from autotune.trial import STATUSES

        store = Store(store_url)
        with store.engine.connect() as connection:
            assert connection.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
        run = store.get_run(run_id)
        trials = store.trials(run_id)
        assert len({trial.key for trial in trials}) == len(trials), "a trial stored twice"
        assert all(trial.status in STATUSES for trial in trials)
        if finished:
            assert run.status == "finished" and run.finished_at is not None
        else:
            assert run.status != "finished" and run.finished_at is None
        if count is not None:
            assert len(trials) == count, [trial.config.label for trial in trials]
        return trials

    return check

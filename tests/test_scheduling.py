"""Trials on several targets: in parallel across targets, one at a time on each."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from autotune.config import FP32, QuantConfig
from autotune.scheduling import per_target
from autotune.search import Candidate
from autotune.target import Target

INT8 = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None, "minmax")


def _target(name: str) -> Target:
    return Target(name=name, description="", device="cpu", arch="x86_64",
                  backend_tables={"tvm": {"target": {"kind": "llvm"}}}, path=Path(f"{name}.toml"))


def _batch() -> list[Candidate]:
    return [Candidate(config, "tvm", _target(name))
            for name in ("board-a", "board-b") for config in (FP32, INT8)]


@pytest.mark.readme_claim("several targets in one run measure at the same time, one trial at a "
                          "time per target")
def test_targets_measure_at_once_each_one_trial_at_a_time():
    busy: dict[str, int] = {}
    overlap = {"targets": 0, "same_target": 0}
    lock = threading.Lock()

    def measure(candidate: Candidate) -> str:
        name = candidate.target.name
        with lock:
            busy[name] = busy.get(name, 0) + 1
            overlap["same_target"] = max(overlap["same_target"], busy[name])
            overlap["targets"] = max(overlap["targets"], sum(1 for n in busy.values() if n))
        time.sleep(0.2)
        with lock:
            busy[name] -= 1
        return f"{candidate.config.label}@{name}"

    in_flight: set[Candidate] = set()
    started = time.monotonic()
    results = list(per_target(_batch(), measure, in_flight))
    assert time.monotonic() - started < 0.7  # 4 trials x 0.2 s, two targets at once
    assert overlap == {"targets": 2, "same_target": 1}
    for name in ("board-a", "board-b"):  # each target keeps the batch's order
        assert [r for _, r in results if r.endswith(name)] == [f"fp32@{name}",
                                                               f"{INT8.label}@{name}"]


def test_an_exception_in_a_target_thread_reaches_the_caller():
    # Failed trials are results (the driver's measure never raises for them); an exception
    # here is a bug, and must not vanish in a thread.
    def measure(candidate: Candidate) -> str:
        if candidate.target.name == "board-a":
            raise ConnectionError("board-a went away")
        time.sleep(0.05)
        return candidate.target.name

    results = per_target(_batch(), measure, set())
    with pytest.raises(ConnectionError, match="went away"):
        list(results)


def test_one_target_runs_in_the_callers_thread():
    threads = set()

    def measure(candidate: Candidate) -> None:
        threads.add(threading.current_thread())

    batch = [c for c in _batch() if c.target.name == "board-a"]
    assert len(list(per_target(batch, measure, set()))) == 2
    assert threads == {threading.main_thread()}


def test_closing_early_stops_every_target():
    measured = []

    def measure(candidate: Candidate) -> str:
        time.sleep(0.1)
        measured.append(candidate)
        return candidate.target.name

    in_flight: set[Candidate] = set()
    results = per_target(_batch() * 3, measure, in_flight)  # 6 trials per target
    next(results)
    results.close()  # what an interrupt does (the driver closes it)
    time.sleep(0.3)
    assert len(measured) <= 4  # each target finishes the trial in flight, starts no other
    assert not any(thread.name.startswith("target-") for thread in threading.enumerate())

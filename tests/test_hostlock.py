"""The host lock (one thing measures at a time on a host) and the target's core set.

The lock tests run real processes against a lock folder of their own and judge by the order
of the events the processes log, never by how long anything took: a taker is known to be
blocked once its waiting flag exists, and only then is the holder told to let go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autotune.hostlock import EXCLUSIVE, SHARED
from autotune.paths import TARGETS

REPO = Path(__file__).resolve().parents[1]

# One lock holder: take the lock, log it, hold it until told to let go, log that, release.
HOLDER = """
import sys, time
from pathlib import Path
from autotune.hostlock import host_lock
name, mode, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
events = folder / "events"
def log(what):
    with open(events, "a") as file:
        file.write(f"{name} {what}\\n")
log("asks")
with host_lock(mode, "a test", folder / f"{name}.waiting") as held:
    log("got")
    while not (folder / f"{name}.release").exists():
        time.sleep(0.01)
    log("releases")
"""


class Holders:
    """Lock-holding processes of one test, sharing a lock folder and an events log."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {**os.environ, "AUTOTUNE_LOCK_DIR": str(folder / "locks"),
                    "PYTHONPATH": str(REPO)}
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, mode: str) -> None:
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-c", HOLDER, name, mode, str(self.folder)], env=self.env)

    def hold(self, name: str, mode: str) -> None:
        """Start ``name`` and wait until it holds the lock."""
        self.start(name, mode)
        self.wait_event(f"{name} got")

    def queue(self, name: str, mode: str) -> None:
        """Start ``name`` and wait until it is blocked, waiting for the lock."""
        self.start(name, mode)
        self.wait_blocked(name)

    def events(self) -> list[str]:
        path = self.folder / "events"
        return path.read_text().splitlines() if path.exists() else []

    def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"never happened: {what}; events: {self.events()}")
            time.sleep(0.01)

    def wait_event(self, event: str) -> None:
        self.wait_for(lambda: event in self.events(), event)

    def wait_blocked(self, name: str) -> None:
        self.wait_for((self.folder / f"{name}.waiting").exists, f"{name} waits")

    def release(self, name: str) -> None:
        (self.folder / f"{name}.release").touch()

    def finish(self) -> list[str]:
        for name in self.processes:
            self.release(name)
        for process in self.processes.values():
            assert process.wait(timeout=60) == 0
        return self.events()

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def holders(tmp_path):
    group = Holders(tmp_path)
    yield group
    group.kill_all()


@pytest.mark.parametrize("first, second", [(EXCLUSIVE, SHARED), (SHARED, EXCLUSIVE),
                                           (EXCLUSIVE, EXCLUSIVE)])
@pytest.mark.readme_claim("one thing measures at a time on a host: timing exclusive, compiling "
                          "shared")
def test_a_holder_blocks_a_taker_of_the_other_kind_until_it_lets_go(holders, first, second):
    holders.hold("holder", first)
    holders.queue("taker", second)
    assert "taker got" not in holders.events()
    holders.release("holder")
    events = holders.finish()
    assert events.index("holder releases") < events.index("taker got")


def test_shared_holders_hold_together(holders):
    holders.hold("one", SHARED)
    holders.hold("two", SHARED)  # while "one" still holds it
    events = holders.finish()
    assert events.index("two got") < events.index("one releases")


@pytest.mark.readme_claim("a waiting timer goes before compiles that asked after it")
def test_a_waiting_timer_goes_before_a_compile_that_asked_later(holders):
    """The turnstile: back-to-back shared holders cannot starve a waiting exclusive one."""
    holders.hold("compile", SHARED)
    holders.queue("timer", EXCLUSIVE)
    holders.queue("next-compile", SHARED)
    holders.release("compile")
    holders.wait_event("timer got")
    assert "next-compile got" not in holders.events()
    events = holders.finish()
    assert events.index("timer releases") < events.index("next-compile got")


def test_a_killed_holder_leaves_no_lock_behind(holders):
    """A worker killed for its time limit releases the lock with its open files."""
    holders.hold("killed", EXCLUSIVE)
    holders.queue("taker", SHARED)
    holders.processes["killed"].send_signal(signal.SIGKILL)
    holders.processes["killed"].wait()
    holders.wait_event("taker got")
    holders.release("taker")
    assert holders.processes.pop("taker").wait(timeout=60) == 0


@pytest.mark.readme_claim("the wait for the host lock does not count against --trial-timeout")
def test_a_wait_for_the_lock_does_not_count_against_the_trial_time_limit(
        tmp_path, tiny_model, monkeypatch):
    """A trial that waits for another process's timing longer than its own time limit still
    runs once the lock is free, and reports the wait."""
    from autotune.config import FP32
    from autotune.data import random_dataset
    from autotune.hostlock import host_lock
    from autotune.measure import MeasurementProtocol
    from autotune.worker import Job, run_isolated

    monkeypatch.setenv("AUTOTUNE_LOCK_DIR", str(tmp_path / "locks"))
    dataset = random_dataset(tiny_model, calibration_count=4, evaluation_count=4)
    dataset.save(tmp_path / "data.npz")
    job = Job(model_path=str(tiny_model), config=FP32.to_dict(), backend="openvino",
              target_path="host-cpu", dataset_path=str(tmp_path / "data.npz"),
              cache_dir=str(tmp_path / "cache"),
              protocol=MeasurementProtocol(warmup_runs=1, min_repeats=3,
                                           min_time_s=0.0).to_dict())
    held = threading.Event()

    def time_elsewhere() -> None:
        with host_lock(EXCLUSIVE, "another run's timing"):
            held.set()
            time.sleep(12)

    timer = threading.Thread(target=time_elsewhere)
    timer.start()
    held.wait()
    result = run_isolated(job, timeout_s=8, memory_limit_bytes=4 << 30)
    timer.join()
    assert result.status == "ok", result.error
    assert result.outcome.measured.details["host_lock_wait_s"] > 0


def test_core_lists_and_sets():
    from autotune.cores import parse_cpu_list, target_cpus
    from autotune.errors import InputError
    from autotune.target_spec import Target

    assert parse_cpu_list("0-3,6") == (0, 1, 2, 3, 6)
    with pytest.raises(ValueError, match="backwards"):
        parse_cpu_list("3-1")
    with pytest.raises(ValueError, match="expected a count or CPU numbers"):
        parse_cpu_list("a-b")

    def target(cores=0, cpu_list=()):
        return Target(name="t", description="", device="cpu", arch="x86_64", cores=cores,
                      cpu_list=cpu_list)

    allowed = (0, 1, 2, 3)
    assert target_cpus(target(), allowed) == (0, 1, 2, 3)
    assert target_cpus(target(cores=2), allowed) == (2, 3)  # CPU 0 is left to the driver
    assert target_cpus(target(cores=8), allowed) == allowed
    assert target_cpus(target(2, (0, 1)), allowed) == (0, 1)
    with pytest.raises(InputError, match="CPUs 7 are not among"):
        target_cpus(target(2, (1, 7)), allowed)


@pytest.mark.readme_claim("cores = N pins to the last N CPUs; cores = \"0-3\" names them")
def test_cores_in_a_target_file_may_be_a_count_or_a_cpu_list(tmp_path):
    from autotune.errors import InputError
    from autotune.target import load_target

    host = (TARGETS.builtin / "host-cpu.toml").read_text()
    for text, expected in (('"0-1"', (2, (0, 1))), ("3", (3, ()))):
        path = tmp_path / "pinned.toml"
        path.write_text(host.replace("cores = 0", f"cores = {text}"))
        target = load_target(str(path))
        assert (target.cores, target.cpu_list) == expected
    path.write_text(host.replace("cores = 0", 'cores = "1-"'))
    with pytest.raises(InputError, match=r"pinned.toml.*cores"):
        load_target(str(path))


@pytest.mark.readme_claim("spare_cores = S: all CPUs but S, at least one")
def test_spare_cores_leave_cores_to_the_driver_only_when_the_count_is_not_given(tmp_path):
    from autotune.cores import allowed_cpus
    from autotune.errors import InputError
    from autotune.target import load_target

    host = (TARGETS.builtin / "host-cpu.toml").read_text()
    assert "spare_cores = 1" in host
    allowed = len(allowed_cpus())
    assert load_target("host-cpu").cores == max(1, allowed - 1)
    path = tmp_path / "spare.toml"
    path.write_text(host.replace("spare_cores = 1", f"spare_cores = {allowed + 3}"))
    assert load_target(str(path)).cores == 1  # always one left to time on
    path.write_text(host.replace("cores = 0", "cores = 3"))
    assert load_target(str(path)).cores == 3  # a count given wins
    path.write_text(host.replace("spare_cores = 1", "spare_cores = -1"))
    with pytest.raises(InputError, match=r"spare.toml.*spare_cores"):
        load_target(str(path))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
@pytest.mark.readme_claim("the driver moves to the CPUs left over, if any")
def test_the_driver_moves_off_the_timing_cores_and_back():
    from autotune.cores import allowed_cpus, driver_kept_off

    before = allowed_cpus()
    if len(before) < 2:
        pytest.skip("one CPU: nothing to keep the driver off")
    seen = {}
    with driver_kept_off({before[-1]}) as rest:
        thread = threading.Thread(target=lambda: seen.update(
            thread=tuple(sorted(os.sched_getaffinity(0)))))
        thread.start()
        thread.join()
        assert rest == before[:-1] and allowed_cpus() == rest
        assert seen["thread"] == rest  # threads started meanwhile inherit it
    assert allowed_cpus() == before
    with driver_kept_off(set(before)) as rest:  # no core left over: the driver stays
        assert rest == before and allowed_cpus() == before


@pytest.mark.openvino
@pytest.mark.parametrize("every_core", [False, True], ids=["host-cpu", "every-core"])
@pytest.mark.readme_claim("the trial records its core set (core_set) and thread pools are sized to "
                          "it")
def test_a_host_cpu_trial_records_its_core_set_and_runs_on_it(workspace, every_core):
    """A real digits-cnn OpenVINO trial: host-cpu's worker runs on every CPU the run may use
    but one (``spare_cores = 1``: the last ones; pinning is not a no-op), a copy without a
    spare core on all of them, and the trial says so."""
    pytest.importorskip("openvino")
    from autotune.cli import main
    from autotune.cores import allowed_cpus
    from autotune.store import Store

    before = allowed_cpus()
    target = "host-cpu"
    expected = before[1:] if len(before) > 1 else before
    if every_core:
        target = str(workspace / "every-core.toml")
        Path(target).write_text((TARGETS.builtin / "host-cpu.toml").read_text()
                                .replace("spare_cores = 1", "spare_cores = 0"))
        expected = before
    store_url = f"sqlite:///{workspace}/results/autotune.db"
    code = main(["run", "--model", "digits-cnn", "--space", "smoke", "--target", target,
                 "--backend", "openvino", "--budget", "1", "--no-progress", "--passes", "1",
                 "--min-repeats", "5", "--min-time", "0.05", "--max-spread", "0",
                 "--store", store_url])
    assert code == 0
    store = Store(store_url)
    [trial] = store.trials(store.runs()[0].id)
    assert trial.ok, trial.error
    # core_set is the worker's own affinity while it timed (os.sched_getaffinity there).
    assert trial.core_set == expected
    assert "host_lock_wait_s" in trial.details
    assert allowed_cpus() == before  # the driver is back on every CPU

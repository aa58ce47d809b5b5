"""A run killed mid-trial (SIGKILL, Ctrl-C, SIGTERM) loses no finished trial and resumes.

Every case holds a trial in flight deterministically: the int8 trial's worker hangs in its
measure phase (``hang@measure``), so the signal always lands while a worker is running and
the fp32 trial before it is already stored.
"""

import os
import shlex
import signal
import time

import psutil
import pytest

# The throwaway PostgreSQL cluster (skips without its binaries) and a fresh database on it.
from test_postgres import cluster, pg_url  # noqa: F401 - fixtures

from autotune.config import FP32
from autotune.store import Store

pytestmark = [pytest.mark.openvino, pytest.mark.reliability]
QUICK = ["--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05", "--no-progress",
         "--max-spread", "0", "--passes", "1"]
INT8_ID = "e0c77a5341"  # the smoke space's int8 config; its worker hangs in these tests
HANG = f"hang@measure:{INT8_ID}"


def _start_and_wait_for_the_hanging_worker(autotune_cli, tiny_model, store_url):
    """Start a smoke run whose int8 trial hangs; return it, its run id and the worker."""
    run = autotune_cli("run", "--model", str(tiny_model), "--space", "smoke", "--store",
                       store_url, "--trial-timeout", "120", *QUICK, fault=HANG)
    run_id = run.stdout.readline().split()[1]
    store = Store(store_url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = psutil.Process(run.pid).children()
        if workers and store.trials(run_id) and _phase_of(workers[0]) == "measure":
            return run, run_id, workers[0]  # fp32 is stored, the int8 worker hangs in measure
        assert run.poll() is None, run.communicate()
        time.sleep(0.2)
    raise AssertionError("the int8 worker never reached its measure phase")


def _phase_of(worker: psutil.Process) -> str | None:
    """The phase a worker wrote into its scratch folder (next to the job file it runs)."""
    try:
        job_path = worker.cmdline()[-1]
        with open(os.path.join(os.path.dirname(job_path), "phase")) as phase:
            return phase.read().strip()
    except (OSError, IndexError, psutil.Error):
        return None


def _gone(process: psutil.Process, within_s: float) -> bool:
    try:
        process.wait(timeout=within_s)
    except psutil.TimeoutExpired:
        return False
    return True


def _resume(autotune_cli, run_id, store_url):
    resumed = autotune_cli("run", "--resume", run_id, "--store", store_url, "--no-progress")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming run {run_id}" in err


@pytest.mark.parametrize("whom", ["process group", "parent only"])
@pytest.mark.readme_claim("after a SIGKILL the run stays running and --resume RUN_ID finishes it")
def test_sigkill_mid_trial_kills_the_worker_keeps_the_store_and_resumes(
        workspace, tiny_model, autotune_cli, store_url, check_store, whom):
    run, run_id, worker = _start_and_wait_for_the_hanging_worker(autotune_cli, tiny_model,
                                                                  store_url)
    if whom == "process group":
        os.killpg(run.pid, signal.SIGKILL)
    else:
        run.kill()
    run.communicate(timeout=30)
    # The worker lives in a session of its own, so no group kill reaches it: it must notice
    # that its run died, or it would hang here forever and hold a core.
    assert _gone(worker, within_s=10), "the orphaned worker outlived its run"
    time.sleep(0.5)
    stored = check_store(run_id, finished=False, count=1)  # the orphan wrote nothing
    assert stored[0].config == FP32 and stored[0].ok
    assert check_store(run_id, finished=False)[0].status == "ok"

    _resume(autotune_cli, run_id, store_url)
    trials = check_store(run_id, finished=True, count=2)
    assert trials[0].started_at == stored[0].started_at  # kept, not measured again
    assert trials[0].latencies_ms == stored[0].latencies_ms
    assert {t.config.id: t.status for t in trials} == {FP32.id: "ok", INT8_ID: "ok"}


@pytest.mark.parametrize("how", ["Ctrl-C (SIGINT to the group)", "SIGTERM (to the run)"])
@pytest.mark.readme_claim("Ctrl-C or SIGTERM: exit 130, says which trial was in flight, prints "
                          "--resume")
def test_an_interrupt_says_what_was_in_flight_and_how_to_resume(
        workspace, tiny_model, autotune_cli, store_url, check_store, how):
    run, run_id, worker = _start_and_wait_for_the_hanging_worker(autotune_cli, tiny_model,
                                                                  store_url)
    if how.startswith("Ctrl-C"):
        os.killpg(run.pid, signal.SIGINT)  # what a terminal does: the worker's session is apart
    else:
        run.terminate()
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "Traceback" not in err
    assert (f"interrupted during trial int8 pc uint8-asym minmax ({INT8_ID}) on "
            f"openvino/host-cpu (not stored; it runs again on resume); 1 trial stored; resume "
            f"with: autotune run --resume {run_id} --store {store_url}") in err
    assert _gone(worker, within_s=10), "the interrupted trial's worker kept running"
    stored = check_store(run_id, finished=False, count=1)
    assert stored[0].config == FP32
    assert Store(store_url).get_run(run_id).status == "interrupted"

    _resume(autotune_cli, run_id, store_url)
    trials = check_store(run_id, finished=True, count=2)
    assert trials[0].started_at == stored[0].started_at
    assert all(t.ok for t in trials)


@pytest.mark.postgres
def test_an_interrupted_run_on_a_team_store_prints_no_password(workspace, tiny_model,
                                                               autotune_cli, pg_url):  # noqa: F811
    """The resume hint names the store with its password hidden, quoted for the shell;
    nothing else the run prints or writes carries the password either."""
    secret = "s3cr3t-pw"  # the throwaway cluster trusts local connections: any password works
    url = pg_url.replace("://postgres@", f"://postgres:{secret}@")
    run, run_id, worker = _start_and_wait_for_the_hanging_worker(autotune_cli, tiny_model, url)
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert f"resume with: autotune run --resume {run_id} --store " in err
    hint = err.split("resume with: ")[1].splitlines()[0]
    assert shlex.split(hint)[-1] == url.replace(secret, "***"), err
    written = "".join(path.read_text(errors="replace")
                      for path in (workspace / "reports").rglob("*") if path.is_file())
    assert secret not in out + err + written
    assert _gone(worker, within_s=10)

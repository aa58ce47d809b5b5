"""Runs that share one SQLite store at the same time lose nothing.

A nightly job and a developer's run often start together on the same results/autotune.db;
the store (WAL mode, a busy timeout, schema creation under a write lock) must let both
commit every trial.
"""

import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = [pytest.mark.openvino, pytest.mark.reliability]
QUICK = ["--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05", "--no-progress",
         "--max-spread", "0"]
CONFIGS = ["w:int8:sym:per_tensor a:uint8:asym cal:minmax",
           "w:int8:sym:per_channel a:int8:sym cal:minmax"]

# Each process opens a new store per round at the same wall-clock instant (a busy wait, so
# they start within microseconds of each other) and prints what happened.
_OPENER = textwrap.dedent("""
    import sys, time
    from autotune.store import Store
    folder, start, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    for index in range(rounds):
        while time.time() < start + index:
            pass
        try:
            Store(f"sqlite:///{folder}/round{index}.db")
            print("ok", flush=True)
        except Exception as error:
            print(f"{type(error).__name__}: {error}", flush=True)
""")


def test_runs_that_open_a_new_store_at_the_same_instant_all_get_it(tmp_path):
    """Before schema creation took the write lock, most openers lost with 'table already
    exists' (exit 2), so two nightly runs started by one cron tick could not both run."""
    processes, rounds = 6, 4
    start = time.time() + 4  # after every interpreter has imported sqlalchemy
    openers = [subprocess.Popen([sys.executable, "-c", _OPENER, str(tmp_path), str(start),
                                 str(rounds)], stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    results = [line for opener in openers for line in opener.communicate(timeout=120)[0]
               .splitlines()]
    assert results == ["ok"] * processes * rounds, sorted(set(results))


@pytest.mark.readme_claim("several runs may share one SQLite store at once")
def test_two_runs_on_one_store_at_once_lose_nothing(workspace, tiny_model, autotune_cli,
                                                    store_url, check_store):
    args = ["run", "--model", str(tiny_model), "--store", store_url, *QUICK]
    args += [arg for text in CONFIGS for arg in ("--config", text)]
    runs = [autotune_cli(*args), autotune_cli(*args)]  # started together on a new store
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    run_ids = [out.split()[1] for out, _ in outputs]
    assert len(set(run_ids)) == 2
    for run_id in run_ids:
        trials = check_store(run_id, finished=True, count=3)
        assert all(trial.ok and trial.latencies_ms for trial in trials), [
            (trial.config.label, trial.status, trial.error) for trial in trials]
    from autotune.store import Store

    assert sorted(run.id for run in Store(store_url).runs()) == sorted(run_ids)

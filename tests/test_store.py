import sqlite3
import threading

import pytest

from autotune.config import FP32, QuantConfig
from autotune.errors import InputError
from autotune.store import Run, Store, now
from autotune.testing.store_conformance import StoreConformance
from autotune.trial import Trial

INT8 = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None, "minmax")


def _run(run_id: str, created: str | None = None) -> Run:
    return Run(id=run_id, created_at=created or now(), finished_at=None, status="running",
               model="m", model_path="m.onnx", model_hash="abc", space="default",
               metric="top1", synthetic_data=False, reference_accuracy=0.98, args={"budget": 3},
               host={"cpu_model": "cpu", "cores": 2}, versions={"openvino": "2026.4.1"})


def _trial(run_id: str, config=FP32, status="ok", latency=1.5) -> Trial:
    return Trial(run_id=run_id, model="m", model_hash="abc", config=config, backend="openvino",
                 target="host-cpu", status=status, error="" if status == "ok" else "boom",
                 versions={"openvino": "2026.4.1"}, cpu_model="cpu", cores=2,
                 latencies_ms=[latency, latency + 0.1], latency_median_ms=latency,
                 accuracy=0.97, accuracy_drop=0.01, sqnr_db=float("inf"),
                 details={"op_precisions": [{"name": "conv1", "integer": True}]})


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/results/autotune.db")


def test_round_trip_keeps_every_field(store):
    store.create_run(_run("r1"))
    trial = _trial("r1", INT8)
    store.add_trial(trial)
    (loaded,) = store.trials("r1")
    expected = trial.to_dict()
    expected["sqnr_db"] = 999.0  # infinity is stored as a finite sentinel
    assert loaded.to_dict() == expected
    run = store.get_run("r1")
    assert run.args == {"budget": 3} and run.reference_accuracy == 0.98


def test_one_trial_per_key_and_resume_keys(store):
    store.create_run(_run("r1"))
    store.add_trial(_trial("r1", FP32, status="timeout"))
    store.add_trial(_trial("r1", FP32, status="ok"))
    store.add_trial(_trial("r1", INT8))
    assert [t.status for t in store.trials("r1")] == ["ok", "ok"]
    assert store.finished_keys("r1") == {(FP32.id, "openvino", "host-cpu"),
                                         (INT8.id, "openvino", "host-cpu")}


def test_latest_run_and_missing_runs(store):
    with pytest.raises(InputError, match="no runs"):
        store.get_run()
    store.create_run(_run("a", "2026-01-01T00:00:00+00:00"))
    store.create_run(_run("b", "2026-01-02T00:00:00+00:00"))
    assert store.get_run().id == "b"
    with pytest.raises(InputError, match="no run 'zzz'"):
        store.get_run("zzz")


def test_sqlite_store_uses_wal_and_survives_concurrent_writers(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    Store(url).create_run(_run("r1"))
    errors = []

    def writer(index: int) -> None:
        try:
            store = Store(url)  # each writer its own connection pool, like two processes
            for step in range(10):
                config = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_group",
                                     8 * (index * 10 + step + 1), "minmax")
                store.add_trial(_trial("r1", config))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(Store(url).trials("r1")) == 40
    mode = sqlite3.connect(tmp_path / "shared.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_unopenable_store_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="--store"):
        Store("nosuchdb://x/y")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="--store"):
        Store(f"sqlite:///{blocker}/sub/autotune.db")


class TestSQLiteStore(StoreConformance):
    """The store conformance suite on a SQLite file (the default store)."""

    @pytest.fixture
    def store_url(self, tmp_path) -> str:
        return f"sqlite:///{tmp_path}/results/autotune.db"

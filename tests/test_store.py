"""The SQLite store: the store conformance suite, concurrency, bad URLs, old stores."""

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from autotune.config import QuantConfig
from autotune.errors import InputError
from autotune.outcome import Sensitivity
from autotune.settings import RunSpec
from autotune.store import SCHEMA_VERSION, Store
from autotune.testing.store_conformance import StoreConformance, full_trial, sample_run


def test_sqlite_store_uses_wal_and_survives_concurrent_writers(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    Store(url).create_run(sample_run("r1"))
    errors = []

    def writer(index: int) -> None:
        try:
            store = Store(url)  # each writer its own connection pool, like two processes
            for step in range(10):
                config = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_group",
                                     8 * (index * 10 + step + 1), "minmax")
                store.add_trial(full_trial("r1", config))
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


# Stores written before the change (tests/data/store-v2.db: schema 2, written by the old
# Store itself; see tests/data/make_store_v2.py).
V2_STORE = Path(__file__).parent / "data" / "store-v2.db"


@pytest.mark.parametrize("from_version", [1, 2])
def test_an_old_store_opens_with_typed_settings_facts_and_backend_notes(tmp_path, from_version):
    path = tmp_path / "old.db"
    shutil.copy(V2_STORE, path)
    if from_version == 1:  # schema 1 had neither predictions nor measured peaks
        with sqlite3.connect(path) as connection:
            connection.execute("DROP TABLE predictions")
            connection.execute("DROP TABLE roofline_peaks")
            connection.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    run = store.get_run("old-run")
    assert run.settings == RunSpec(model="digits-cnn", space="default", targets=("host-cpu",),
                                   backends=("openvino", "tvm"), trial_timeout_s=920.0,
                                   tuning_trials=64, passes=3, max_spread=0.1)
    assert run.campaign is None  # schema 4: runs before campaigns belong to none
    fp32, int8, tvm = store.trials("old-run")
    # Passes, roofline and the worker's figures moved out of details into typed fields.
    assert [p.median_ms for p in int8.passes] == [1.0, 0.9, 1.1] and int8.latency_ms == 0.9
    assert int8.quantize_s == 0.25 and int8.compile_memory_bytes == 4096
    assert int8.roofline.bound == "compute" and int8.roofline.peak_gops == {"int8": 1000.0}
    assert int8.sensitivity == Sensitivity("top1", {"conv1": 0.01, "conv2": 0.002})
    assert not {"passes", "roofline", "sensitivity", "quantize_s"} & set(int8.details)
    assert int8.details["op_precisions"]  # the backend's own facts stay, for display
    # Each backend said what it says of a new trial: OpenVINO's fallback, TVM's untuned
    # build and its layer left in float.
    assert [n.text for n in int8.notes] == [
        "int8 requested but 1 of 3 heavy ops ran in float (conv2)"]
    assert fp32.notes == ()
    assert [n.kind for n in tvm.notes] == ["untuned", "float_fallback"]
    assert tvm.notes[1].text == ("1 of 2 conv/matmul layers left in float, not integer "
                                 "(fake-quantized: conv1: asymmetric weights)")
    assert tvm.device.emulated and tvm.device.cpu_model == "Cortex"
    assert tvm.noisy and tvm.spreads == [0.2, 0.15]
    # An upgraded store takes new trials and reads them back alongside the old ones.
    store.add_trial(full_trial("old-run", QuantConfig.from_text("fp16")))
    assert len(store.trials("old-run")) == 4


class TestSQLiteStore(StoreConformance):
    """The store conformance suite on a SQLite file (the default store)."""

    @pytest.fixture
    def store_url(self, tmp_path) -> str:
        return f"sqlite:///{tmp_path}/results/autotune.db"

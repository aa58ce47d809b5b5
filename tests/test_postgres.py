"""The team store on a real PostgreSQL server: same schema and migrations as SQLite, and
concurrent runs that lose no trial.

The tests start a throwaway cluster (initdb and pg_ctl from Debian's ``postgresql``
package) in a temporary folder on a free localhost port, and stop it at the end. As root,
the server runs as the ``postgres`` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from autotune.errors import InputError
from autotune.settings import RunSpec
from autotune.store import SCHEMA_VERSION, Store
from autotune.testing.store_conformance import StoreConformance

pytestmark = pytest.mark.postgres


def _server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """A PostgreSQL cluster in a temporary folder, reachable on 127.0.0.1:port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="autotune-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self.prefix, *command], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            log = self.folder / "server.log"
            raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}"
                               + (log.read_text() if log.exists() else ""))

    def start(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "--no-sync", "-E", "UTF8")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
                  "-l", str(self.folder / "server.log"), "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c max_connections=60", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e .)")
    bin_dir = _server_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start postgres as another user")
    server = Cluster(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(cluster) -> str:
    """A fresh, empty database on the throwaway cluster."""
    return cluster.new_database()


@pytest.mark.readme_claim("--store postgresql+psycopg://...: same schema and migrations as SQLite")
def test_same_schema_and_migration_as_sqlite(pg_url, tmp_path):
    import sqlalchemy as sa

    postgres, sqlite = Store(pg_url), Store(f"sqlite:///{tmp_path}/a.db")

    def schema(store: Store) -> dict:
        inspector = sa.inspect(store.engine)
        return {table: sorted(column["name"] for column in inspector.get_columns(table))
                for table in inspector.get_table_names()}

    assert schema(postgres) == schema(sqlite)
    Store(pg_url)  # reopening migrates nothing and inserts no second version row
    with postgres.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT value FROM meta WHERE key = "
                                          "'schema_version'")).scalars().all()
        assert rows == [str(SCHEMA_VERSION)]
    with postgres.engine.begin() as connection:
        connection.execute(sa.text("UPDATE meta SET value = :v WHERE key = 'schema_version'"),
                           {"v": str(SCHEMA_VERSION + 1)})
    with pytest.raises(InputError, match="newer than this autotune"):
        Store(pg_url)


def test_trials_round_trip_exactly(pg_url, tmp_path):
    from test_compare_cli import FP32, INT8, add_run, draw

    postgres, sqlite = Store(pg_url), Store(f"sqlite:///{tmp_path}/a.db")
    for store in (postgres, sqlite):
        add_run(store, "run-01", "2026.4.1", [(FP32, "ok", draw(1, 2.0)),
                                              (INT8, "compile_error", [])])
    assert postgres.get_run("run-01") == sqlite.get_run("run-01")
    assert postgres.trials("run-01") == sqlite.trials("run-01")
    assert postgres.finished_keys("run-01") == sqlite.finished_keys("run-01")
    trial = postgres.trials("run-01")[1]
    trial.error = "worker killed by SIGSEGV: \x00\x00garbage"
    postgres.add_trial(trial)  # NUL bytes from a crashed worker's log are dropped, not fatal
    assert postgres.trials("run-01")[1].error == "worker killed by SIGSEGV: garbage"


_WRITER = textwrap.dedent("""
    import sys
    from dataclasses import replace
    from autotune.config import QuantConfig
    from autotune.settings import RunSpec
    from autotune.store import Run, Store, now
    from autotune.trial import Trial

    url, shared, index, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = Store(url)
    own = f"own-{index}"
    store.create_run(Run(id=own, created_at=now(), finished_at=None, status="running",
                         model="m", model_path="m.onnx", model_hash="h", space="s",
                         metric="fidelity", synthetic_data=True, reference_accuracy=None,
                         settings=RunSpec(), host={}, versions={}))
    base = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax")
    for number in range(count):
        config = replace(base, overrides=((f"w{index}l{number}", "fp32"),))
        for run_id in (own, shared):
            store.add_trial(Trial(run_id=run_id, model="m", model_hash="h", config=config,
                                  backend="openvino", target="host-cpu", status="ok",
                                  latencies_ms=[1.0, 1.1, 0.9], latency_median_ms=1.0))
""")


@pytest.mark.readme_claim("a team shares one PostgreSQL store; concurrent runs are safe")
def test_concurrent_runs_lose_no_trial(pg_url):
    from autotune.store import Run, now

    writers, count = 6, 25
    Store(pg_url).create_run(Run(
        id="shared", created_at=now(), finished_at=None, status="running", model="m",
        model_path="m.onnx", model_hash="h", space="s", metric="fidelity",
        synthetic_data=True, reference_accuracy=None, settings=RunSpec(), host={}, versions={}))
    processes = [subprocess.Popen([sys.executable, "-c", _WRITER, pg_url, "shared", str(index),
                                   str(count)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
                 for index in range(writers)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * writers, outputs
    store = Store(pg_url)
    assert len(store.trials("shared")) == writers * count
    assert len({trial.key for trial in store.trials("shared")}) == writers * count
    for index in range(writers):
        assert len(store.trials(f"own-{index}")) == count


def test_concurrent_first_opens_of_an_empty_database(cluster):
    url = cluster.new_database()
    script = "import sys; from autotune.store import Store; Store(sys.argv[1])"
    processes = [subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE,
                                  text=True) for _ in range(6)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 6, errors


def test_compare_reads_a_postgres_store(pg_url, capsys):
    from test_compare_cli import FP32, INT8, add_run, draw

    from autotune.cli import main

    store = Store(pg_url)
    add_run(store, "run-01", "2025.4.0", [(FP32, "ok", draw(1, 2.0)), (INT8, "ok", draw(2, 1.0))])
    add_run(store, "run-02", "2026.4.1", [(FP32, "ok", draw(3, 2.0)),
                                          (INT8, "ok", draw(4, 1.0, scale=1.10))])
    assert main(["compare", "run-01", "run-02", "--store", pg_url]) == 1
    assert "REGRESSION: slower" in capsys.readouterr().out


def test_an_unreachable_server_is_bad_input(cluster, capsys):
    from autotune.cli import main

    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/nowhere"
    with pytest.raises(InputError, match="cannot open store"):
        Store(url)
    assert main(["compare", "a", "b", "--store", url]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.openvino
def test_a_real_run_writes_to_postgres(cluster, workspace, tiny_model, capsys):
    from autotune.cli import main

    url = cluster.new_database()
    code = main(["run", "--model", str(tiny_model), "--space", "smoke", "--store", url,
                 "--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05",
                 "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    run_id = out.out.split()[1]
    trials = Store(url).trials(run_id)
    assert [trial.status for trial in trials] == ["ok", "ok"]
    assert all(len(trial.latencies_ms) >= 5 for trial in trials)


class TestPostgresStore(StoreConformance):
    """The store conformance suite on a fresh database of the throwaway server."""

    @pytest.fixture
    def store_url(self, pg_url) -> str:
        return pg_url

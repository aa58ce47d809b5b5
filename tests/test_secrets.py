"""No store password in anything autotune prints, and every command it prints is quoted
for the shell. (The interrupted run on a real PostgreSQL server: tests/test_postgres.py.)"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from autotune.store import shown_url

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-pw"
# A closed port: the run fails to open its store.
CLOSED = [f"postgresql://user:{SECRET}@127.0.0.1:1/db",
          f"postgresql+psycopg://user:{SECRET}@127.0.0.1:1/db"]


@pytest.mark.parametrize("url, shown", [
    (f"postgresql+psycopg://user:{SECRET}@db.example:5432/runs",
     "postgresql+psycopg://user:***@db.example:5432/runs"),
    ("postgresql+psycopg://user@db.example/runs", "postgresql+psycopg://user@db.example/runs"),
    ("sqlite:////tmp/a b/autotune.db", "sqlite:////tmp/a b/autotune.db"),
    (f"not a url://user:{SECRET}@host/db", "not a url://***@host/db"),
])
def test_shown_url_hides_the_password_only(url, shown):
    assert shown_url(url) == shown


@pytest.mark.parametrize("url", CLOSED)
@pytest.mark.parametrize("command", [["run", "--no-progress"], ["report"], ["pick"]])
@pytest.mark.readme_claim("a password in the store URL is never printed: messages show it as ***")
def test_a_failed_command_prints_no_password(workspace, url, command):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
        str(REPO), os.environ.get("PYTHONPATH"))))}
    result = subprocess.run([sys.executable, "-m", "autotune", *command, "--store", url],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert f"--store {shown_url(url)}: cannot open store" in result.stderr


@pytest.mark.readme_claim("the --resume hint shows the password as *** and is quoted for the shell")
def test_the_resume_command_hides_the_password_and_is_quoted():
    from autotune.cli.one_run import resume_command
    from autotune.store import DEFAULT_STORE_URL

    class Opened:  # what resume_command reads of a store (opening one needs a server)
        url = f"postgresql+psycopg://user:{SECRET}@db.example/runs"
        shown_url = shown_url(url)

    command = resume_command("20261201-000000-abcdef", Opened())
    assert SECRET not in command
    assert shlex.split(command) == ["autotune", "run", "--resume", "20261201-000000-abcdef",
                                    "--store", "postgresql+psycopg://user:***@db.example/runs"]

    class Default:
        url = shown_url = DEFAULT_STORE_URL

    assert resume_command("r1", Default()) == "autotune run --resume r1"


@pytest.mark.readme_claim("every command autotune prints is quoted for the shell")
def test_the_reproduce_command_round_trips_through_the_shell():
    from autotune.config import FP32, QuantConfig
    from autotune.report import reproduce_command
    from autotune.settings import RunSpec
    from autotune.store import Run
    from autotune.trial import Trial

    model, data = "/data/my models/net's v2.onnx", "/data/eval set $HOME.npz"
    run = Run(id="r1", created_at="", finished_at=None, status="finished", model="net",
              model_path=model, model_hash="h", space="s", metric="top1", synthetic_data=False,
              reference_accuracy=None, settings=RunSpec(model=model, data=data), host={},
              versions={})
    int8 = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax")
    for config in (FP32, int8):
        trial = Trial(run_id="r1", model="net", model_hash="h", config=config,
                      backend="openvino", target="host-cpu", status="ok")
        argv = shlex.split(reproduce_command(run, trial))
        assert argv[:4] == ["autotune", "run", "--model", model]
        assert argv[argv.index("--data") + 1] == data
        if config != FP32:
            assert argv[argv.index("--config") + 1] == int8.text

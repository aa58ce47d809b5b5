"""``autotune doctor`` on this machine and on one without a C/C++ compiler, and a run there:
TVM's trials are stored ``unavailable`` with the reason instead of failing each one."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPILER = "C/C++ compiler (links TVM's libraries)"


@pytest.fixture
def no_compiler_env(tmp_path) -> dict[str, str]:
    """An environment whose PATH holds only a python (a symlink to this interpreter), with
    CXX and CC unset: a slim image without a compiler."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {key: value for key, value in os.environ.items() if key not in ("CXX", "CC")}
    env["PATH"] = str(bin_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    return env


def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autotune", "doctor", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _checks(result: subprocess.CompletedProcess) -> tuple[bool, dict[tuple[str, str], dict]]:
    data = json.loads(result.stdout)
    return data["default_run_ready"], {(c["scope"], c["what"]): c for c in data["checks"]}


def _here_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
        str(REPO), os.environ.get("PYTHONPATH"))))}


@pytest.mark.readme_claim("autotune doctor [--json]: what this machine lacks per backend and "
                          "target")
def test_doctor_on_this_machine():
    pytest.importorskip("tvm", reason="apache-tvm is not installed")
    from tvm.support.cc import get_cc

    result = _doctor(_here_env(), "--json")
    ready, checks = _checks(result)
    assert result.returncode == (0 if ready else 1), result.stderr
    assert ready == all(c["ok"] for c in checks.values() if c["needed"])
    assert {("host", "cores"), ("host", "memory"), ("tests", "Chromium (HTML report tests)"),
            ("host-cpu/openvino", "openvino"), ("host-cpu/tvm", COMPILER)} <= set(checks)
    if platform.machine() == "x86_64":
        assert {("host", name) for name in ("AVX2", "AVX-512", "VNNI", "AMX")} <= set(checks)
    # A missing item says how to get it, unless it is the hardware's (a CPU feature).
    assert all(c["fix"] for c in checks.values() if not c["ok"] and c["scope"] != "host")
    # The compiler is the one TVM itself would link with.
    compiler = checks[("host-cpu/tvm", COMPILER)]
    expected = get_cc() and shutil.which(get_cc())
    assert compiler["ok"] == bool(expected) and (not expected or compiler["found"] == expected)
    assert compiler["needed"] and not checks[("arm-cortex-a76/tvm", "apache-tvm")]["needed"]
    if shutil.which("aarch64-linux-gnu-gcc"):
        assert checks[("arm-cortex-a76/tvm", "cross compiler aarch64-linux-gnu-gcc")]["ok"]
    trackers = [c for (scope, what), c in checks.items() if what.startswith("tracker ")]
    assert trackers and all(c["ok"] or "tracker 127.0.0.1:9190" in c["found"] for c in trackers)
    text = _doctor(_here_env())
    assert text.returncode == result.returncode
    assert ("default run (host-cpu, openvino and tvm): "
            + ("ready" if ready else "not ready")) in text.stdout


@pytest.mark.readme_claim("doctor: each missing item comes with its fix; exit 1 when the default "
                          "run cannot measure")
def test_doctor_without_a_compiler_says_tvm_is_unavailable_and_how_to_fix_it(no_compiler_env):
    pytest.importorskip("tvm", reason="apache-tvm is not installed")
    result = _doctor(no_compiler_env, "--json")
    ready, checks = _checks(result)
    assert result.returncode == 1 and not ready, result.stderr
    compiler = checks[("host-cpu/tvm", COMPILER)]
    assert not compiler["ok"] and compiler["needed"]
    assert "no C/C++ compiler" in compiler["found"] and "apt-get install g++" in compiler["fix"]
    text = _doctor(no_compiler_env)
    assert text.returncode == 1
    assert f"not ready, missing host-cpu/tvm: {COMPILER}" in text.stdout


@pytest.mark.openvino
@pytest.mark.tvm
@pytest.mark.readme_claim("without a compiler, TVM's trials are stored unavailable with the reason "
                          "and the fix")
def test_a_run_without_a_compiler_stores_tvm_trials_unavailable(no_compiler_env, tmp_path):
    pytest.importorskip("tvm", reason="apache-tvm is not installed")
    pytest.importorskip("openvino", reason="openvino is not installed")
    from autotune.config import FP32
    from autotune.store import Store

    store_url = f"sqlite:///{tmp_path}/a.db"
    run = subprocess.run(
        [sys.executable, "-m", "autotune", "run", "--backend", "openvino", "--backend", "tvm",
         "--budget", "2", "--tuning-trials", "0", "--store", store_url, "--report-dir",
         str(tmp_path / "reports"), "--passes", "1", "--min-repeats", "5", "--min-time", "0.05",
         "--max-spread", "0", "--no-progress"],
        env=no_compiler_env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    trials = Store(store_url).trials(run.stdout.split()[1])
    tvm = [trial for trial in trials if trial.backend == "tvm"]
    assert tvm and all(trial.status == "unavailable" for trial in tvm)
    assert all("no C/C++ compiler" in trial.error and "apt-get install g++" in trial.error
               for trial in tvm)
    openvino = {trial.config: trial for trial in trials if trial.backend == "openvino"}
    assert len(openvino) == 2 and openvino[FP32].ok  # the other backend measures as usual
    assert not {"compile_error", "runtime_error"} & {trial.status for trial in trials}


@pytest.mark.readme_claim("doctor asks the tracker and key of a remote target with a 3 s timeout")
def test_doctor_gives_up_on_a_silent_tracker_after_the_timeout(tmp_path):
    pytest.importorskip("tvm", reason="apache-tvm is not installed")
    from autotune.backends.remote import PROBE_TIMEOUT_S
    from autotune.doctor import backend_checks
    from autotune.target import load_target

    with socket.socket() as silent:  # takes connections (its backlog), never answers one
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        board = tmp_path / "board.toml"
        board.write_text(f'device = "cpu"\narch = "aarch64"\n[reach]\nkind = "tracker"\n'
                         f'host = "127.0.0.1"\nport = {port}\nkey = "board"\n'
                         f'[tvm]\ntarget = {{ kind = "llvm", mtriple = "aarch64-linux-gnu" }}\n')
        started = time.monotonic()
        checks = backend_checks([load_target(str(board))], ["tvm"], "host-cpu", ["tvm"])
        waited = time.monotonic() - started
    (tracker,) = [check for check in checks if check.what.startswith("tracker ")]
    assert PROBE_TIMEOUT_S == 3.0 and waited >= PROBE_TIMEOUT_S  # the timeout ended the wait
    assert not tracker.ok and f"tracker 127.0.0.1:{port} did not answer" in tracker.found
    assert "timed out" in tracker.found and f"--tracker 127.0.0.1:{port}" in tracker.fix

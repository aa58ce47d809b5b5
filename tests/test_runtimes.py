"""Runtime environments: spec parsing, the worker under another interpreter, and (slow) a
real run against another OpenVINO release in its own virtual environment."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from autotune.backends import backend_names, get_backend
from autotune.errors import InputError
from autotune.runtimes import (
    COMMON_PACKAGES,
    MARKER,
    EnvPlan,
    _attempts,
    _install_error,
    _lock,
    ensure_env,
    env_name,
    interpreter_versions,
    package_versions,
    parse_specs,
    plan_env,
    runtime_versions,
    uv_path,
    versions_for,
    worker_packages,
)

QUICK = ["--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05",
         "--no-progress"]


@pytest.mark.parametrize("specs, name", [
    (["openvino==2025.4.0"], "openvino-2025.4.0"),
    (["OpenVINO >=2025.4, <2026"], "openvino-lt2026-ge2025.4"),
    (["openvino~=2025.4.0", "onnxruntime==1.22.1"], "onnxruntime-1.22.1+openvino-compat2025.4.0"),
    (["openvino==2025.4.*"], "openvino-2025.4._"),
    (["openvino"], "openvino"),
])
def test_env_names_say_what_the_environment_holds(specs, name):
    assert env_name(parse_specs(specs)) == name


@pytest.mark.parametrize("specs, message", [
    (["openvino=2025.4.0"], "not a pip requirement"),
    (["torch==2.13.0"], "only the worker's runtimes"),
    (["openvino==2025.4.0", "openvino==2026.4.1"], "given twice"),
    (["openvino @ https://example.com/ov.whl"], "without URL"),
    ([], "at least one"),
])
def test_bad_specs_are_input_errors(specs, message):
    with pytest.raises(InputError, match=message):
        parse_specs(specs)


@pytest.mark.readme_claim("every trial records the versions its worker really imported")
def test_the_worker_reports_every_runtime_it_imports():
    versions = package_versions()
    backend_packages = {p for name in backend_names() for p in get_backend(name).packages}
    assert {*COMMON_PACKAGES, *backend_packages} <= set(versions)
    assert versions_for(None) == runtime_versions()
    # Asked through another process, this interpreter reports the same packages.
    assert interpreter_versions(Path(sys.executable)) == versions


def host(package: str) -> str:
    return f"{package}=={version(package)}"


@pytest.mark.readme_claim("a --runtime environment holds what the run's backends need, pinned as "
                          "installed here")
def test_an_environment_holds_what_the_runs_backends_import_pinned_as_here():
    plan = plan_env(["openvino==2026.4.1"], ["openvino"])
    assert plan.specs == ("openvino==2026.4.1",)
    assert plan.companions == ("nncf==3.4.0",)  # the nncf made for that OpenVINO release
    assert plan.pins == tuple(host(p) for p in COMMON_PACKAGES)  # no TVM: not in this run
    # Every backend (the default): TVM with its FFI and MetaSchedule's helpers, as here.
    both = plan_env(["openvino==2026.4.1"], backend_names())
    assert set(both.pins) == {host(p) for p in worker_packages(backend_names())} - \
        {host("openvino"), host("nncf")}
    assert {host("apache-tvm"), host("apache-tvm-ffi"), host("xgboost-cpu")} <= set(both.pins)
    # A spec for TVM swaps TVM alone; its FFI stays as here (0.26.0 needs >=0.1.13.post2).
    tvm = plan_env(["apache-tvm==0.26.0"], backend_names())
    assert tvm.specs == ("apache-tvm==0.26.0",) and not tvm.companions
    assert {host("apache-tvm-ffi"), host("openvino"), host("nncf")} <= set(tvm.pins)
    assert not any(pin.startswith("apache-tvm==") for pin in tvm.pins)


@pytest.mark.parametrize("specs, nncf", [
    (["openvino==2025.4.0"], "nncf==2.19.0"),
    (["openvino==2025.4.1"], "nncf==2.19.0"),
    (["openvino>=2025.4,<2026.2"], "nncf==3.1.0"),  # the newest release the range allows
    (["openvino~=2026.2.0"], "nncf==3.2.0"),
])
@pytest.mark.readme_claim("nncf follows the OpenVINO release a --runtime spec asks for")
def test_nncf_follows_the_openvino_release_a_spec_asks_for(specs, nncf):
    assert plan_env(specs, ["openvino"]).companions == (nncf,)


def test_nncf_named_by_the_user_or_unknown_for_a_release():
    assert not plan_env(["openvino==2025.4.0", "nncf==2.19.0"], ["openvino"]).companions
    assert not plan_env(["openvino==2024.6.0"], ["tvm"]).companions  # no OpenVINO trials
    with pytest.raises(InputError, match="no nncf release is known.*--runtime nncf=="):
        plan_env(["openvino==2024.6.0"], ["openvino"])


@pytest.mark.readme_claim("a --runtime environment is named by the specs and a digest of every pin "
                          "and the Python")
def test_an_environment_is_keyed_by_every_pin_and_the_python(monkeypatch):
    import autotune.runtimes as runtimes

    plan = plan_env(["openvino==2025.4.0", "onnxruntime==1.22.1"], ["openvino"])
    assert plan.name.startswith("onnxruntime-1.22.1+openvino-2025.4.0-")
    assert plan_env(["onnxruntime==1.22.1", "openvino==2025.4.0"], ["openvino"]) == plan
    assert plan_env(["openvino==2025.4.0", "onnxruntime==1.22.1"], backend_names()).name != \
        plan.name  # TVM's packages too
    # numpy upgraded here: another environment, not the stale one.
    monkeypatch.setattr(runtimes, "version",
                        lambda name: "9.9.9" if name == "numpy" else version(name))
    upgraded = plan_env(["openvino==2025.4.0", "onnxruntime==1.22.1"], ["openvino"])
    assert "numpy==9.9.9" in upgraded.requirements and upgraded.name != plan.name
    assert upgraded.name.split("-")[:-1] == plan.name.split("-")[:-1]  # same readable part
    other_python = EnvPlan(plan.specs, plan.companions, plan.pins, "CPython 3.12.0")
    assert other_python.name != plan.name


@pytest.mark.readme_claim("pins a spec cannot live with are relaxed: numpy, onnx, onnxruntime "
                          "first")
def test_pins_are_relaxed_common_packages_first_never_the_specs():
    plan = plan_env(["openvino==2025.4.0"], ["openvino", "tvm"])
    strict, common, loose = _attempts(plan)
    assert strict == list(plan.requirements)
    for attempt in (common, loose):
        assert attempt[:2] == ["openvino==2025.4.0", "nncf==2.19.0"]
    assert host("apache-tvm") in common and host("numpy") not in common
    assert any(r.startswith("numpy") and "<" in r for r in common)  # autotune's range
    assert host("xgboost-cpu") not in loose


def test_the_installers_reason_in_one_line():
    uv = ("Using Python 3.11.7 environment at: /tmp/env\n"
          "error: No solution found when resolving dependencies\n"
          "  cause: Because openvino==2025.4.0 depends on numpy>=1.16.6,<2.3.0 and you require "
          "numpy==2.4.6, we can conclude that your requirements are unsatisfiable.\n")
    assert _install_error(uv) == (
        "No solution found when resolving dependencies; Because openvino==2025.4.0 depends on "
        "numpy>=1.16.6,<2.3.0 and you require numpy==2.4.6, we can conclude that your "
        "requirements are unsatisfiable.")
    pip = ("Collecting openvino==0.0.1\nERROR: Could not find a version that satisfies the "
           "requirement openvino==0.0.1 (from versions: 2026.4.1)\n"
           "ERROR: No matching distribution found for openvino==0.0.1\n")
    assert _install_error(pip).startswith("Could not find a version that satisfies the "
                                          "requirement openvino==0.0.1 (from versions: ")


@pytest.mark.readme_claim("a --runtime spec that cannot be installed is one input error (exit 2)")
def test_a_spec_that_cannot_be_installed_is_bad_input_and_leaves_nothing(tmp_path, workspace,
                                                                        tiny_model, capsys):
    from autotune.cli import main

    with pytest.raises(InputError, match=r"openvino==0.0.1: cannot be installed: .*0\.0\.1"):
        ensure_env(["openvino==0.0.1", "nncf==3.4.0"], tmp_path / "envs", ["openvino"])
    # Nothing half-built is left (only the lock file).
    assert [p.suffix for p in (tmp_path / "envs").iterdir()] == [".lock"]
    code = main(["run", "--model", str(tiny_model), "--space", "smoke",
                 "--runtime", "openvino==0.0.1", "--runtime", "nncf==3.4.0", *QUICK])
    err = capsys.readouterr().err
    assert code == 2
    assert "autotune: error: --runtime nncf==3.4.0 openvino==0.0.1: cannot be installed" in err
    assert "Traceback" not in err


@pytest.mark.readme_claim("a --runtime environment is built under a lock: a second run waits for "
                          "the first and uses what it built")
def test_a_second_run_waits_for_the_build_and_reuses_it(tmp_path):
    envs = tmp_path / "envs"
    envs.mkdir()
    plan = plan_env(["openvino==2025.4.0"], ["openvino"])
    path = envs / plan.name
    with _lock(path):  # the first run, building
        second = subprocess.Popen(
            [sys.executable, "-c", "import sys; from autotune.runtimes import ensure_env; "
             "print(ensure_env(['openvino==2025.4.0'], sys.argv[1], ['openvino']).python)",
             str(envs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said = next((line for line in second.stderr if "waiting for" in line), "")
        assert said.strip() == f"autotune: waiting for another autotune to finish building " \
                               f"{plan.name}"
        # What the first run's build leaves once renamed into place: the environment, marked.
        (path / "bin").mkdir(parents=True)
        (path / MARKER).write_text(json.dumps({
            "specs": list(plan.specs), "requirements": list(plan.requirements),
            "versions": {"openvino": "2025.4.0"}}))
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.strip() == str(path / "bin" / "python")  # the first run's environment
    assert "building runtime environment" not in err  # not built again


@pytest.fixture
def traced_python(tmp_path) -> tuple[Path, Path]:
    """This interpreter behind a script that logs every start: the workers' "other" python."""
    log = tmp_path / "starts.log"
    script = tmp_path / "bin" / "python"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\nexec {sys.executable} \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


@pytest.mark.openvino
def test_workers_run_under_the_given_interpreter(workspace, tiny_model, traced_python,
                                                 monkeypatch):
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.machine_state import ContentionLimits
    from autotune.measure import MeasurementProtocol
    from autotune.search import ExhaustiveSearch
    from autotune.space import load_space
    from autotune.store import Store
    from autotune.target import load_target
    from autotune.zoo import resolve_model

    python, log = traced_python
    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    space, targets = load_space("smoke"), [load_target("host-cpu")]
    # Contention checks off: a re-measure on a busy machine would start a third worker.
    settings = RunSettings(backends=("openvino",), progress=False, python=str(python),
                           protocol=MeasurementProtocol(2, 5, 0.05),
                           workspace=workspace / "results", contention=ContentionLimits(0, 0))
    # The int8 trial fails: its versions must still be those of the interpreter it ran in.
    monkeypatch.setenv("AUTOTUNE_INJECT_FAULT", "raise@compile:e0c77a5341")
    run_id = start_run(store, resolve_model(str(tiny_model)), space, targets, settings,
                       ExhaustiveSearch())
    trials = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch()).trials
    assert [t.status for t in trials] == ["ok", "compile_error"]
    starts = log.read_text().splitlines()
    assert sum("autotune.worker" in line for line in starts) == 2
    expected = package_versions()
    for trial in trials:
        assert {name: trial.versions[name] for name in expected} == expected
    assert store.get_run(run_id).versions["onnxruntime"] == expected["onnxruntime"]


@pytest.fixture
def python_without_openvino(tmp_path) -> Path:
    """This interpreter as an environment without OpenVINO would be: importing it fails."""
    blocker = tmp_path / "blocker" / "openvino"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'openvino'\", name='openvino')\n")
    script = tmp_path / "bin" / "python"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nPYTHONPATH={blocker.parent}:$PYTHONPATH exec "
                      f"{sys.executable} \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.readme_claim("a backend not installed in the workers' environment: trials stored "
                          "unavailable")
def test_a_worker_without_the_backends_runtime_stores_its_trials_unavailable(
        workspace, tiny_model, python_without_openvino):
    from autotune.config import FP32
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.search import ExhaustiveSearch
    from autotune.space import SearchSpace
    from autotune.store import Store
    from autotune.target import load_target
    from autotune.zoo import resolve_model

    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    space, targets = SearchSpace("fp32", "one config", (FP32,)), [load_target("host-cpu")]
    settings = RunSettings(backends=("openvino",), progress=False,
                           python=str(python_without_openvino),
                           workspace=workspace / "results")
    run_id = start_run(store, resolve_model(str(tiny_model)), space, targets, settings,
                       ExhaustiveSearch())
    trials = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch()).trials
    assert [t.status for t in trials] == ["unavailable"]
    assert not trials[0].attempted and trials[0].backend_unavailable
    assert "openvino is not installed" in trials[0].error
    assert "in the workers' environment" in trials[0].error


@pytest.mark.slow
@pytest.mark.openvino
@pytest.mark.skipif(uv_path() is None, reason="needs uv (pip install uv)")
@pytest.mark.readme_claim("autotune run --runtime openvino==2025.4.0: same space, another release")
@pytest.mark.readme_claim("a --runtime environment is built with uv where installed, in a .partial "
                          "folder renamed once complete")
def test_a_run_against_another_openvino_release(workspace, tiny_model, capsys):
    """Builds OpenVINO 2025.4.0's environment with uv in the user cache's envs/ (once per
    cache: about 15 s from uv's cache, 45 s more downloading), while a second process asks
    for the same one, then runs the smoke space's OpenVINO trials in it."""
    import json
    import shutil
    import subprocess

    from autotune.cli import main
    from autotune.paths import user_cache_dir
    from autotune.store import Store

    envs = user_cache_dir() / "envs"
    plan = plan_env(["openvino==2025.4.0"], ["openvino"])
    shutil.rmtree(envs / plan.name, ignore_errors=True)  # built by an earlier session
    # What a crash half-way leaves: a partial folder, and (from before) one without a marker.
    (envs / f"{plan.name}.partial" / "bin").mkdir(parents=True)
    (envs / plan.name / "bin").mkdir(parents=True)
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys; from autotune.runtimes import ensure_env; "
         "print(ensure_env(['openvino==2025.4.0'], sys.argv[1], ['openvino']).path)",
         str(envs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code = main(["run", "--model", str(tiny_model), "--space", "smoke",
                 "--runtime", "openvino==2025.4.0", *QUICK])
    out = capsys.readouterr()
    assert code == 0, out.err
    stdout, stderr = other.communicate(timeout=600)
    assert other.returncode == 0, stderr
    env = envs / plan.name
    assert stdout.strip() == str(env)  # the same environment, built once
    assert (stderr + out.err).count("building runtime environment") == 1
    assert "with uv (once; later runs reuse it)" in stderr + out.err
    assert not (envs / f"{plan.name}.partial").exists()
    marker = json.loads((env / "autotune-env.json").read_text())
    assert marker["requirements"] == list(plan.requirements)
    installed = interpreter_versions(env / "bin" / "python")
    assert installed["openvino"] == "2025.4.0" and installed["nncf"] == "2.19.0"
    assert "apache-tvm" not in installed  # an OpenVINO-only run's environment
    run_id = out.out.split()[1]
    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    assert store.get_run(run_id).versions["openvino"] == "2025.4.0"
    for trial in store.trials(run_id):
        assert trial.ok, trial.error
        # What the environment really holds: numpy within autotune's range, as OpenVINO
        # 2025.4.0 needs numpy < 2.3 (this interpreter's pin could not be kept).
        assert {name: trial.versions[name] for name in ("openvino", "nncf", "numpy")} == \
            {name: installed[name] for name in ("openvino", "nncf", "numpy")}

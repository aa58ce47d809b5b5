"""Runtime environments: spec parsing, the worker under another interpreter, and (slow) a
real run against another OpenVINO release in its own virtual environment."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from autotune.errors import InputError
from autotune.runtimes import (
    WORKER_PACKAGES,
    ensure_env,
    env_name,
    interpreter_versions,
    package_versions,
    parse_specs,
    runtime_versions,
    versions_for,
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


def test_the_worker_reports_every_runtime_it_imports():
    versions = package_versions()
    assert set(WORKER_PACKAGES) <= set(versions)
    assert versions_for(None) == runtime_versions()
    # Asked through another process, this interpreter reports the same packages.
    assert interpreter_versions(Path(sys.executable)) == versions


def test_a_spec_pip_cannot_install_is_bad_input_and_leaves_nothing(tmp_path, workspace,
                                                                  tiny_model, capsys):
    from autotune.cli import main

    with pytest.raises(InputError, match="pip cannot install it"):
        ensure_env(["openvino==0.0.1"], tmp_path / "envs")
    assert not (tmp_path / "envs" / "openvino-0.0.1").exists()  # no half-built environment
    code = main(["run", "--model", str(tiny_model), "--space", "smoke",
                 "--runtime", "openvino==0.0.1", *QUICK])
    err = capsys.readouterr().err
    assert code == 2
    assert "autotune: error: --runtime openvino==0.0.1: pip cannot install it" in err
    assert "Traceback" not in err


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


@pytest.mark.slow
@pytest.mark.openvino
def test_a_run_against_another_openvino_release(workspace, tiny_model, capsys):
    """Downloads OpenVINO 2025.4.0 (and what it needs) into the user cache's envs/ once."""
    from autotune.cli import main
    from autotune.paths import user_cache_dir
    from autotune.store import Store

    code = main(["run", "--model", str(tiny_model), "--space", "smoke",
                 "--runtime", "openvino==2025.4.0", *QUICK])
    out = capsys.readouterr()
    assert code == 0, out.err
    run_id = out.out.split()[1]
    env = user_cache_dir() / "envs" / "openvino-2025.4.0"
    assert (env / "autotune-env.json").exists()
    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    assert store.get_run(run_id).versions["openvino"] == "2025.4.0"
    for trial in store.trials(run_id):
        assert trial.ok and trial.versions["openvino"] == "2025.4.0"
        assert trial.versions["numpy"] == interpreter_versions(env / "bin" / "python")["numpy"]

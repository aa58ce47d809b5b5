"""Trial isolation: a worker that crashes, hangs, runs out of memory or raises costs one trial.

Faults are injected into the real worker process (``AUTOTUNE_INJECT_FAULT``); the compiler
and runtime underneath are the real ones.
"""

import pytest

from autotune.cli import main
from autotune.config import FP32
from autotune.store import Store

pytestmark = [pytest.mark.openvino, pytest.mark.reliability]
QUICK = ["--min-repeats", "5", "--min-time", "0.05", "--no-progress"]
INT8_ID = "e0c77a5341"  # w:int8:sym:per_channel a:uint8:asym cal:minmax, the smoke space's


@pytest.mark.parametrize("fault, status, message", [
    ("segfault@compile", "compile_error", "SIGSEGV during compile"),
    ("raise@quantize", "compile_error", "RuntimeError: injected failure in quantize"),
    ("raise@measure", "runtime_error", "injected failure in measure"),
    ("exit@measure", "runtime_error", "exited with code 3"),
    ("hang@measure", "timeout", "no result after"),
    ("oom@compile", "oom", "memory limit of 400 MiB"),
])
def test_a_failing_worker_marks_its_trial_and_the_run_goes_on(
        workspace, tiny_model, monkeypatch, capsys, fault, status, message):
    monkeypatch.setenv("AUTOTUNE_INJECT_FAULT", f"{fault}:{INT8_ID}")
    code = main(["run", "--model", str(tiny_model), "--space", "smoke", "--trial-timeout", "20",
                 "--trial-memory", "400", *QUICK])
    run_id = capsys.readouterr().out.split()[1]
    assert code == 0  # the fp32 trial succeeded, so the run did
    trials = {t.config.id: t for t in Store(f"sqlite:///{workspace}/results/autotune.db")
              .trials(run_id)}
    assert trials[FP32.id].status == "ok"
    assert trials[INT8_ID].status == status
    assert message in trials[INT8_ID].error
    summary = (workspace / "reports" / run_id / "summary.md").read_text()
    assert "Failed trials" in summary and status in summary


def test_a_run_with_no_successful_trial_exits_1(workspace, tiny_model, monkeypatch, capsys):
    monkeypatch.setenv("AUTOTUNE_INJECT_FAULT", "raise@compile")
    assert main(["run", "--model", str(tiny_model), "--space", "smoke", *QUICK]) == 1

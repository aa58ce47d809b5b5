"""Trial isolation: a worker that crashes, hangs, runs out of memory or raises costs one trial.

Faults are injected into the real worker process (``AUTOTUNE_INJECT_FAULT``); the compiler
and runtime underneath are the real ones. Each case checks that the run goes on, the failed
trial carries its status and cause, and the store is left consistent.
"""

import pytest

from autotune.cli import main
from autotune.config import FP32, QuantConfig

pytestmark = [pytest.mark.openvino, pytest.mark.reliability]
# Short measurements and no re-measuring: these cases are about failures, not figures.
QUICK = ["--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05", "--no-progress",
         "--max-spread", "0"]
INT8_ID = "e0c77a5341"  # w:int8:sym:per_channel a:uint8:asym cal:minmax, the smoke space's


@pytest.mark.parametrize("fault, status, message", [
    ("segfault@compile", "compile_error", "SIGSEGV during compile"),
    ("segfault@measure", "runtime_error", "SIGSEGV during measure"),
    ("raise@quantize", "compile_error", "RuntimeError: injected failure in quantize"),
    ("raise@compile", "compile_error", "RuntimeError: injected failure in compile"),
    ("raise@measure", "runtime_error", "injected failure in measure"),
    ("exit@measure", "runtime_error", "exited with code 3"),
    ("hang@measure", "timeout", "no result after 15 s (in measure)"),
    ("oom@compile", "oom", "memory limit of 400 MiB (in compile)"),
])
@pytest.mark.readme_claim("a worker crash, hang or out-of-memory costs that trial, never the run")
def test_a_failing_worker_marks_its_trial_and_the_run_goes_on(
        workspace, tiny_model, monkeypatch, capsys, check_store, fault, status, message):
    monkeypatch.setenv("AUTOTUNE_INJECT_FAULT", f"{fault}:{INT8_ID}")
    code = main(["run", "--model", str(tiny_model), "--space", "smoke", "--trial-timeout", "15",
                 "--trial-memory", "400", *QUICK])
    run_id = capsys.readouterr().out.split()[1]
    assert code == 0  # the fp32 trial succeeded, so the run did
    trials = {t.config.id: t for t in check_store(run_id, finished=True, count=2)}
    assert trials[FP32.id].status == "ok" and trials[FP32.id].latencies_ms
    assert trials[INT8_ID].status == status
    assert message in trials[INT8_ID].error
    assert not trials[INT8_ID].latencies_ms  # a failed trial has no figures to mislead
    summary = (workspace / "reports" / run_id / "summary.md").read_text()
    assert "Failed trials" in summary and status in summary


@pytest.mark.readme_claim("AUTOTUNE_INJECT_FAULT=KIND@PHASE[:CONFIG_ID,...] makes the worker fail "
                          "that way")
def test_several_faults_at_once_each_hit_their_own_config(
        workspace, tiny_model, monkeypatch, capsys, check_store):
    """``;``-separated specs (the soak benchmark's format) inject a different fault per config."""
    texts = ["w:int8:sym:per_tensor a:uint8:asym cal:minmax",
             "w:int8:sym:per_channel a:int8:sym cal:minmax"]
    first, second = (QuantConfig.from_text(text) for text in texts)
    monkeypatch.setenv("AUTOTUNE_INJECT_FAULT",
                       f"raise@compile:{first.id};exit@measure:{second.id},0000000000")
    args = [arg for text in texts for arg in ("--config", text)]
    assert main(["run", "--model", str(tiny_model), *args, *QUICK]) == 0
    run_id = capsys.readouterr().out.split()[1]
    trials = {t.config.id: t for t in check_store(run_id, finished=True, count=3)}
    assert trials[FP32.id].status == "ok"
    assert trials[first.id].status == "compile_error"
    assert "injected failure in compile" in trials[first.id].error
    assert trials[second.id].status == "runtime_error"
    assert "exited with code 3 and no result during measure" in trials[second.id].error


@pytest.mark.readme_claim("exit 1: a run with no successful trial")
def test_a_run_with_no_successful_trial_exits_1(
        workspace, tiny_model, monkeypatch, capsys, check_store):
    monkeypatch.setenv("AUTOTUNE_INJECT_FAULT", "raise@compile")
    assert main(["run", "--model", str(tiny_model), "--space", "smoke", *QUICK]) == 1
    run_id = capsys.readouterr().out.split()[1]
    trials = check_store(run_id, finished=True, count=2)
    assert {t.status for t in trials} == {"compile_error"}

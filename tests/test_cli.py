"""The command line end to end, with real quantization and real OpenVINO on a tiny model."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autotune.cli import main
from autotune.store import Store

pytestmark = pytest.mark.openvino
QUICK = ["--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05",
         "--no-progress"]


def _store(workspace):
    return Store(f"sqlite:///{workspace}/results/autotune.db")


@pytest.mark.readme_claim("autotune run --model my.onnx: random inputs, fidelity vs fp32 only; a "
                          "warning says so")
@pytest.mark.readme_claim("autotune report [RUN_ID]: re-render a report (default: the latest run)")
@pytest.mark.readme_claim("a run deletes its compiled artifacts after its last pass")
def test_run_report_and_pick(workspace, tiny_model, capsys, caplog):
    code = main(["run", "--model", str(tiny_model), "--space", "smoke", *QUICK])
    out = capsys.readouterr()
    assert code == 0, out.err
    run_id = out.out.split()[1]
    trials = _store(workspace).trials(run_id)
    assert [t.status for t in trials] == ["ok", "ok"]
    fp32, int8 = trials
    assert fp32.config.is_float and int8.config.is_quantized
    for trial in trials:
        assert len(trial.latencies_ms) >= 5 and trial.latency_median_ms > 0
        assert trial.peak_memory_bytes > 0 and trial.artifact_size_bytes > 0
        assert trial.versions["openvino"] and trial.cpu_model and trial.cores >= 1
        assert trial.cosine > 0.9 and trial.accuracy is None  # no labels: fidelity only
    assert fp32.accuracy_drop == pytest.approx(0.0, abs=1e-5)
    # Deployment metrics: float clips nothing; int8 has a rate per quantized tensor; no
    # labels, so no per-class accuracy; host-cpu gives no price.
    assert fp32.saturation.rate == 0.0 and 0 <= int8.saturation.rate < 1
    assert int8.saturation.tensors and int8.saturation.samples > 0
    assert all(t.class_accuracy is None and t.cost_per_million_usd is None for t in trials)
    for trial in trials:  # three passes by default, each in a fresh worker
        assert len(trial.pass_medians_ms) == 3
        assert sum(p.samples for p in trial.passes) == len(trial.latencies_ms)
    assert not (workspace / "results" / "runs" / run_id / "artifacts").exists()  # cleaned up
    report = workspace / "reports" / run_id
    summary = (report / "summary.md").read_text()
    assert "No data was given" in summary and "Pareto frontier" in summary
    assert "### Deployment metrics" in summary and f"| {int8.saturation.rate:.3%} |" in summary
    assert "Deployment metrics" in (report / "index.html").read_text()
    assert (report / "trials.csv").read_text().count("\n") == 3
    rows = {row["label"]: row for row in csv.DictReader(open(report / "trials.csv"))}
    assert float(rows["fp32"]["saturation_rate"]) == 0.0
    assert float(rows[int8.config.label]["saturation_rate"]) == pytest.approx(int8.saturation.rate)
    assert (report / "frontier.png").stat().st_size > 10_000
    assert "seeded random inputs" in caplog.text  # the no-data warning

    assert main(["pick", "--max-accuracy-drop", "100", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)["answers"][0]
    assert answer["met"] and answer["choice"]["backend"] == "openvino"
    assert "autotune run --model" in answer["choice"]["reproduce"]

    # No drop at all: int8 cannot qualify, and fp32 only if OpenVINO matched the reference
    # exactly; otherwise pick exits 1 and names the nearest configs, fp32 first.
    assert int8.accuracy_drop > 0
    fp32_meets = fp32.accuracy_drop <= 0
    assert main(["pick", "--max-accuracy-drop", "0", "--json"]) == (0 if fp32_meets else 1)
    answer = json.loads(capsys.readouterr().out)["answers"][0]
    assert answer["met"] is fp32_meets
    if fp32_meets:
        assert answer["choice"]["config_id"] == fp32.config.id and answer["nearest"] == []
    else:
        assert answer["choice"] is None
        assert [n["config_id"] for n in answer["nearest"]] == [fp32.config.id, int8.config.id]
        assert answer["nearest"][1]["misses_accuracy_by_pp"] == round(int8.accuracy_drop * 100,
                                                                      3)
    # A memory limit no config fits: exit 1, and the nearest configs are still shown.
    assert main(["pick", "--max-accuracy-drop", "100", "--max-memory", "0.000001"]) == 1
    out = capsys.readouterr().out
    assert "host-cpu: no config meets an accuracy drop of at most 100.0 pp and memory of at " \
           "most 1e-06 MiB" in out
    assert "nearest:" in out and fp32.config.text in out and int8.config.text in out
    # A saturation limit below int8's rate leaves fp32 (it clips nothing).
    assert main(["pick", "--max-accuracy-drop", "100", "--max-saturation",
                 str(int8.saturation.rate / 2), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)["answers"][0]
    if int8.saturation.rate > 0:
        assert answer["choice"]["config_id"] == fp32.config.id
    assert answer["choice"]["saturation"] is not None
    assert main(["pick", "--max-class-drop", "1"]) == 2  # no labels here
    assert "has no per-class accuracy" in capsys.readouterr().err
    assert main(["report", run_id]) == 0

    # `autotune report` with no run id re-renders the latest run's report from the store.
    shutil.rmtree(report)
    assert main(["report"]) == 0
    assert {path.name for path in report.iterdir()} >= {"summary.md", "index.html",
                                                       "trials.csv", "frontier.png"}
    assert (report / "summary.md").read_text() == summary


@pytest.mark.readme_claim("autotune run --model my.onnx --data my.npz: your own inputs and labels")
@pytest.mark.readme_claim("autotune run --space mixed --strategy guided --budget 8: int8 with the "
                          "k most sensitive layers in fp32, cost-model-guided")
def test_guided_search_of_the_mixed_space_on_own_data(workspace, tiny_model, capsys):
    """The flags from the command line, end to end: labelled `.npz` data (labels are fp32's
    own answers, so fp32 scores 100% top-1), the `mixed` space expanded by a real
    sensitivity scan, and guided search's seeds: fp32, then a config of each precision as
    far from the seeds so far as the space allows, which is a mixed one (in the space's
    order, exhaustive search would measure the uniform int8 configs first)."""
    import onnxruntime as ort

    images = np.random.default_rng(0).standard_normal((24, 3, 16, 16)).astype(np.float32)
    session = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    labels = np.array([session.run(None, {"input": image[None]})[0].argmax()
                       for image in images], dtype=np.int64)
    np.savez(workspace / "my.npz", input=images, labels=labels)
    code = main(["run", "--model", str(tiny_model), "--data", "my.npz", "--space", "mixed",
                 "--strategy", "guided", "--budget", "3", "--passes", "1", *QUICK])
    out = capsys.readouterr()
    assert code == 0, out.err
    run_id = out.out.split()[1]
    store = _store(workspace)
    run = store.get_run(run_id)
    assert (run.space, run.settings.strategy, run.metric) == ("mixed", "guided", "top1")
    assert run.settings.data.endswith("my.npz") and not run.synthetic_data
    assert run.reference_accuracy == 1.0
    trials = store.trials(run_id)
    assert len(trials) == 3 and trials[0].config.is_float  # the budget; fp32 first
    assert {t.config.weight_dtype for t in trials} == {"fp32", "bf16", "int8"}
    assert all(t.accuracy is not None for t in trials if t.ok)  # scored on the labels
    (int8,) = [t for t in trials if t.config.is_quantized]
    assert int8.ok and int8.config.overrides  # layers the scan ranked most sensitive kept
    assert {dtype for _, dtype in int8.config.overrides} == {"fp32"}


@pytest.mark.readme_claim("autotune run --resume RUN_ID finishes an interrupted run")
def test_resume_skips_finished_trials(workspace, tiny_model):
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.measure import MeasurementProtocol
    from autotune.search import ExhaustiveSearch
    from autotune.space import load_space
    from autotune.target import load_target
    from autotune.zoo import resolve_model

    store = _store(workspace)
    space, targets = load_space("smoke"), [load_target("host-cpu")]
    settings = RunSettings(backends=("openvino",), budget=1, progress=False,
                           protocol=MeasurementProtocol(2, 5, 0.05),
                           workspace=workspace / "results")
    run_id = start_run(store, resolve_model(str(tiny_model)), space, targets, settings,
                       ExhaustiveSearch())
    first = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch())
    assert len(first.trials) == 1
    settings.budget = None
    second = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch())
    assert len(second.trials) == 2
    assert second.trials[0].started_at == first.trials[0].started_at  # kept, not re-measured
    assert store.get_run(run_id).status == "finished"


@pytest.mark.readme_claim("autotune run measures every trial in --passes 3, later passes in fresh "
                          "workers")
def test_later_passes_measure_the_kept_artifacts_and_resume(workspace, tiny_model):
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.measure import MeasurementProtocol
    from autotune.search import ExhaustiveSearch
    from autotune.space import load_space
    from autotune.target import load_target
    from autotune.zoo import resolve_model

    store = _store(workspace)
    space, targets = load_space("smoke"), [load_target("host-cpu")]
    settings = RunSettings(backends=("openvino",), progress=False, passes=1,
                           protocol=MeasurementProtocol(2, 5, 0.05),
                           workspace=workspace / "results")
    run_id = start_run(store, resolve_model(str(tiny_model)), space, targets, settings,
                       ExhaustiveSearch())
    first = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch())
    artifacts = workspace / "results" / "runs" / run_id / "artifacts"
    assert len(list(artifacts.glob("*/artifact.json"))) == 2  # kept for later passes
    # As after an interruption between passes: the run goes on with the passes left.
    settings.passes = 3
    second = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch())
    for before, after in zip(first.trials, second.trials, strict=True):
        assert after.pass_medians_ms[0] == before.pass_medians_ms[0]
        assert len(after.pass_medians_ms) == 3
        assert len(after.latencies_ms) > len(before.latencies_ms)
        assert after.compile_s == before.compile_s  # measured again, not compiled again
    assert [t.key for t in second.trials] == [t.key for t in first.trials]  # stored in place
    assert not artifacts.exists()


@pytest.mark.slow  # ~2 min; CI keeps tests/reliability/test_interrupts.py's Ctrl-C and resume
@pytest.mark.readme_claim("Ctrl-C prints the --resume command, and resume finishes the run")
def test_ctrl_c_says_how_to_resume_and_resume_finishes(workspace, tiny_model):
    # One pass per trial (the resumed run keeps it): the interrupt, not the passes, is tested.
    command = [sys.executable, "-m", "autotune", "run", "--model", str(tiny_model),
               "--space", "default", "--passes", "1", *QUICK]
    # A shell's background job (`pytest &`) ignores SIGINT, and children inherit that.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=workspace,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run_id = child.stdout.readline().split()[1]
    store = _store(workspace)
    deadline = time.monotonic() + 120
    while len(store.trials(run_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert f"autotune run --resume {run_id}" in err
    stored = store.trials(run_id)
    assert 2 <= len(stored) < 18 and store.get_run(run_id).status == "interrupted"

    resumed = subprocess.run([sys.executable, "-m", "autotune", "run", "--resume", run_id,
                              "--no-progress"], capture_output=True, text=True, cwd=workspace,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    trials = store.trials(run_id)
    assert len(trials) == 18 and len({t.key for t in trials}) == 18
    assert trials[0].started_at == stored[0].started_at


@pytest.mark.parametrize("argv, message", [
    (["run", "--target", "mars"], "unknown target 'mars'"),
    (["run", "--space", "nope"], "unknown search space 'nope'"),
    (["run", "--backend", "tensorrt"], "unknown backend 'tensorrt'"),
    (["run", "--model", "missing.onnx"], "unknown model 'missing.onnx'"),
    (["run", "--config", "w:int9"], "--config 'w:int9'"),
    (["run", "--strategy", "annealing"], "unknown --strategy"),
    (["run", "--store", "nosuchdb://x"], "--store nosuchdb://x"),
    (["pick", "--store", "sqlite:///empty.db"], "no runs in"),
])
@pytest.mark.readme_claim("exit 2: bad input, one line naming the file and field")
def test_bad_input_is_one_line_and_exit_2(workspace, argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_not_an_onnx_file(workspace, capsys):
    (workspace / "model.onnx").write_bytes(b"\x00garbage, not protobuf")
    assert main(["run", "--model", "model.onnx"]) == 2
    err = capsys.readouterr().err
    assert "model.onnx: not a readable ONNX model" in err


@pytest.mark.readme_claim("autotune targets | spaces | zoo [--json]")
def test_listings_are_json_too(workspace, capsys):
    for command in ("targets", "spaces", "zoo"):
        assert main([command, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)
    assert main(["targets"]) == 0
    assert "host-cpu" in capsys.readouterr().out


@pytest.mark.readme_claim("the autotune command is installed with the package")
def test_console_script_is_installed():
    # The script sits next to the interpreter of the environment it was installed into.
    script = Path(sys.executable).parent / "autotune"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                            env={**os.environ})
    assert result.returncode == 0 and "autotune" in result.stdout

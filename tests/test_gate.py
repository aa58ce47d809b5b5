"""The nightly loop in one command: the gate, exit codes, the store from the environment, the
runs listing with latest/previous, and what a CI reads (JSON, Markdown, JUnit, plain logs).

Stored runs with made-up samples check the contract fast; the end-to-end gate runs real
OpenVINO on digits-cnn, with a real slowdown injected into the worker's timed inferences.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from autotune.cli import main
from autotune.config import FP32, QuantConfig
from autotune.gate import previous_comparable_run
from autotune.progress import TrialProgress
from autotune.regress import compare_trials
from autotune.settings import RunSpec
from autotune.store import Run, Store
from autotune.trial import Trial

INT8 = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax")


def samples(seed: int, median_ms: float) -> list[float]:
    return [float(v) for v in median_ms * np.random.default_rng(seed).lognormal(0.0, 0.03, 200)]


def stored_run(store: Store, run_id: str, day: int, int8_ms: float | None,
               tuning_trials: int = 64, status: str = "finished") -> None:
    """A run of digits on day ``day`` of Nov 2026: fp32 at 2 ms, int8 at ``int8_ms`` (None:
    not measured)."""
    store.create_run(Run(
        id=run_id, created_at=f"2026-11-{day:02d}T02:00:00+00:00", finished_at=None,
        status=status, model="digits", model_path="/m/digits.onnx", model_hash="d1",
        space="smoke", metric="fidelity", synthetic_data=True, reference_accuracy=None,
        settings=RunSpec(model="digits", tuning_trials=tuning_trials, backends=("tvm",)),
        host={"cpu_model": "Test CPU"}, versions={"tvm": "0.27"}))
    measured = [(FP32, 2.0)] + ([(INT8, int8_ms)] if int8_ms is not None else [])
    for seed, (config, median_ms) in enumerate(measured):
        latencies = samples(day * 10 + seed, median_ms)
        store.add_trial(Trial(
            run_id=run_id, model="digits", model_hash="d1", config=config, backend="tvm",
            target="host-cpu", status="ok", latencies_ms=latencies,
            latency_median_ms=float(np.median(latencies)), tuning_trials=tuning_trials))


@pytest.fixture
def store_url(tmp_path, monkeypatch) -> str:
    """A store with three nightly runs (int8 20% slower on the third), named by the
    environment only."""
    url = f"sqlite:///{tmp_path}/results/autotune.db"
    store = Store(url)
    stored_run(store, "night-1", 1, 1.0)
    stored_run(store, "night-2", 2, 1.0)
    stored_run(store, "night-3", 3, 1.2)
    monkeypatch.setenv("AUTOTUNE_STORE", url)
    return url


@pytest.mark.readme_claim("AUTOTUNE_STORE is every command's --store; the flag wins")
def test_the_store_comes_from_the_environment_and_the_flag_wins(store_url, tmp_path, capsys):
    assert main(["runs", "--json"]) == 0
    assert [run["id"] for run in json.loads(capsys.readouterr().out)] == [
        "night-1", "night-2", "night-3"]
    empty = f"sqlite:///{tmp_path}/other.db"
    assert main(["runs", "--json", "--store", empty]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.readme_claim("autotune runs [--model M] [--target T] [--status finished] [--since "
                          "...]")
def test_runs_are_listed_and_filtered(store_url, capsys):
    Store(store_url).set_run_status("night-2", "interrupted")
    assert main(["runs", "--json", "--status", "finished", "--since", "2026-11-02"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["id"], row["model"], row["ok"], row["trials"], row["tuning_trials"]) == (
        "night-3", "digits", 2, 2, 64)
    assert main(["runs", "--model", "other"]) == 0
    assert capsys.readouterr().out.strip() == f"no runs in {store_url} match"
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert "night-2" in table and "interrupted" in table and "2/2" in table
    assert main(["runs", "--since", "yesterday"]) == 2
    assert "--since 'yesterday': not a date" in capsys.readouterr().err


@pytest.mark.readme_claim("latest and previous stand for a run id wherever one is taken")
def test_latest_and_previous_stand_for_run_ids(store_url, tmp_path, capsys):
    assert main(["compare", "previous", "latest", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["baseline"]["id"], report["candidate"]["id"]) == ("night-2", "night-3")
    assert main(["pick", "latest", "--max-accuracy-drop", "100", "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["run_id"] == "night-3"
    assert Store(store_url).get_run("previous").id == "night-2"
    assert main(["runs", "--store", f"sqlite:///{tmp_path}/new.db"]) == 0
    assert main(["report", "previous", "--store", f"sqlite:///{tmp_path}/new.db"]) == 2
    assert "no previous run in" in capsys.readouterr().err


@pytest.mark.readme_claim("compare --format markdown and --junit FILE (a failure per regression)")
def test_markdown_and_junit_of_a_comparison(store_url, tmp_path, capsys):
    junit = tmp_path / "ci" / "compare.xml"
    assert main(["compare", "night-2", "night-3", "--format", "markdown",
                 "--junit", str(junit)]) == 1
    markdown = capsys.readouterr().out
    assert markdown.startswith("### autotune: 1 regression(s) in 2 comparable trials")
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| config | backend | target | base ms | cand ms | change")
    assert len(rows) == 3 and "REGRESSION: slower" in next(r for r in rows if INT8.label in r)
    assert f"- `{INT8.label} ({INT8.id}) tvm/host-cpu`: slower: fastest pass median" in markdown

    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert cases[f"{INT8.label} ({INT8.id}) tvm/host-cpu"].find("failure").get(
        "message").startswith("slower: fastest pass median")
    assert cases[f"fp32 ({FP32.id}) tvm/host-cpu"].find("failure") is None

    stored_run(Store(store_url), "fp32-only", 4, None)
    assert main(["compare", "night-1", "fp32-only", "--junit", str(junit)]) == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "0", "1")
    skipped = next(case for case in suite.iter("testcase") if case.find("skipped") is not None)
    assert skipped.get("name").startswith(INT8.label)
    assert skipped.find("skipped").get("message") == "only in baseline (ok)"


@pytest.mark.readme_claim("-v logs more, -q logs errors only")
def test_verbosity_sets_the_log_level(store_url):
    for flag, level in (("-v", logging.INFO), ("-q", logging.ERROR), (None, logging.WARNING)):
        assert main(["runs", *([flag] if flag else [])]) == 0
        assert logging.getLogger("autotune").level == level


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.readme_claim("when stderr is not a terminal, run prints one line per finished trial")
def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log():
    fp32 = Trial(run_id="r", model="digits", model_hash="d1", config=FP32, backend="openvino",
                 target="host-cpu", status="ok", latency_median_ms=2.5)
    int8 = dataclasses.replace(fp32, config=INT8, status="compile_error",
                               latency_median_ms=None)
    screen = Terminal()
    bar = TrialProgress(2, True, stream=screen)
    bar.started("fp32 on openvino/host-cpu")
    bar.finished(fp32)
    bar.started(f"{INT8.label} on openvino/host-cpu")
    bar.bar.refresh()
    drawn = screen.getvalue().split("\r")[-1]
    # The figure shown belongs to the trial it names, not to the one being measured.
    assert f"measuring {INT8.label} on openvino/host-cpu" in drawn
    assert "last: fp32/openvino/host-cpu ok 2.5000 ms" in drawn
    bar.close()

    log = io.StringIO()
    lines = TrialProgress(2, True, stream=log)
    for trial in (fp32, int8):
        lines.started(trial.config.label)
        lines.finished(trial)
    lines.close()
    assert log.getvalue().splitlines() == [
        f"[1/2] fp32 ({FP32.id}) on openvino/host-cpu: ok 2.5000 ms",
        f"[2/2] {INT8.label} ({INT8.id}) on openvino/host-cpu: compile_error"]
    silent = io.StringIO()
    TrialProgress(2, False, stream=silent).finished(fp32)
    assert silent.getvalue() == ""


@pytest.mark.readme_claim("compare pairs by tuning budget: a tuned kernel is not the program an "
                          "untuned one is")
def test_a_tuned_run_is_not_compared_with_an_untuned_one(store_url):
    store = Store(store_url)
    stored_run(store, "untuned", 4, 1.0, tuning_trials=0)
    stored_run(store, "unfinished", 5, 1.0, tuning_trials=64, status="interrupted")
    stored_run(store, "tuned", 6, 1.0, tuning_trials=64)
    untuned, tuned = store.trials("untuned"), store.trials("tuned")
    assert compare_trials(untuned, tuned).matched == ()
    assert previous_comparable_run(store, store.get_run("untuned"), untuned) is None
    # The interrupted run in between is no baseline: the last finished tuned one is.
    assert previous_comparable_run(store, store.get_run("tuned"), tuned).id == "night-3"
    assert main(["compare", "untuned", "tuned"]) == 2


def test_trials_stored_without_their_tuning_budget_take_their_runs(store_url):
    import sqlalchemy as sa

    store = Store(store_url)
    stored_run(store, "older", 4, 1.0, tuning_trials=16)
    with store.engine.begin() as connection:
        for row in connection.execute(sa.text("SELECT id, facts_json FROM trials "
                                              "WHERE run_id = 'older'")).all():
            facts = json.loads(row.facts_json)
            del facts["tuning_trials"]
            connection.execute(sa.text("UPDATE trials SET facts_json = :facts WHERE id = :id"),
                               {"facts": json.dumps(facts), "id": row.id})
    assert [trial.tuning_trials for trial in store.trials("older")] == [16, 16]


@pytest.mark.readme_claim("exit 3: an internal error, one line and the path of a log with the "
                          "traceback")
@pytest.mark.readme_claim("exit 3's log: results/logs/ next to a SQLite store, else logs/ in the "
                          "user cache")
def test_an_internal_error_exits_3_with_the_traceback_in_a_log(store_url, tmp_path,
                                                               monkeypatch, capsys):
    def broken(self):
        raise RuntimeError("the store's counts went missing")

    monkeypatch.setattr(Store, "trial_counts", broken)
    assert main(["runs"]) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    match = re.fullmatch(r"autotune: internal error: RuntimeError: the store's counts went "
                         r"missing \(traceback in (.+)\)", err)
    log = Path(match.group(1))
    assert log.parent == tmp_path / "results" / "logs"  # next to the store
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a command with no store
    monkeypatch.setattr("autotune.cli.listing._zoo_row", lambda entry: 1 / 0)
    assert main(["zoo"]) == 3
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and str(tmp_path / "cache" / "autotune" / "logs") in err


@pytest.mark.readme_claim("exit 130: interrupted")
def test_an_interruption_outside_a_run_exits_130(store_url, monkeypatch, capsys):
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "trial_counts", interrupted)
    assert main(["runs"]) == 130
    assert capsys.readouterr().err.strip() == "autotune: interrupted"


def test_a_reader_that_leaves_early_is_not_an_internal_error(tmp_path):
    """`autotune spaces --json | head -1`: the pipe closes before the command writes."""
    import autotune

    env = {**os.environ, "PYTHONPATH": str(Path(autotune.__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "autotune", "spaces", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                               env=env)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "internal error" not in err and "Traceback" not in err, err


# End to end: real OpenVINO trials, fp32 only, each night judged on the fastest of three
# passes. On the shared 2-core VM this was written on, other processes took 12-77% of the
# measured core: nights without a change differed by up to 44% (digits-cnn, 40-60 ms) and 42%
# (the tests' tiny CNN, 0.04-0.07 ms, used here as it runs in seconds), and a slowdown of 0.5
# (+50%) was lost in that noise in one of three tries. So the slowdown injected is 2.0 (every
# timed inference takes three times as long) and the minimum effect 60%: both verdicts clear
# the noise measured. The contention guard stays off: on such a machine it would (rightly)
# withhold every verdict.
QUICK = ["--config", "fp32", "--backend", "openvino", "--min-repeats", "50", "--min-time",
         "0.2", "--passes", "3", "--max-spread", "0", "--max-other-cpu", "0", "--max-steal", "0",
         "--max-canary-slowdown", "0",
         "--threshold", "0.6"]


@pytest.mark.openvino
@pytest.mark.readme_claim("run --baseline previous --fail-on regression: a slowdown exits 1 with a "
                          "JUnit failure")
def test_the_nightly_gate_end_to_end(workspace, tiny_model, monkeypatch, capsys):
    monkeypatch.delenv("AUTOTUNE_INJECT_SLOWDOWN", raising=False)
    gated = ["--model", str(tiny_model), *QUICK]
    # First night: no baseline to compare with; a CI log gets one line per trial, no bar.
    assert main(["run", *gated, "--baseline", "previous", "--fail-on", "regression"]) == 0
    out, err = capsys.readouterr()
    first = out.split()[1]
    assert "no baseline: no finished run before" in out
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert len(lines) == 1 and re.fullmatch(
        rf"\[1/1\] fp32 \({FP32.id}\) on openvino/host-cpu: ok \d+\.\d{{4}} ms", lines[0])
    assert re.search(rf"^pass 2/3 \[1/1\] fp32 \({FP32.id}\) on openvino/host-cpu: ok ", err,
                     re.MULTILINE)

    # Second night, nothing changed: compared with the first, no regression.
    junit = workspace / "junit.xml"
    assert main(["run", *gated, "--no-progress", "--baseline", "previous",
                 "--fail-on", "regression", "--fail-on", "change", "--junit", str(junit),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    second = summary["run_id"]
    assert summary["gate"]["baseline"] == first and summary["gate"]["regressions"] == 0
    assert summary["trials"]["ok"] == 1 and Path(summary["report"]["summary"]).is_file()
    assert (summary["changes"]["comparable_runs"], summary["changes"]["new_regressions"]) == (2, 0)
    assert "Not enough history yet: 2 comparable run(s)" in Path(
        summary["report"]["summary"]).read_text()
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")  # the trial, the changes

    # Third night, the worker busy-waits twice each timed inference's time: a regression.
    monkeypatch.setenv("AUTOTUNE_INJECT_SLOWDOWN", "2.0")
    assert main(["run", *gated, "--no-progress", "--baseline", "previous",
                 "--fail-on", "regression", "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert f"gate: {out.split()[1]} against baseline {second}" in out
    assert "1 regression(s) against baseline" in out
    (case,) = ET.parse(junit).getroot().iter("testcase")
    assert case.find("failure").get("message").startswith("slower: fastest pass median")


"""The Python API: runs and trials as DataFrames, the same figures as the reports."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys

import pytest

import autotune
from autotune.config import FP32, QuantConfig
from autotune.errors import InputError
from autotune.outcome import PassRecord
from autotune.pareto import frontier, pick
from autotune.report.table import CSV_FIELDS, TRIAL_COLUMNS
from autotune.store import Store
from autotune.testing.store_conformance import INT8, failed_trial, full_trial, sample_run

pd = pytest.importorskip("pandas")


@pytest.mark.readme_claim("import autotune stays light; pandas loads on first use")
def test_import_autotune_loads_neither_pandas_nor_the_store():
    code = ("import sys, autotune; heavy = {'pandas', 'sqlalchemy', 'numpy', 'openvino', 'tvm'}"
            " & set(sys.modules); assert not heavy, heavy; assert callable(autotune.open_store)")
    subprocess.run([sys.executable, "-c", code], check=True)


def _hand_made_store(tmp_path) -> str:
    """Two runs: r1 (older) and r2 with an ok int8, an fp32, a failure and a per-group
    config that is slower and less accurate than int8 (off the frontier)."""
    url = f"sqlite:///{tmp_path}/api.db"
    store = Store(url)
    store.create_run(sample_run("r1", "2026-01-01T00:00:00+00:00"))
    store.create_run(sample_run("r2", "2026-01-02T00:00:00+00:00"))
    store.add_trial(full_trial("r1"))
    fp32 = dataclasses.replace(full_trial("r2", FP32), latencies_ms=[3.0, 3.5, 3.25],
                               passes=[PassRecord(3.25, 0.1, 2), PassRecord(status="timeout"),
                                       PassRecord(3.5, 0.1, 1)], accuracy_drop=0.0,
                               memory_bytes=4 << 20)
    slow = dataclasses.replace(full_trial("r2", QuantConfig.from_text(
        "w:int8:sym:per_group:32 a:uint8:asym cal:minmax")), passes=[PassRecord(2.0, 0.1, 4)],
        accuracy_drop=0.02, memory_bytes=3 << 31)
    for trial in (fp32, full_trial("r2"), slow, failed_trial("r2", INT8, backend="tvm")):
        store.add_trial(trial)
    return url


@pytest.mark.readme_claim("store.trials(run): one row per trial, the rows of trials.csv and more")
def test_trials_frame_has_one_documented_row_per_trial(tmp_path):
    store = autotune.open_store(_hand_made_store(tmp_path))
    trials = store.trials()  # the latest run: r2
    assert list(trials.columns) == list(TRIAL_COLUMNS) and set(CSV_FIELDS) <= set(TRIAL_COLUMNS)
    assert set(trials.run_id) == {"r2"} and len(trials) == 4
    assert trials.status.tolist().count("compile_error") == 1
    fp32 = trials.set_index("config_text").loc[FP32.text]
    assert fp32.latency_ms == 3.25  # the fastest pass's median, not the pooled one
    assert fp32.passes == 2 and fp32.samples == 3 and fp32.memory_bytes == 4 << 20
    int8 = trials[(trials.config_id == INT8.id) & (trials.backend == "openvino")].iloc[0]
    assert int8.roofline_bound == "memory" and int8.other_cpu_share == 0.34
    assert int8.accuracy_drop_pp == pytest.approx(1.0) and int8.cpu_model == "Xeon Gold"
    assert len(store.trials("r1")) == 1
    assert store.runs().run_id.tolist() == ["r1", "r2"]
    with pytest.raises(InputError, match="no run 'r9'"):
        store.trials("r9")


@pytest.mark.readme_claim("store.frontier(run) and store.pick(run, ...) are autotune.pareto's "
                          "front and pick")
def test_frontier_and_pick_are_the_pareto_modules(tmp_path):
    url = _hand_made_store(tmp_path)
    store = autotune.open_store(url)
    stored = Store(url).trials("r2")
    front = store.frontier("r2")
    assert sorted(front.config_id) == sorted(t.config.id for t in frontier(stored))
    assert front.on_frontier.all() and len(front) == 2  # fp32 and int8; per-group is beaten
    chosen = store.pick(max_accuracy_drop=0.015)
    expected = pick(stored, 0.015)
    assert chosen.pick.tolist() == ["chosen"]
    assert chosen.iloc[0].config_id == expected.chosen.config.id
    nearest = store.pick(max_accuracy_drop=-0.5, objective="memory")
    assert nearest.pick.tolist() == ["nearest"] * 3
    assert nearest.misses_accuracy_drop_by.tolist() == pytest.approx(
        [miss for _, miss in pick(stored, -0.5, "memory").nearest])
    with pytest.raises(InputError, match="target 'arm'"):
        store.pick(target="arm")


@pytest.mark.readme_claim("store.samples(run) and store.passes(run): every sample and pass, long "
                          "format")
def test_samples_and_passes_in_long_format(tmp_path):
    store = autotune.open_store(_hand_made_store(tmp_path))
    samples = store.samples()
    fp32 = samples[samples.config_id == FP32.id]
    # Passes 1 and 3 succeeded (2 samples, then 1); pass 2 timed out and took none.
    assert fp32[["pass", "sample", "latency_ms"]].values.tolist() == [
        [1, 0, 3.0], [1, 1, 3.5], [3, 0, 3.25]]
    trials = store.trials()
    assert len(samples) == trials.samples.sum()
    passes = store.passes()
    fp32_passes = passes[passes.config_id == FP32.id]
    assert fp32_passes.status.tolist() == ["ok", "timeout", "ok"]
    joined = passes.merge(trials, on=["run_id", "config_id", "backend", "target"])
    assert len(joined) == len(passes)


@pytest.mark.openvino
@pytest.mark.readme_claim("digits-cnn: fp32 top-1 on the distorted evaluation split is 86.8%")
def test_a_real_runs_frame_matches_the_reports_csv(workspace, capsys):
    """digits-cnn on OpenVINO, measured for real: the DataFrame's figures are the CSV's, and
    the run's fp32 reference (onnxruntime) misses some distorted digits, so the default model
    has an accuracy axis (on clean digits every config scored 100%)."""
    from autotune.cli import main

    code = main(["run", "--model", "digits-cnn", "--space", "smoke", "--backend", "openvino",
                 "--budget", "2",
                 "--min-repeats", "5", "--min-time", "0.05", "--passes", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    run_id = out.split()[1]
    with open(workspace / "reports" / run_id / "trials.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    trials = autotune.open_store(f"sqlite:///{workspace}/results/autotune.db").trials(
        run="latest")
    assert len(trials) == len(rows) == 2 and set(trials.run_id) == {run_id}
    store = autotune.open_store(f"sqlite:///{workspace}/results/autotune.db")
    assert store.run(run_id).reference_accuracy == pytest.approx(0.868, abs=5e-4)
    for row, (_, frame_row) in zip(rows, trials.iterrows(), strict=True):
        assert (frame_row.config_text, frame_row.status) == (row["config_text"], "ok")
        for column in ("latency_ms", "latency_median_ms", "latency_p90_ms", "accuracy",
                       "accuracy_drop_pp", "memory_bytes", "peak_memory_bytes"):
            assert frame_row[column] == float(row[column]), column
        assert frame_row.accuracy > 0.5 and frame_row.memory_bytes > 0  # digits has labels
    samples = autotune.open_store(f"sqlite:///{workspace}/results/autotune.db").samples()
    assert sorted(samples["pass"].unique()) == [1, 2]
    assert samples.groupby("config_id").size().min() >= 10  # 5 repeats, 2 passes at least


@pytest.mark.openvino
@pytest.mark.readme_claim("autotune.run_benchmark(...) makes a run as autotune run does and "
                          "returns its id")
def test_run_benchmark_runs_as_autotune_run_does(workspace):
    url = f"sqlite:///{workspace}/results/api.db"
    # ``configs`` as ``--config`` (a config the smoke space does not have), fp32 first.
    per_tensor = "w:int8:sym:per_tensor a:uint8:asym cal:minmax"
    run_id = autotune.run_benchmark("digits-cnn", configs=[per_tensor], backends=["openvino"],
                                    budget=2, store=url,
                                    report_dir=workspace / "reports", min_repeats=5,
                                    min_time_s=0.05, passes=1)
    store = autotune.open_store(url)
    run = store.run("latest")
    assert run.id == run_id and run.status == "finished"
    assert run.settings.passes == 1 and run.settings.backends == ("openvino",)
    trials = store.trials(run_id)
    assert trials.config_text.tolist() == [FP32.text, per_tensor]
    assert trials.status.tolist() == ["ok", "ok"]
    # Each trial carries the data it was scored on (part of what compare pairs trials by).
    from autotune.zoo import resolve_model

    digest = resolve_model("digits-cnn").dataset.digest()
    assert {trial.dataset_hash for trial in Store(url).trials(run_id)} == {digest}
    assert (workspace / "reports" / run_id / "trials.csv").exists()
    with pytest.raises(TypeError, match="no_such_setting"):
        autotune.run_benchmark(store=url, no_such_setting=1)
    with pytest.raises(InputError, match="--passes"):
        autotune.run_benchmark(store=url, passes=0)

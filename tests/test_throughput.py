"""Throughput mode (--batch): its facts, picks and fronts, and real OpenVINO runs of it."""

import json

import numpy as np
import pytest

from autotune.config import FP32
from autotune.errors import InputError
from autotune.measure import MeasurementProtocol
from autotune.outcome import ThroughputFacts, ThroughputPoint
from autotune.pareto import pick, throughput_front
from autotune.testing.conformance import INT8
from autotune.throughput import (
    batch_of,
    batched_feeds,
    parse_batches,
)
from autotune.trial import Trial

QUICK = MeasurementProtocol(warmup_runs=2, min_repeats=5, min_time_s=0.1)


def _trial(config, ips: float | None, drop: float, latency_ms: float = 1.0) -> Trial:
    points = () if ips is None else (ThroughputPoint(1, 1, ips / 2, 10, 0.1, "m"),
                                     ThroughputPoint(8, 8, ips, 80, 0.1, "m"),
                                     ThroughputPoint(32, 32, error="RuntimeError: no"))
    return Trial("r", "m", "h", config, "openvino", "host-cpu", "ok",
                 latency_median_ms=latency_ms, accuracy_drop=drop,
                 throughput=ThroughputFacts(points))


def test_batches_parse_and_reject_nonsense():
    assert parse_batches("1,8, 8") == (1, 8)
    for text in ("0,8", "a", "-1"):
        with pytest.raises(InputError, match="--batch"):
            parse_batches(text)


@pytest.mark.readme_claim("the batch is set where it is 1 or dynamic; a fixed batch runs at its "
                          "own")
def test_batch_is_set_where_free_and_kept_where_fixed():
    assert batch_of([(1, 3, 16, 16)], 8) == (8, "")
    assert batch_of([(None, 128), (1, 128)], 8) == (8, "")
    batch, note = batch_of([(4, 3, 16, 16)], 8)
    assert batch == 4 and "fixed at 4" in note


def test_batched_feeds_stack_different_samples():
    evaluation = [{"x": np.full((1, 2), i, np.float32)} for i in range(5)]
    feeds = batched_feeds(evaluation, 3, 1)
    assert [f["x"].shape for f in feeds] == [(3, 2)] * 4
    assert feeds[0]["x"][:, 0].tolist() == [0, 1, 2] and feeds[1]["x"][0, 0] == 1


def test_throughput_is_stored_with_the_trial_and_read_back():
    trial = _trial(INT8, 900.0, 0.01)
    data = json.loads(json.dumps(trial.facts_json()))
    again = Trial.facts_from_json(data)["throughput"]
    assert again == trial.throughput and again.best.batch == 8
    assert trial.throughput_ips == 900.0 and not again.points[2].ok
    assert Trial.facts_from_json({})["throughput"] is None  # trials stored before it


def test_pick_and_front_maximize_throughput():
    fast_int8 = _trial(INT8, 900.0, 0.02)
    fp32 = _trial(FP32, 400.0, 0.0)
    unmeasured = _trial(INT8, None, 0.0)
    trials = [fp32, fast_int8, unmeasured]
    assert pick(trials, 0.05, "throughput").chosen is fast_int8
    assert pick(trials, 0.01, "throughput").chosen is fp32
    assert throughput_front(trials) == [fp32, fast_int8]


@pytest.mark.readme_claim("run-file key batch = [1, 8]")
def test_run_file_takes_batch(tmp_path):
    from autotune.runfile import load_run_file

    path = tmp_path / "nightly.toml"
    path.write_text("batch = [1, 8]\n")
    assert load_run_file(path).shared.batches == (1, 8)
    path.write_text("batch = [0]\n")
    with pytest.raises(InputError, match="batch"):
        load_run_file(path)


def _measured(backend_name, model_path, config, batches, folder) -> ThroughputFacts:
    """Quantize, compile for host-cpu and run the throughput mode, for real."""
    from autotune.backends import get_backend
    from autotune.data import random_dataset
    from autotune.quantize import quantize
    from autotune.target import load_target

    backend, target = get_backend(backend_name), load_target("host-cpu")
    dataset = random_dataset(model_path, calibration_count=4, evaluation_count=4)
    model = quantize(model_path, config, dataset.calibration, folder / "cache")
    (folder / "artifact").mkdir()
    artifact = backend.compile(model, target, folder / "artifact")
    return backend.measure_throughput(model, artifact, dataset.evaluation, target, QUICK,
                                      batches, folder / "throughput")


@pytest.fixture(scope="module")
def free_batch_model(tmp_path_factory):
    """The tiny CNN with a Flatten, whose batch any runtime can set."""
    from autotune.testing.models import tiny_cnn

    return tiny_cnn(tmp_path_factory.mktemp("models") / "tiny_flat.onnx", flatten=True)


@pytest.mark.openvino
@pytest.mark.readme_claim("OpenVINO throughput: PERFORMANCE_HINT THROUGHPUT through an "
                          "AsyncInferQueue")
def test_openvino_throughput_hint_at_each_batch(tiny_model, tmp_path):
    """Real OpenVINO: batch 8 of an int8 model whose Reshape fixes batch 1 is refused with
    the reason; batch 1 runs under the THROUGHPUT hint with its async requests."""
    pytest.importorskip("openvino")
    facts = _measured("openvino", tiny_model, INT8, [1, 8], tmp_path)
    one, eight = facts.points
    assert one.ok and one.batch == 1 and one.inferences_per_s > 0
    assert one.mode.startswith("THROUGHPUT hint") and one.requests >= 1
    assert one.wall_s >= QUICK.min_time_s and one.inferences >= QUICK.min_repeats
    assert one.machine.wall_s >= QUICK.min_time_s  # the machine during the timed window
    assert not eight.ok and "batch 8" in eight.error
    assert facts.best is one


@pytest.mark.openvino
@pytest.mark.readme_claim("autotune run --batch 1,8: inferences/s; pick --objective throughput")
def test_run_batch_reports_and_picks_throughput(workspace, free_batch_model, capsys):
    """`autotune run --batch 1,8` end to end: stored, in summary.md and trials.csv, and
    `pick --objective throughput` answers with it."""
    pytest.importorskip("openvino")
    from autotune.cli import main
    from autotune.store import Store

    code = main(["run", "--model", str(free_batch_model), "--space", "smoke", "--backend",
                 "openvino", "--min-repeats", "5", "--min-time", "0.1", "--passes", "1",
                 "--batch", "1,8", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    run_id = out.out.split()[1]
    trials = Store(f"sqlite:///{workspace}/results/autotune.db").trials(run_id)
    for trial in trials:
        points = {p.requested: p for p in trial.throughput.points}
        assert points[1].ok and points[8].ok and points[8].batch == 8, trial.throughput
        assert trial.throughput_ips == max(p.inferences_per_s for p in points.values())
    summary = (workspace / "reports" / run_id / "summary.md").read_text()
    assert "### Throughput (inferences/s)" in summary and "throughput vs fp32" in summary
    assert "--batch 1,8" in summary  # the reproduce command measures it again
    report = workspace / "reports" / run_id
    assert "throughput_vs_fp32" in (report / "trials.csv").read_text()
    assert "throughput vs fp32</th>" in (report / "index.html").read_text()
    assert main(["pick", "--max-accuracy-drop", "100", "--objective", "throughput",
                 "--json"]) == 0
    choice = json.loads(capsys.readouterr().out)["answers"][0]["choice"]
    assert choice["throughput_ips"] == max(t.throughput_ips for t in trials)


@pytest.mark.readme_claim("pick --objective throughput exits 2 with the fix when the run has no "
                          "figures")
def test_pick_throughput_without_figures_says_how(workspace, capsys):
    from autotune.cli import main
    from autotune.settings import RunSpec
    from autotune.store import Run, Store, now

    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    store.create_run(Run(id="r1", created_at=now(), finished_at=None, status="finished",
                         model="m", model_path="m.onnx", model_hash="h", space="smoke",
                         metric="cosine", synthetic_data=True, reference_accuracy=None,
                         host={}, settings=RunSpec(), versions={}))
    trial = _trial(FP32, None, 0.0)
    trial.run_id = "r1"
    store.add_trial(trial)
    assert main(["pick", "r1", "--objective", "throughput"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_bad_batch_flag_exits_2(workspace, capsys):
    from autotune.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run", "--batch", "0,8"])
    assert exited.value.code == 2
    assert "batch sizes must be positive" in capsys.readouterr().err


@pytest.mark.tvm
@pytest.mark.readme_claim("TVM throughput: batch 1 on the measured library, another batch on a "
                          "model built for it")
def test_tvm_builds_and_times_the_model_at_batch_n(free_batch_model, tmp_path):
    """Real TVM: batch 1 runs the measured library, batch 4 the model built for it."""
    pytest.importorskip("tvm")
    one, four = _measured("tvm", free_batch_model, FP32, [1, 4], tmp_path).points
    assert one.ok and one.mode == "synchronous, the measured library"
    assert four.ok and four.batch == 4 and "built for batch 4" in four.mode
    assert four.inferences == 4 * (four.inferences // 4) > 0

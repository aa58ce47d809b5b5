"""``autotune compare`` and ``autotune history`` on stored runs with known, injected effects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autotune.cli import main
from autotune.config import FP32, QuantConfig
from autotune.settings import RunSpec
from autotune.store import Run, Store
from autotune.trial import Trial

INT8 = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax")
FP16 = QuantConfig.from_text("fp16")


def draw(seed: int, median_ms: float, scale: float = 1.0, count: int = 300) -> list[float]:
    """Seeded latency-like samples: log-normal jitter and a sparse slow tail."""
    rng = np.random.default_rng(seed)
    values = median_ms * rng.lognormal(0.0, 0.05, count)
    tail = rng.random(count) < 0.02
    values[tail] += rng.exponential(median_ms, tail.sum())
    return [float(v) for v in values * scale]


def add_run(store: Store, run_id: str, openvino: str, trials: list[tuple], model: str = "tiny",
            created_at: str | None = None, dataset_hash: str = "") -> str:
    """Store a run whose trials are ``(config, status, samples)``."""
    versions = {"openvino": openvino, "onnxruntime": "1.32.0", "numpy": "2.4.6"}
    store.create_run(Run(
        id=run_id, created_at=created_at or f"2026-11-01T00:00:{run_id[-2:]}+00:00",
        finished_at=None, status="finished", model=model, model_path=f"/m/{model}.onnx",
        model_hash=f"{model}-hash", space="smoke", metric="fidelity", synthetic_data=True,
        reference_accuracy=None, settings=RunSpec(), host={"cpu_model": "Test CPU"},
        versions=versions))
    for config, status, latencies in trials:
        ok = status == "ok"
        store.add_trial(Trial(
            run_id=run_id, model=model, model_hash=f"{model}-hash", config=config,
            backend="openvino", target="host-cpu", status=status,
            error="" if ok else "RuntimeError: cannot compile Convolution", versions=versions,
            cpu_model="Test CPU", cores=2, latencies_ms=latencies,
            latency_median_ms=float(np.median(latencies)) if ok else None,
            latency_p90_ms=float(np.percentile(latencies, 90)) if ok else None,
            memory_bytes=6 << 20 if ok else None, artifact_size_bytes=50_000 if ok else None,
            accuracy_drop=0.001 if ok else None, cosine=0.999 if ok else None,
            dataset_hash=dataset_hash))
    return run_id


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/results/autotune.db"


def compare(store_url: str, *args: str) -> int:
    return main(["compare", *args, "--store", store_url])


@pytest.mark.readme_claim("exit 1: compare finds a regression")
def test_an_injected_ten_percent_slowdown_is_found(store_url, capsys):
    store = Store(store_url)
    add_run(store, "run-01", "2025.4.0", [(FP32, "ok", draw(1, 2.0)), (INT8, "ok", draw(2, 1.0))])
    add_run(store, "run-02", "2026.4.1", [(FP32, "ok", draw(3, 2.0)),
                                          (INT8, "ok", draw(4, 1.0, scale=1.10))])
    assert compare(store_url, "run-01", "run-02") == 1
    out = capsys.readouterr().out
    assert "openvino 2025.4.0 -> 2026.4.1" in out
    int8_row = next(line for line in out.splitlines() if line.startswith(INT8.label))
    assert "REGRESSION: slower" in int8_row
    fp32_row = next(line for line in out.splitlines() if line.startswith("fp32 "))
    assert "unchanged" in fp32_row
    assert "1 regression(s) in 2 comparable trials" in out

    assert compare(store_url, "run-01", "run-02", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["regressions"] == 1
    by_config = {t["config_id"]: t for t in report["trials"]}
    assert by_config[INT8.id]["regressed"] and not by_config[FP32.id]["regressed"]
    assert by_config[INT8.id]["latency"]["ratio"] == pytest.approx(1.10, abs=0.03)
    assert by_config[INT8.id]["latency"]["p_value"] < 0.01
    assert report["version_changes"]["openvino"] == {"baseline": "2025.4.0",
                                                     "candidate": "2026.4.1"}
    # A larger minimum effect than the injected one: nothing to report.
    assert compare(store_url, "run-01", "run-02", "--threshold", "0.2") == 0


def test_two_draws_of_the_same_distribution_find_nothing(store_url, capsys):
    store = Store(store_url)
    add_run(store, "run-01", "2026.4.1", [(FP32, "ok", draw(1, 2.0)), (INT8, "ok", draw(2, 1.0))])
    add_run(store, "run-02", "2026.4.1", [(FP32, "ok", draw(11, 2.0)),
                                          (INT8, "ok", draw(12, 1.0))])
    assert compare(store_url, "run-01", "run-02") == 0
    out = capsys.readouterr().out
    assert "versions: identical" in out
    assert "0 regression(s) in 2 comparable trials" in out and "REGRESSION" not in out


@pytest.mark.readme_claim("compare also lists trials present in one run only")
def test_a_config_that_stopped_compiling_and_one_run_only_trials(store_url, capsys):
    store = Store(store_url)
    add_run(store, "run-01", "2025.4.0", [(FP32, "ok", draw(1, 2.0)), (INT8, "ok", draw(2, 1.0)),
                                          (FP16, "ok", draw(3, 1.5))])
    add_run(store, "run-02", "2026.4.1", [(FP32, "ok", draw(11, 2.0)),
                                          (INT8, "compile_error", [])])
    assert compare(store_url, "run-01", "run-02") == 1
    out = capsys.readouterr().out
    int8_row = next(line for line in out.splitlines() if line.startswith(INT8.label))
    assert "ok -> compile_error" in int8_row and "REGRESSION: stopped_compiling" in int8_row
    assert "cannot compile Convolution" in out
    assert "only in baseline: fp16/openvino/host-cpu (ok)" in out
    # The other way round the config was fixed, and fp16 is new: no regression.
    assert compare(store_url, "run-02", "run-01") == 0
    assert "fixed" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(store_url, capsys):
    store = Store(store_url)
    add_run(store, "run-01", "2026.4.1", [(FP32, "ok", draw(1, 2.0))])
    add_run(store, "run-02", "2026.4.1", [(FP32, "ok", draw(2, 2.0))], model="other")
    assert compare(store_url, "run-01", "no-such-run") == 2
    err = capsys.readouterr().err
    assert err.strip() == f"autotune: error: no run 'no-such-run' in {store_url}"
    assert compare(store_url, "run-01", "run-02") == 2
    assert "no comparable trial" in capsys.readouterr().err
    assert compare(store_url, "run-01", "run-01", "--threshold", "-1") == 2
    assert "--threshold" in capsys.readouterr().err
    # The same model and configs, scored on a distorted split: other data, said as such.
    add_run(store, "run-03", "2026.4.1", [(FP32, "ok", draw(3, 2.0))], dataset_hash="d2")
    assert compare(store_url, "run-01", "run-03") == 2
    err = capsys.readouterr().err
    assert "scored on other data (calibration and evaluation: not recorded vs d2)" in err


@pytest.mark.readme_claim("history prints one config's figures run by run and plots them to "
                          "reports/history/")
def test_history_table_and_plot_mark_the_regression(store_url, tmp_path, capsys):
    store = Store(store_url)
    for index, (openvino, scale) in enumerate([("2025.4.0", 1.0), ("2025.4.0", 1.0),
                                               ("2026.4.1", 1.25)]):
        add_run(store, f"run-0{index}", openvino,
                [(FP32, "ok", draw(index, 2.0)), (INT8, "ok", draw(10 + index, 1.0, scale))])
    report_dir = tmp_path / "reports"
    assert main(["history", "--config", INT8.id, "--store", store_url,
                 "--report-dir", str(report_dir)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("run-0")]
    assert len(rows) == 3
    assert "REGRESSION: slower" in rows[2] and "REGRESSION" not in rows[1]
    assert "2026.4.1" in rows[2]
    plots = list((report_dir / "history").glob("*.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 10_000

    assert main(["history", "--model", "tiny", "--json", "--store", store_url,
                 "--report-dir", str(report_dir)]) == 0
    series = json.loads(capsys.readouterr().out)["series"]
    assert {s["config_id"] for s in series} == {FP32.id, INT8.id}
    regressed = {s["config_id"]: [p["regressed"] for p in s["points"]] for s in series}
    assert regressed == {FP32.id: [False, False, False], INT8.id: [False, False, True]}

    assert main(["history", "--config", "nope", "--store", store_url]) == 2
    assert "--config nope: no stored trial matches" in capsys.readouterr().err


@pytest.mark.readme_claim("history finds change points and names what changed in the environment")
def test_history_finds_the_change_point_and_the_version_that_caused_it(store_url, tmp_path,
                                                                         capsys):
    store = Store(store_url)
    rng = np.random.default_rng(5)
    for index in range(1, 9):  # 4 nightly runs on one OpenVINO release, 4 on the next
        openvino, scale = ("2025.4.0", 1.0) if index <= 4 else ("2026.0.0", 1.18)
        add_run(store, f"run-0{index}", openvino,
                [(FP32, "ok", draw(index, 2.0, rng.lognormal(0.0, 0.01))),
                 (INT8, "ok", draw(20 + index, 1.0, scale * rng.lognormal(0.0, 0.01)))])
    report_dir = tmp_path / "reports"
    assert main(["history", "--model", "tiny", "--store", store_url,
                 "--report-dir", str(report_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("change points: none") == 1  # fp32 did not move
    [line] = [line for line in out.splitlines() if line.startswith("  latency")]
    assert line.endswith("at run run-05: openvino 2025.4.0 -> 2026.0.0")
    assert line.startswith("  latency +1")

    assert main(["history", "--config", INT8.id, "--json", "--store", store_url,
                 "--report-dir", str(report_dir)]) == 0
    [series] = json.loads(capsys.readouterr().out)["series"]
    [found] = series["change_points"]
    assert (found["metric"], found["kind"], found["run_id"]) == ("latency", "step", "run-05")
    assert found["before_run_ids"] == ["run-01", "run-02", "run-03", "run-04"]
    assert found["change"] == pytest.approx(0.18, abs=0.03) and found["regression"]
    assert found["environment_changes"] == [
        {"name": "openvino", "before": "2025.4.0", "after": "2026.0.0"}]
    assert list((report_dir / "history").glob("*.png"))
    # The Python API gives the same change point, one row per change.
    import autotune

    frame = autotune.open_store(store_url).change_points(model="tiny")
    assert frame[["config_id", "metric", "kind", "run_id"]].values.tolist() == [
        [INT8.id, "latency", "step", "run-05"]]
    assert frame.cause.tolist() == ["openvino 2025.4.0 -> 2026.0.0"]

"""Roofline bounds, stored peaks, the schema upgrade that stores them, and the command."""

from __future__ import annotations

import json

import pytest

from autotune.cli import main
from autotune.config import QuantConfig
from autotune.graph import analyze, config_cost
from autotune.roofline import (
    Peaks,
    attach_roofline,
    layerwise_bound_ms,
    peaks_for,
    placement,
    roofline_bound,
)
from autotune.store import RooflinePeaks, Store, now
from autotune.target import Target, load_target
from autotune.trial import Trial

PEAKS = Peaks({"fp32": 100.0, "int8": 400.0}, 10.0, "target")


def test_bound_is_the_larger_of_compute_and_memory_time():
    # 2e9 ops at 100 GOPS = 20 ms; 1e9 bytes at 10 GB/s = 100 ms: memory-bound at 100 ms.
    bound = roofline_bound({"fp32": 2e9}, 1e9, PEAKS)
    assert (bound.compute_ms, bound.memory_ms) == pytest.approx((20.0, 100.0))
    assert bound.bound_ms == pytest.approx(100.0) and bound.bound == "memory"
    bound = roofline_bound({"fp32": 2e9}, 1e8, PEAKS)
    assert bound.bound_ms == pytest.approx(20.0) and bound.bound == "compute"


def test_each_precision_runs_against_its_own_peak():
    # 1e9 fp32 ops (10 ms) + 4e9 int8 ops (10 ms); bf16 has no peak and runs at fp32's.
    assert roofline_bound({"fp32": 1e9, "int8": 4e9}, 0, PEAKS).compute_ms == pytest.approx(20)
    assert roofline_bound({"bf16": 1e9}, 0, PEAKS).compute_ms == pytest.approx(10)
    no_bandwidth = Peaks({"fp32": 100.0}, None, "target")
    assert roofline_bound({"fp32": 1e9}, 1e12, no_bandwidth).bound == "compute"


def test_placement_carries_the_report_facts_and_the_attained_fraction(tiny_model):
    cost = config_cost(analyze(tiny_model), QuantConfig())
    placed = placement(cost, PEAKS, latency_ms=0.5)
    bound = roofline_bound(cost.ops_by_precision, cost.bytes, PEAKS)
    assert placed.ops == cost.ops and placed.bytes == round(cost.bytes)
    assert placed.precision == "fp32" and placed.bound == bound.bound
    assert placed.bound_ms == pytest.approx(bound.bound_ms)
    assert placed.attained_fraction == pytest.approx(bound.bound_ms / 0.5)
    # Each layer bounded on its own can only add up to more than the whole-model bound.
    assert layerwise_bound_ms(cost, PEAKS) >= bound.bound_ms
    assert placement(cost, None, 0.5).bound_ms is None  # counts only, no peaks


def _trial(status: str = "ok", latency: float | None = 2.0) -> Trial:
    return Trial(run_id="r", model="m", model_hash="h", config=QuantConfig(),
                 backend="openvino", target="host-cpu", status=status,
                 latency_median_ms=latency, cpu_model="cpu-a", cores=2)


def test_measured_peaks_win_over_the_toml_on_the_same_host(tmp_path, tiny_model):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    target = load_target("host-cpu")
    assert peaks_for(target, store).source == "target"
    store.add_roofline(RooflinePeaks("host-cpu", now(), "box", "cpu-a", 2, {"fp32": 50.0},
                                     5.0, {}, {}))
    assert peaks_for(target, store, "cpu-a", 2).gops == {"fp32": 50.0}
    assert peaks_for(target, store, "cpu-b", 2).source == "target"  # another CPU: TOML
    trial = _trial()
    attach_roofline(trial, tiny_model, target, store)
    assert trial.roofline.peaks_source == "measured"
    failed = _trial("compile_error", None)
    attach_roofline(failed, tiny_model, target, store)
    assert failed.roofline is None


def test_a_target_without_peaks_still_gets_counts(tiny_model):
    bare = Target(name="bare", description="", device="cpu", arch="x86_64")
    trial = _trial()
    attach_roofline(trial, tiny_model, bare)
    assert trial.roofline.ops > 0 and trial.roofline.bytes > 0
    assert trial.roofline.precision == "fp32" and trial.roofline.bound_ms is None


def test_roofline_command_reads_the_toml_without_measuring(tmp_path, capsys):
    code = main(["roofline", "--target", "host-cpu", "--read", "--json",
                 "--store", f"sqlite:///{tmp_path}/r.db"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    target = load_target("host-cpu")
    assert not row["measured"] and row["peak_gops"] == target.peak_gops
    assert row["memory_bandwidth_gbs"] == target.memory_bandwidth_gbs


@pytest.mark.openvino
def test_micro_benchmarks_measure_every_precision_or_say_why(tmp_path):
    pytest.importorskip("openvino")
    from autotune.roofline import measure_peaks

    found = measure_peaks(load_target("host-cpu"), "openvino", tmp_path, matmul_size=256,
                          copy_bytes=8 << 20, min_time_s=0.05)
    assert found.peak_gops["fp32"] > 0 and found.memory_bandwidth_gbs > 0
    for precision, record in found.details["precisions"].items():
        assert (precision in found.peak_gops) == ("best_ms" in record)
        assert "best_ms" in record or record["skipped"]

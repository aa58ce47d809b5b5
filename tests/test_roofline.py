"""Roofline bounds, stored peaks, the schema upgrade that stores them, and the command."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from autotune.bandwidth import LevelSpec, measure_levels, sysfs_cache_sizes, working_set_bytes
from autotune.cli import main
from autotune.config import QuantConfig
from autotune.errors import InputError
from autotune.graph import ConfigCost, LayerCost, analyze, config_cost
from autotune.roofline import (
    LevelRoof,
    Peaks,
    attach_roofline,
    beaten_roof,
    cache_aware_bound,
    layerwise_bound_ms,
    level_roofs,
    peaks_for,
    placement,
    roofline_bound,
)
from autotune.store import RooflinePeaks, Store, now
from autotune.target import MemoryLevel, Target, load_target, parse_target
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


LEVELS = Peaks({"fp32": 100.0, "int8": 400.0}, 10.0, "target", levels=(
    LevelRoof("L1", 1_000, 100.0, "measured"), LevelRoof("L2", 100_000, 50.0, "estimate"),
    LevelRoof("DRAM", None, 10.0, "measured")))


@pytest.mark.readme_claim("the cache-aware bound: bytes at the bandwidth of the smallest level the "
                          "set fits in")
def test_each_layer_moves_its_bytes_at_the_smallest_level_that_holds_it():
    cost = ConfigCost((LayerCost("small", "fp32", 10**6, 400.0, 600.0),  # 1 kB: L1
                       LayerCost("middle", "int8", 4 * 10**6, 4e4, 1e4),  # 50 kB: L2
                       LayerCost("large", "fp32", 0, 2e6, 0.0)))  # 2 MB: DRAM
    bound = cache_aware_bound(cost, LEVELS)
    assert bound.layer_levels == {"small": "L1", "middle": "L2", "large": "DRAM"}
    # 1e3 B at 100 GB/s = 1e-5 ms; 5e4 B at 50 GB/s = 1e-3 ms; 2e6 B at 10 GB/s = 0.2 ms.
    assert bound.memory_ms_by_level == pytest.approx({"L1": 1e-5, "L2": 1e-3, "DRAM": 0.2})
    assert bound.memory_level == "DRAM" and bound.memory_ms == pytest.approx(0.20101)
    # 1e6 fp32 ops at 100 GOPS + 4e6 int8 ops at 400 GOPS = 0.02 ms.
    assert bound.compute_ms == pytest.approx(0.02) and bound.bound == "memory"
    # The classic bound puts every byte in DRAM: never below the cache-aware one.
    assert roofline_bound(cost.ops_by_precision, cost.bytes, LEVELS).memory_ms >= bound.memory_ms
    no_levels = Peaks({"fp32": 100.0}, 10.0, "target")
    assert cache_aware_bound(cost, no_levels).layer_levels["small"] == "DRAM"


def test_level_roofs_scale_private_caches_take_the_larger_figure_and_never_slow_down():
    target = Target(name="t", description="", device="cpu", arch="x86_64", cores=4,
                    memory_levels=(MemoryLevel("L1", 32 << 10, 500.0, private=True),
                                   MemoryLevel("L2", 512 << 10, 200.0, private=True),
                                   MemoryLevel("L3", 8 << 20, 100.0),
                                   MemoryLevel("DRAM", None, 20.0)))
    roofs = level_roofs(target, {"L1": 900.0, "L2": 60.0, "L3": 250.0, "DRAM": 10.0})
    assert [r.capacity_bytes for r in roofs] == [128 << 10, 2 << 20, 8 << 20, None]
    # A measurement shows what a level did at least: above the estimate it is the roof (L1,
    # L3), below it (L2 under load, DRAM) the estimate stays; and the estimated L2, slower
    # than the measured L3 below it, is too low: L3's figure counts for it.
    assert [(r.bandwidth_gbs, r.source) for r in roofs] == [
        (900.0, "measured"), (250.0, "measured"), (250.0, "measured"), (20.0, "estimate")]


@pytest.mark.readme_claim("a trial faster than its bound shows which peak is too low")
def test_a_beaten_bound_names_the_peak_that_is_too_low():
    # 4e4 int8 ops at 400 GOPS = 1e-4 ms; 5e4 bytes in L2 at 50 GB/s = 1e-3 ms.
    cost = ConfigCost((LayerCost("conv", "int8", 4 * 10**4, 4e4, 1e4),))
    placed = placement(cost, LEVELS, latency_ms=5e-4)
    assert placed.memory_level == "L2" and placed.attained_fraction == pytest.approx(2.0)
    assert beaten_roof(placed, 5e-4) == ("measured faster than the L2 bound: the L2 "
                                         "bandwidth is too low")
    assert beaten_roof(placed, 5e-5) == ("measured faster than the L2 bound: the L2 "
                                         "bandwidth or the int8 peak is too low")
    assert beaten_roof(placed, 2e-3) == ""
    assert placed.layer_levels == {"conv": "L2"}
    assert placed.level_bandwidth_gbs == {"L1": 100.0, "L2": 50.0, "DRAM": 10.0}
    assert placed.estimated_levels == ["L2"]


def test_target_files_describe_their_levels(tmp_path):
    host = load_target("host-cpu")
    assert [level.name for level in host.memory_levels] == ["L1", "L2", "L3", "DRAM"]
    found = sysfs_cache_sizes()
    for level in host.memory_levels[:3]:
        assert level.size_bytes == found.get(level.name.lower(), level.size_bytes)
        assert level.size_source == ("sysfs" if level.name.lower() in found else "target")
    arm = load_target("arm-cortex-a76")
    assert [(lv.name, lv.size_bytes, lv.private) for lv in arm.memory_levels] == [
        ("L1", 64 << 10, True), ("L2", 512 << 10, True), ("L3", 2 << 20, False),
        ("DRAM", None, False)]
    assert arm.memory_levels[-1].bandwidth_gbs == arm.memory_bandwidth_gbs
    data = {"device": "cpu", "arch": "x86_64", "openvino": {"device": "CPU"},
            "roofline": {"fp32_gops": 1.0, "memory_bandwidth_gbs": 1.0, "l2_kib": 512}}
    with pytest.raises(InputError, match=r"roofline.l2_kib: a cache level needs its bandwidth"):
        parse_target(data, tmp_path / "t.toml")


def test_working_sets_fit_their_level_and_overflow_the_one_above():
    levels = [LevelSpec("L1", 32 << 10, True), LevelSpec("L2", 512 << 10, True),
              LevelSpec("L3", 32 << 20), LevelSpec("DRAM", None)]
    sizes = [working_set_bytes(levels, i, 64 << 20) for i in range(4)]
    assert sizes == [16 << 10, 128 << 10, 4 << 20, 128 << 20]


def test_the_level_kernel_measures_every_level_or_says_why():
    levels = [LevelSpec("L1", 32 << 10, True), LevelSpec("DRAM", None)]
    figures = measure_levels(levels, 2, min_time_s=0.01, dram_bytes=16 << 20)
    assert [f.name for f in figures] == ["L1", "DRAM"]
    for figure in figures:
        assert (figure.bandwidth_gbs is None) == bool(figure.reason)
        assert figure.best_call_ms > 0 and figure.single_thread_gbs > 0
    # The fastest sample of one call streams hundreds of MiB: far above the call overhead.
    assert figures[0].best_call_ms > 20 * figures[0].overhead_ms


def test_placement_carries_the_report_facts_and_the_attained_fraction(tiny_model):
    cost = config_cost(analyze(tiny_model), QuantConfig())
    placed = placement(cost, PEAKS, latency_ms=0.5)
    bound = cache_aware_bound(cost, PEAKS)
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


@pytest.mark.readme_claim("each roof is the larger of the measured figure and the target TOML's "
                          "estimate")
def test_measured_peaks_raise_the_toml_roofs_on_the_same_host(tmp_path, tiny_model):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    target = replace(load_target("host-cpu"), peak_gops={"fp32": 100.0, "int8": 400.0})
    assert peaks_for(target, store).source == "target"
    store.add_roofline(RooflinePeaks("host-cpu", now(), "box", "cpu-a", 2,
                                     {"fp32": 150.0, "int8": 50.0}, 5.0, {}, {}))
    measured = peaks_for(target, store, "cpu-a", 2)
    # fp32 measured above the theoretical figure: the figure was wrong, the measurement is
    # the roof; int8 measured below it (a MatMul is not every kernel): the theoretical stays.
    assert measured.gops == {"fp32": 150.0, "int8": 400.0}
    assert measured.measured_gops == {"fp32": 150.0, "int8": 50.0}
    assert peaks_for(target, store, "cpu-b", 2).source == "target"  # another CPU: TOML
    trial = _trial()
    attach_roofline(trial, tiny_model, target, store)
    assert trial.roofline.peaks_source == "measured"
    failed = _trial("compile_error", None)
    attach_roofline(failed, tiny_model, target, store)
    assert failed.roofline is None


@pytest.mark.readme_claim("peaks of an emulated device are stored flagged and never used as a roof")
def test_peaks_of_an_emulated_device_are_never_the_roof(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    arm = load_target("arm-cortex-a76")
    store.add_roofline(RooflinePeaks("arm-cortex-a76", now(), "device", "Cortex-A76", 4,
                                     {"fp32": 1.0}, 0.5, {}, {}, {"L1": 2.0, "DRAM": 0.5},
                                     emulator="qemu-aarch64"))
    peaks = peaks_for(arm, store, "Cortex-A76", 4)
    assert peaks.source == "target" and peaks.gops == arm.peak_gops
    assert {level.source for level in peaks.levels} == {"estimate"}


def test_a_target_without_peaks_still_gets_counts(tiny_model):
    bare = Target(name="bare", description="", device="cpu", arch="x86_64")
    trial = _trial()
    attach_roofline(trial, tiny_model, bare)
    assert trial.roofline.ops > 0 and trial.roofline.bytes > 0
    assert trial.roofline.precision == "fp32" and trial.roofline.bound_ms is None


@pytest.mark.readme_claim("autotune roofline --target host-cpu --read")
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


@pytest.mark.openvino
@pytest.mark.readme_claim("roofline measures the target's roofs in an isolated worker, every "
                          "memory level")
def test_roofline_command_measures_and_stores_every_level_in_a_worker(tmp_path, capsys):
    pytest.importorskip("openvino")
    from autotune.host import cpu_model

    url = f"sqlite:///{tmp_path}/r.db"
    assert main(["roofline", "--target", "host-cpu", "--backend", "openvino", "--min-time",
                 "0.01", "--json", "--store", url]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["measured"]
    record = Store(url).latest_roofline("host-cpu", cpu_model())
    levels = [level.name for level in load_target("host-cpu").memory_levels]
    assert set(record.level_bandwidth_gbs) | {
        f["name"] for f in record.details["levels"]["figures"] if f["reason"]} == set(levels)
    assert record.memory_bandwidth_gbs == record.level_bandwidth_gbs["DRAM"] > 0
    assert record.emulator == "" and record.peak_gops["fp32"] > 0
    shown = {level["level"]: level for level in row["levels"]}
    for name, gbs in record.level_bandwidth_gbs.items():
        # Each level's roof is the larger of its measurement and its estimate.
        assert shown[name]["bandwidth_gbs"] >= max(gbs, shown[name]["toml_bandwidth_gbs"])
        assert (shown[name]["source"] == "measured") == (gbs > shown[name]["toml_bandwidth_gbs"])
    assert row["measured_gops"]["fp32"] == record.peak_gops["fp32"]
    assert row["peak_gops"]["fp32"] >= record.peak_gops["fp32"]


def test_the_device_function_answers_a_json_request_with_every_level():
    from autotune.backends.device import _measure_memory_levels

    answer = json.loads(_measure_memory_levels(json.dumps({
        "levels": [{"name": "L1", "size_bytes": 32 << 10, "private": True}], "threads": 1,
        "min_time_s": 0.01, "dram_bytes": 1 << 20})))
    assert [level["name"] for level in answer] == ["L1"] and answer[0]["single_thread_gbs"] > 0


@pytest.mark.readme_claim("compute = \"isa\": cores x SIMD lanes x 2 FMA pipes x 2 x the highest "
                          "clock")
def test_theoretical_peaks_follow_the_instruction_set():
    from autotune.cpu_peaks import isa_peaks

    # 2 cores x 16 lanes x 2 FMA pipes x 2 ops x 3 GHz = 384 GOPS fp32; VNNI int8 4x that.
    avx512 = isa_peaks({"avx512f", "avx2", "fma", "avx512_vnni"}, 2, 3.0)
    assert avx512 == pytest.approx({"fp32": 384.0, "fp16": 384.0, "bf16": 384.0,
                                    "int8": 1536.0})
    avx2 = isa_peaks({"avx2", "fma"}, 2, 3.0)
    assert avx2["fp32"] == pytest.approx(192.0) and avx2["int8"] == pytest.approx(768.0)
    assert avx2["bf16"] == avx2["fp32"]  # no native bf16: the runtime computes in fp32
    assert isa_peaks({"avx512f", "avx512_bf16"}, 1, 1.0)["bf16"] == pytest.approx(128.0)
    amx = isa_peaks({"avx512f", "amx_int8", "amx_bf16"}, 1, 1.0)
    assert amx["int8"] == pytest.approx(2048.0) and amx["bf16"] == pytest.approx(1024.0)


def test_the_clock_is_the_highest_the_cores_may_reach(tmp_path):
    from autotune.cpu_peaks import TURBO_ALLOWANCE, max_clock_ghz

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu MHz\t\t: 2000.000\nflags\t\t: fpu avx2\n")
    cpufreq = tmp_path / "cpuinfo_max_freq"
    cpufreq.write_text("3500000\n")
    assert max_clock_ghz(cpuinfo, cpufreq) == (3.5, "cpufreq cpuinfo_max_freq")
    clock, source = max_clock_ghz(cpuinfo, tmp_path / "missing")
    assert clock == pytest.approx(2.0 * TURBO_ALLOWANCE) and "turbo allowance" in source
    assert max_clock_ghz(tmp_path / "missing", tmp_path / "missing")[0] is None


def test_host_cpu_derives_its_peaks_from_this_machine():
    from autotune.cpu_peaks import cpu_flags

    target = load_target("host-cpu")
    if not cpu_flags():
        pytest.skip("no /proc/cpuinfo flags on this machine")
    assert target.peaks_derivation.startswith(f"{target.threads} cores x ")
    assert target.peak_gops["int8"] == pytest.approx(4 * target.peak_gops["fp32"])

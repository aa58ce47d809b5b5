"""Regression detection on synthetic trials: known effects must be found, noise must not."""

from __future__ import annotations

import numpy as np
import pytest

from autotune.config import FP32, QuantConfig
from autotune.outcome import PassRecord
from autotune.regress import (
    Thresholds,
    compare_pair,
    compare_trials,
    fastest_pass_ms,
    history_changes,
    latency_test,
    pass_noise,
    version_changes,
)
from autotune.trial import Trial

INT8 = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax")


def samples(seed: int, count: int = 200, median_ms: float = 2.0, scale: float = 1.0) -> list:
    """Latency-like samples: log-normal around the median with a sparse slow tail."""
    rng = np.random.default_rng(seed)
    values = median_ms * rng.lognormal(0.0, 0.04, count)
    tail = rng.random(count) < 0.03
    values[tail] += rng.exponential(0.5 * median_ms, tail.sum())
    return list(values * scale)


def trial(run_id: str = "a", config: QuantConfig = FP32, status: str = "ok", **figures) -> Trial:
    latencies = figures.pop("latencies_ms", samples(0) if status == "ok" else [])
    return Trial(run_id=run_id, model="tiny", model_hash="h1", config=config,
                 backend="openvino", target="host-cpu", status=status,
                 error="" if status == "ok" else "boom\nsecond line",
                 latencies_ms=latencies,
                 latency_median_ms=float(np.median(latencies)) if latencies else None,
                 memory_bytes=figures.pop("memory_bytes", 8 << 20),
                 artifact_size_bytes=figures.pop("artifact_size_bytes", 100_000),
                 accuracy=figures.pop("accuracy", 0.95),
                 accuracy_drop=figures.pop("accuracy_drop", 0.0), **figures)


@pytest.mark.readme_claim("a latency regression: Mann-Whitney U at --alpha 0.01 and a bootstrap "
                          "99% interval")
def test_a_ten_percent_slowdown_is_a_significant_regression():
    test = latency_test(samples(1), samples(2, scale=1.10))
    assert test.ratio == pytest.approx(1.10, abs=0.02)
    assert test.significant and test.p_value < 1e-6
    assert test.ci_low > 1.05 and test.ci_high < 1.16
    assert test.verdict(0.05) == "slower"


@pytest.mark.readme_claim("a latency regression must be at least --threshold (5%) slower")
def test_a_small_real_change_is_significant_but_below_the_threshold():
    test = latency_test(samples(1, count=2000), samples(2, count=2000, scale=1.02))
    assert test.significant
    assert test.verdict(0.05) is None
    assert test.verdict(0.0) == "slower"


def test_faster_is_not_slower():
    test = latency_test(samples(1), samples(2, scale=0.8))
    assert test.verdict(0.05) == "faster"


def test_two_draws_of_one_distribution_are_rarely_flagged():
    flagged = sum(latency_test(samples(seed), samples(seed + 1000), resamples=500).verdict(0.05)
                  is not None for seed in range(100))
    assert flagged <= 1
    # With no minimum effect the rank test alone is still mostly quiet at alpha = 0.01.
    significant = sum(latency_test(samples(seed), samples(seed + 1000), resamples=500)
                      .significant for seed in range(100))
    assert significant <= 5


def test_the_bootstrap_is_seeded():
    first = latency_test(samples(1), samples(2), seed=7)
    assert latency_test(samples(1), samples(2), seed=7) == first
    assert latency_test(samples(1), samples(2), seed=8).ci_low != first.ci_low


def test_identical_constant_samples_are_unchanged():
    test = latency_test([1.0] * 10, [1.0] * 10)
    assert test.p_value == 1.0 and test.ratio == 1.0 and not test.significant


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="at least 3"):
        latency_test([1.0, 2.0], [1.0, 2.0, 3.0])


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        Thresholds(latency=-0.1)
    with pytest.raises(ValueError):
        Thresholds(alpha=1.5)


@pytest.mark.readme_claim("a config that went from ok to failing always counts")
def test_status_changes():
    def kinds(before: str, after: str) -> list[str]:
        return [f.kind for f in compare_pair(trial(status=before), trial(status=after)).findings]

    assert kinds("ok", "compile_error") == ["stopped_compiling"]
    assert kinds("ok", "unsupported") == ["stopped_compiling"]
    assert kinds("ok", "timeout") == ["started_failing"]
    assert kinds("ok", "runtime_error") == ["started_failing"]
    assert kinds("compile_error", "ok") == ["fixed"]
    assert kinds("compile_error", "runtime_error") == []
    broken = compare_pair(trial(), trial(status="compile_error"))
    assert broken.regressed and "boom" in broken.findings[0].detail
    assert "second line" not in broken.findings[0].detail


@pytest.mark.readme_claim("memory and size count beyond --memory-threshold, accuracy beyond "
                          "--accuracy-threshold")
def test_memory_size_and_accuracy_changes():
    base = trial()
    more_memory = compare_pair(base, trial(memory_bytes=16 << 20))
    assert [f.kind for f in more_memory.findings] == ["more_memory"]
    assert more_memory.memory_change == pytest.approx(1.0)
    # +50% of a few hundred KiB is below the floor: RSS noise, not a regression.
    tiny = compare_pair(trial(memory_bytes=200_000), trial(memory_bytes=300_000))
    assert not tiny.findings
    assert [f.kind for f in compare_pair(base, trial(artifact_size_bytes=120_000)).findings] \
        == ["larger"]
    less_accurate = compare_pair(base, trial(accuracy=0.94))
    assert [f.kind for f in less_accurate.findings] == ["less_accurate"]
    assert less_accurate.accuracy_change_pp == pytest.approx(-1.0)
    assert not compare_pair(base, trial(accuracy=0.947)).findings
    assert not compare_pair(base, trial(accuracy=0.94), Thresholds(accuracy_pp=2)).findings
    # Without labels, fidelity (the drop against fp32) is compared instead.
    fidelity = compare_pair(trial(accuracy=None, accuracy_drop=0.001),
                            trial(accuracy=None, accuracy_drop=0.02))
    assert [f.kind for f in fidelity.findings] == ["less_accurate"]
    assert "fidelity" in fidelity.findings[0].detail


@pytest.mark.readme_claim("compare pairs trials by model (name and hash), config, backend, target")
def test_compare_trials_pairs_by_model_config_backend_and_target():
    baseline = [trial("a"), trial("a", INT8),
                trial("a", QuantConfig.from_text("fp16"), status="unavailable")]
    candidate = [trial("b", latencies_ms=samples(5, scale=1.10)),
                 trial("b", INT8, status="compile_error"),
                 trial("b", QuantConfig.from_text("bf16"))]
    comparison = compare_trials(baseline, candidate)
    assert [pair.candidate.config for pair in comparison.matched] == [FP32, INT8]
    assert [(pair.candidate.config, f.kind) for pair, f in comparison.regressions] == \
        [(FP32, "slower"), (INT8, "stopped_compiling")]
    # An unavailable trial was never attempted: it is only listed, never a regression.
    assert [t.config.text for t in comparison.only_baseline] == ["fp16"]
    assert [t.config.text for t in comparison.only_candidate] == ["bf16"]


@pytest.mark.readme_claim("compare reports a pair with an unavailable side as unavailable, never a "
                          "regression")
def test_a_backend_that_could_not_run_is_reported_never_a_regression():
    """A runtime environment without TVM (or a trial stored before workers said so: a compile
    error "No module named 'tvm'") is the environment's failure, not the runtime's."""
    missing = trial("b", status="unavailable")
    missing.error = "apache-tvm is not installed (No module named 'tvm'), in the workers' " \
                    "environment /cache/envs/openvino-2025.4.0-0123456789ab"
    legacy = trial("b", INT8, status="compile_error")
    legacy.error = "ModuleNotFoundError: No module named 'tvm' (at tvm.py:108)"
    no_nncf = trial("b", QuantConfig.from_text("w:int4:sym:per_group:32 a:fp32"),
                    status="unsupported")
    no_nncf.error = "weight-only quantization on OpenVINO needs nncf (No module named 'nncf')"
    ours = trial("b", QuantConfig.from_text("fp16"), status="compile_error")
    ours.error = "ModuleNotFoundError: No module named 'autotune.backends.gone' (at x.py:1)"
    comparison = compare_trials(
        [trial("a"), trial("a", INT8), trial("a", no_nncf.config),
         trial("a", QuantConfig.from_text("fp16"))],
        [missing, legacy, no_nncf, ours])
    assert [[f.kind for f in pair.findings] for pair in comparison.matched] == \
        [["unavailable"], ["unavailable"], ["unavailable"], ["stopped_compiling"]]
    assert [f.kind for _, f in comparison.regressions] == ["stopped_compiling"]
    detail = comparison.matched[0].findings[0].detail
    assert detail.startswith("openvino could not run in the candidate: apache-tvm is not")
    # The other way round too: the baseline could not run it; nothing is "fixed".
    back = compare_trials([missing], [trial("c")])
    assert [f.kind for f in back.matched[0].findings] == ["unavailable"]
    assert not back.regressions and "in the baseline" in back.matched[0].findings[0].detail


def test_another_model_hash_is_not_comparable():
    other = trial("b")
    other.model_hash = "h2"
    comparison = compare_trials([trial("a")], [other])
    assert not comparison.matched
    assert len(comparison.only_baseline) == len(comparison.only_candidate) == 1


@pytest.mark.readme_claim("compare pairs trials by data: a score on other data is no regression")
def test_trials_scored_on_other_data_are_not_comparable():
    """A zoo split made harder (or a user's new .npz) changes what an accuracy means: the
    model file is the same, the data hash is not, so nothing is paired."""
    before, after = trial("a"), trial("b")
    before.dataset_hash, after.dataset_hash = "clean-split", "distorted-split"
    comparison = compare_trials([before], [after])
    assert not comparison.matched and not comparison.regressions
    assert len(comparison.only_baseline) == len(comparison.only_candidate) == 1


def test_a_datasets_identity_survives_the_run_folder(tmp_path):
    """The driver scores trials on the dataset it saved in the run folder: a declared
    identity (a zoo entry's) must come back, or its trials would carry a samples hash."""
    from autotune.data import Dataset

    feeds = [{"x": np.arange(4, dtype=np.float32)}]
    named = Dataset(feeds, feeds, np.array([1]), "top1", identity="zoo digits, version 2")
    plain = Dataset(feeds, feeds, np.array([1]), "top1")
    for dataset in (named, plain):
        dataset.save(tmp_path / "data.npz")
        assert Dataset.load(tmp_path / "data.npz").digest() == dataset.digest()
    assert named.digest() != plain.digest()


def test_version_changes():
    assert version_changes({"openvino": "2025.4.0", "numpy": "2.2.6", "tvm": "1"},
                           {"openvino": "2026.4.1", "numpy": "2.2.6"}) == \
        {"openvino": ("2025.4.0", "2026.4.1"), "tvm": ("1", None)}


def test_history_marks_the_step_and_skips_gaps():
    series = [trial("r1", latencies_ms=samples(1)), trial("r2", latencies_ms=samples(2)),
              trial("r3", status="unavailable"),
              trial("r4", latencies_ms=samples(4, scale=1.2)),
              trial("r5", latencies_ms=samples(5, scale=1.2))]
    changes = history_changes(series)
    assert changes[0] is None and changes[2] is None
    assert [change.regressed for change in (changes[1], changes[3], changes[4])] == \
        [False, True, False]
    assert changes[3].baseline.run_id == "r2"  # the gap is skipped, not compared with


@pytest.mark.parametrize("count", [7, 8, 40])
def test_the_direct_bootstrap_of_the_median_matches_resampling(count):
    from autotune.regress import _bootstrap_medians

    values = np.sort(np.random.default_rng(count).lognormal(0.0, 0.3, count))
    direct = _bootstrap_medians(values, 100_000, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    resampled = np.median(values[rng.integers(0, count, (100_000, count))], axis=1)
    support = np.union1d(direct, resampled)
    mass = [np.searchsorted(np.sort(d), support, side="right") / d.size
            for d in (direct, resampled)]
    assert np.max(np.abs(mass[0] - mass[1])) < 0.01  # the same distribution (KS distance)


def passes_of(medians: list[float]) -> list[PassRecord]:
    return [PassRecord(median_ms=median) for median in medians]


def run_of(run_id: str, scale: float, pass_ratios: list[float], configs: int = 4) -> list:
    """A run of ``configs`` trials, each measured in passes whose medians are the trial's
    median times ``pass_ratios``, all scaled by ``scale``."""
    trials = []
    for index in range(configs):
        config = [FP32, INT8, QuantConfig.from_text("fp16"), QuantConfig.from_text("bf16")][index]
        base = samples(index + (100 if run_id == "b" else 0), scale=scale)
        median = float(np.median(base))
        trials.append(trial(run_id, config, latencies_ms=base,
                            passes=passes_of([median * r for r in pass_ratios])))
    return trials


def test_pass_noise_pools_the_spread_of_the_fastest_pass_medians():
    spread = [1.0, 1.1]
    noise = pass_noise(run_of("a", 1.0, spread, configs=4))["host-cpu"]
    assert noise.dof == 4
    assert noise.sigma == pytest.approx(np.log(1.1) / np.sqrt(2))
    # Three passes: the slowest is left out (a slow spell is not a fastest pass's noise).
    spell = pass_noise(run_of("a", 1.0, [1.0, 2.5, 1.1], configs=4))["host-cpu"]
    assert spell.sigma == pytest.approx(noise.sigma) and spell.dof == 4
    assert pass_noise(run_of("a", 1.0, spread, configs=3)) == {}  # 3 dof: not trusted
    assert pass_noise([trial("a")]) == {}  # one pass: nothing to pool


@pytest.mark.readme_claim("a change inside the run-to-run noise is not a verdict")
def test_a_shift_within_the_run_to_run_noise_is_not_a_regression():
    # Passes of one trial differ by up to 12%: an 8% shift between runs is what noise does.
    noisy = [1.0, 1.12, 0.95]
    baseline, candidate = run_of("a", 1.0, noisy), run_of("b", 1.08, noisy)
    alone = compare_pair(baseline[0], candidate[0])
    assert [f.kind for f in alone.findings] == ["slower"]  # the samples alone are fooled
    comparison = compare_trials(baseline, candidate)
    assert comparison.regressions == []
    test = comparison.matched[0].latency
    assert test.noise_floor > 0.08 and not test.significant


def test_a_ten_percent_slowdown_beyond_the_run_to_run_noise_is_found():
    quiet = [1.0, 1.01, 0.995]
    comparison = compare_trials(run_of("a", 1.0, quiet), run_of("b", 1.10, quiet))
    assert len(comparison.regressions) == 4
    assert all(pair.latency.noise_floor < 0.05 for pair in comparison.matched)


@pytest.mark.readme_claim("a run measured in one pass borrows the other run's noise")
def test_a_one_pass_run_borrows_the_other_runs_noise():
    baseline = run_of("a", 1.0, [1.0, 1.12, 0.95])
    one_pass = [trial("b", t.config, latencies_ms=samples(7, scale=1.08)) for t in baseline]
    comparison = compare_trials(baseline, one_pass)
    assert comparison.regressions == []
    assert all(pair.latency.noise_floor is not None for pair in comparison.matched)
    # Neither run knows its noise: the samples decide, as before passes existed.
    plain = compare_trials([trial("a")], [trial("b", latencies_ms=samples(7, scale=1.10))])
    assert plain.matched[0].latency.noise_floor is None and plain.regressions


def measured_in_passes(run_id: str, config, scales: list[float], seed: int) -> Trial:
    """A trial whose passes are real sample sets (stored back to back, with their counts)."""
    passes = [samples(seed + index, scale=scale) for index, scale in enumerate(scales)]
    return trial(run_id, config, latencies_ms=[v for p in passes for v in p],
                 passes=[PassRecord(median_ms=float(np.median(p)), samples=len(p))
                         for p in passes])


@pytest.mark.readme_claim("a trial's latency is the median of its fastest pass; compare judges by "
                          "it")
def test_a_trial_splits_back_into_its_passes_and_is_judged_by_the_fastest():
    measured = measured_in_passes("a", FP32, [1.0, 2.2, 1.01], seed=3)
    passes = measured.pass_samples_ms()
    assert [len(p) for p in passes] == [len(samples(3))] * 3
    assert passes[1] == samples(4, scale=2.2)
    assert fastest_pass_ms(measured) == min(passes, key=np.median)
    # Counts that do not add up (a store written by hand): every sample is one pass.
    odd = trial("a", passes=[PassRecord(median_ms=1.0, samples=3)])
    assert odd.pass_samples_ms() == [odd.latencies_ms]


def test_a_slow_spell_in_one_pass_is_not_a_regression_but_a_slower_runtime_is():
    configs = [FP32, INT8, QuantConfig.from_text("fp16"), QuantConfig.from_text("bf16")]
    baseline = [measured_in_passes("a", c, [1.0, 1.01, 0.99], seed=10 * i)
                for i, c in enumerate(configs)]
    # The machine ran 2.2x slower during one pass of each candidate trial (as this VM does).
    spells = [measured_in_passes("b", c, [1.0, 2.2, 1.005][::1 - 2 * (i % 2)], seed=10 * i + 5)
              for i, c in enumerate(configs)]
    assert compare_trials(baseline, spells).regressions == []
    slower = [measured_in_passes("b", c, [1.15, 2.5, 1.16], seed=10 * i + 5)
              for i, c in enumerate(configs)]
    found = compare_trials(baseline, slower)
    assert len(found.regressions) == 4
    assert all(pair.latency.noise_floor < 0.10 for pair in found.matched)


@pytest.mark.readme_claim("a run in which the machine toggled under some trials is suspect as a "
                          "whole")
def test_a_run_the_machine_shook_widens_every_trials_noise():
    configs = [FP32, INT8, QuantConfig.from_text("fp16"), QuantConfig.from_text("bf16"),
               QuantConfig.from_text("w:int8:sym:per_tensor a:int8:sym cal:minmax")]
    steady = [1.0, 1.01, 0.995]
    baseline = [measured_in_passes("a", c, steady, seed=10 * i) for i, c in enumerate(configs)]
    # One trial's passes disagree 2.2x even among the fastest two: the machine changed speed
    # during the candidate run, so its steady-looking trials are not trusted either.
    shapes = [steady] * 4 + [[2.2, 1.0, 2.3]]
    candidate = [measured_in_passes("b", c, [r * 1.15 for r in shape], seed=10 * i + 5)
                 for i, (c, shape) in enumerate(zip(configs, shapes, strict=True))]
    assert pass_noise(candidate)["host-cpu"].sigma > 0.2
    comparison = compare_trials(baseline, candidate)
    assert comparison.regressions == []
    assert all(pair.latency.noise_floor > 0.5 for pair in comparison.matched)
    # The same 15% slowdown in a run where the machine held still is found everywhere.
    calm = [measured_in_passes("b", c, [r * 1.15 for r in steady], seed=10 * i + 5)
            for i, c in enumerate(configs)]
    assert len(compare_trials(baseline, calm).regressions) == 5

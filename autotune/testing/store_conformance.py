"""A conformance suite every result store's tests subclass: SQLite and PostgreSQL prove the
same contract of ``autotune.store.Store``.

Subclass ``StoreConformance`` and override the ``store_url`` fixture: it returns the URL of
a fresh, empty store (a SQLite file in a temporary folder, a new database on a throwaway
PostgreSQL server).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import sqlalchemy as sa

from autotune.config import FP32, QuantConfig
from autotune.errors import InputError
from autotune.outcome import (
    CAUSE,
    ClassAccuracy,
    DeviceFacts,
    MachineState,
    Note,
    PassRecord,
    RooflinePlacement,
    Saturation,
    Sensitivity,
    ThroughputFacts,
    ThroughputPoint,
    TuningFacts,
)
from autotune.settings import RunSpec
from autotune.store import Convergence, Prediction, RooflinePeaks, Run, SearchSummary, Store
from autotune.trial import Trial

INT8 = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None, "minmax")
INT4 = QuantConfig.from_text("w:int4:sym:per_group:32 a:fp32")
MIXED = dataclasses.replace(INT8, overrides=(("conv1", "fp32"),))


def sample_run(run_id: str, created_at: str = "2026-01-01T00:00:00+00:00") -> Run:
    return Run(id=run_id, created_at=created_at, finished_at=None, status="running",
               model="tiny-cnn", model_path="/models/tiny.onnx", model_hash="abc123",
               space="default", metric="top1", synthetic_data=False, reference_accuracy=0.98,
               settings=RunSpec(budget=3, targets=("host-cpu", "arm-board"), seed=7,
                                configs=("fp16",), runtime=("openvino==2025.4.0",)),
               host={"cpu_model": "Xeon", "cores": 2, "flags": ["avx2", "avx512_vnni"]},
               versions={"openvino": "2026.4.1", "numpy": "2.3.0"})


def full_trial(run_id: str, config: QuantConfig = INT8, backend: str = "openvino",
               target: str = "host-cpu") -> Trial:
    """A trial with every field set to something other than its default."""
    return Trial(
        run_id=run_id, model="tiny-cnn", model_hash="abc123", config=config, backend=backend,
        target=target, status="ok", error="a warning kept with the result",
        versions={"openvino": "2026.4.1", "onnxruntime": "1.22.0"}, cpu_model="Xeon Gold",
        cores=4, emulated=True, compile_s=1.25, load_s=0.125, first_inference_ms=7.5,
        latencies_ms=[1.5, 1.625, 1.4375, 2.0], latency_median_ms=1.5625, latency_p90_ms=1.9,
        latency_p99_ms=1.99, latency_spread=0.0625,
        peak_memory_bytes=5 * 2**31,  # over 32 bits: the column must hold it
        memory_bytes=3 * 2**31, artifact_size_bytes=123_456, accuracy=0.97, accuracy_drop=0.01,
        top1_agreement=0.995, sqnr_db=31.5, cosine=0.9996,
        details={"op_precisions": [{"name": "conv1", "integer": True}],
                 "note": "µs → ms, ünïcode"},
        started_at="2026-01-01T00:00:01+00:00", finished_at="2026-01-01T00:00:09+00:00",
        quantize_s=0.5, calibration_samples=200, compile_memory_bytes=2**33,
        tuning=TuningFacts(64, 60, 12.5, 9),
        notes=(Note("float_fallback", "int8 requested but 1 of 2 ops ran in float (conv2)"),
               Note("integer_kernels", "all ops ran integer kernels", CAUSE)),
        device=DeviceFacts("autotune worker", "aarch64", "Cortex-A76", 4, True,
                           {"numpy": "2.2.0"}),
        passes=[PassRecord(1.5, 0.01, 4, machine=MachineState(1.25, 2, 0.34, 0.02, 0.48, 3.5,
                                                              2445.5),
                           contended=True, remeasured=2),
                PassRecord(status="timeout", error="no result")],
        spreads=[0.25, 0.05], noisy=True, passes_skipped="emulated: one pass",
        roofline=RooflinePlacement(10**12, 10**9, "int8", 0.5, 0.4, 0.5, "memory", "measured",
                                   "2026-01-01T00:00:00+00:00", {"int8": 1536.0}, 20.0, 0.3),
        sensitivity=Sensitivity("top1", {"conv1": 0.01, "fc": -0.002}),
        first_inference_warm=True, core_set=(2, 3), tuning_trials=64,
        artifact_sha256="9f" * 32,
        throughput=ThroughputFacts((
            ThroughputPoint(1, 1, 2100.5, 420, 0.2, "THROUGHPUT hint, 1 stream, 1 async "
                            "request", streams=1,
                            machine=MachineState(wall_s=0.2, cpus=1, other_share=0.01)),
            ThroughputPoint(8, 8, error="ValueError: the model cannot be reshaped to batch 8"),
        )),
        saturation=Saturation(rate=0.0012, tensors={"input": 0.0, "relu1": 0.0031},
                              samples=32),
        class_accuracy=ClassAccuracy({"0": 0.98, "1": 0.9}, "1", 0.05),
        price_per_hour=0.34, dataset_hash="0123456789abcdef")


def failed_trial(run_id: str, config: QuantConfig = FP32, status: str = "compile_error",
                 backend: str = "openvino") -> Trial:
    """A failed trial: every figure None, no samples."""
    return Trial(run_id=run_id, model="tiny-cnn", model_hash="abc123", config=config,
                 backend=backend, target="host-cpu", status=status,
                 error="RuntimeError: boom (at tvm.py:120)")


def sample_peaks(target: str = "host-cpu", measured_at: str = "2026-01-01T00:00:00+00:00",
                 cpu_model: str = "Xeon", cores: int = 2, fp32: float = 100.0) -> RooflinePeaks:
    return RooflinePeaks(target=target, measured_at=measured_at, hostname="bench-1",
                         cpu_model=cpu_model, cores=cores,
                         peak_gops={"fp32": fp32, "int8": 4 * fp32},
                         memory_bandwidth_gbs=21.5, versions={"numpy": "2.3.0"},
                         details={"repeats": 5})


class StoreConformance:
    """The contract of ``Store``: runs, trials (one per key), predictions, roofline peaks."""

    @pytest.fixture
    def store_url(self) -> str:
        """The URL of a fresh, empty store; subclasses override it."""
        raise NotImplementedError("override the `store_url` fixture")

    @pytest.fixture
    def store(self, store_url) -> Store:
        return Store(store_url)

    # Runs

    def test_a_run_round_trips(self, store):
        run = sample_run("r1")
        store.create_run(run)
        assert store.get_run("r1") == run
        other = dataclasses.replace(sample_run("r2"), synthetic_data=True,
                                    reference_accuracy=None, settings=RunSpec(), host={},
                                    versions={})
        store.create_run(other)
        assert store.get_run("r2") == other

    def test_a_runs_search_summary_round_trips(self, store):
        store.create_run(sample_run("r1"))
        assert store.get_run("r1").search == SearchSummary()  # nothing searched yet
        converged = Convergence(measured=5, candidates=2040, best_gain=0.0125, threshold=0.02,
                                space=4096)
        summary = SearchSummary(space_size=4096, measured=5, converged=converged)
        store.set_run_search("r1", summary)
        assert store.get_run("r1").search == summary
        assert store.get_run("r1").search.extent() == " (4,096 candidates, 5 measured)"
        store.create_run(dataclasses.replace(sample_run("r2"), search=summary))
        assert store.get_run("r2").search == summary  # a run made with its summary keeps it

    def test_a_run_id_is_unique(self, store):
        store.create_run(sample_run("r1"))
        with pytest.raises(Exception):  # noqa: B017 - each driver names its integrity error
            store.create_run(sample_run("r1"))
        assert [run.id for run in store.runs()] == ["r1"]

    def test_status_and_finish_time(self, store):
        store.create_run(sample_run("r1"))
        store.set_run_status("r1", "interrupted")
        run = store.get_run("r1")
        assert run.status == "interrupted" and run.finished_at is None
        store.set_run_status("r1", "done", finished=True)
        run = store.get_run("r1")
        assert run.status == "done" and run.finished_at >= run.created_at

    def test_latest_run_and_missing_runs(self, store):
        with pytest.raises(InputError, match="no runs"):
            store.get_run()
        store.create_run(sample_run("b", "2026-01-02T00:00:00+00:00"))
        store.create_run(sample_run("c", "2026-01-01T00:00:00+00:00"))
        assert store.get_run().id == "b"  # the newest, not the last inserted
        store.create_run(sample_run("a", "2026-01-02T00:00:00+00:00"))
        assert store.get_run().id == "b"  # created in the same second: the larger id
        runs = store.runs()  # oldest first (a and b were created in the same second)
        assert runs[0] == sample_run("c", "2026-01-01T00:00:00+00:00")
        assert sorted(run.id for run in runs[1:]) == ["a", "b"]
        with pytest.raises(InputError, match="no run 'zzz'"):
            store.get_run("zzz")

    def test_latest_and_previous_name_runs(self, store):
        store.create_run(sample_run("first", "2026-01-01T00:00:00+00:00"))
        assert store.get_run("latest").id == "first"
        with pytest.raises(InputError, match="no previous run"):
            store.get_run("previous")
        store.create_run(sample_run("second", "2026-01-02T00:00:00+00:00"))
        assert (store.get_run("latest").id, store.get_run("previous").id) == ("second", "first")

    def test_the_runs_of_a_campaign(self, store):
        assert store.latest_campaign() is None
        for run_id, day, campaign in (("a1", 1, "nightly-a"), ("plain", 2, None),
                                      ("b1", 3, "nightly-b"), ("b2", 4, "nightly-b"),
                                      ("late", 5, None)):
            store.create_run(dataclasses.replace(
                sample_run(run_id, f"2026-01-0{day}T00:00:00+00:00"), campaign=campaign))
        assert store.get_run("b2").campaign == "nightly-b"
        assert store.get_run("plain").campaign is None
        assert [run.id for run in store.runs("nightly-b")] == ["b1", "b2"]
        assert len(store.runs()) == 5 and store.runs("other") == []
        assert store.latest_campaign() == "nightly-b"  # the newest run of any campaign's

    def test_a_schema_3_store_gains_campaigns(self, store, store_url):
        import sqlalchemy as sa

        store.create_run(sample_run("old"))
        with store.engine.begin() as connection:
            connection.execute(sa.text("DROP INDEX ix_runs_campaign"))
            connection.execute(sa.text("ALTER TABLE runs DROP COLUMN campaign"))
            connection.execute(sa.text("UPDATE meta SET value = '3' "
                                       "WHERE key = 'schema_version'"))
        store.engine.dispose()
        reopened = Store(store_url)
        assert reopened.get_run("old") == sample_run("old")  # of no campaign
        reopened.create_run(dataclasses.replace(sample_run("new"), campaign="nightly-1"))
        assert [run.id for run in reopened.runs("nightly-1")] == ["new"]
        assert "ix_runs_campaign" in {index["name"] for index in
                                      sa.inspect(reopened.engine).get_indexes("runs")}

    def test_trial_counts_by_run_and_status(self, store):
        for run_id in ("r1", "r2"):
            store.create_run(sample_run(run_id))
        store.add_trial(full_trial("r1"))
        store.add_trial(failed_trial("r1"))
        store.add_trial(failed_trial("r2", status="timeout"))
        assert store.trial_counts() == {"r1": {"ok": 1, "compile_error": 1},
                                        "r2": {"timeout": 1}}

    # Trials

    def test_every_trial_field_round_trips(self, store):
        trial = full_trial("r1")
        defaults = Trial(run_id="", model="", model_hash="", config=FP32, backend="",
                         target="", status="unavailable")
        unset = [field.name for field in dataclasses.fields(Trial)
                 if getattr(trial, field.name) == getattr(defaults, field.name)]
        assert unset == [], f"the sample trial leaves {unset} at their defaults"
        store.create_run(sample_run("r1"))
        store.add_trial(trial)
        (loaded,) = store.trials("r1")
        assert loaded == trial
        assert isinstance(loaded.emulated, bool) and isinstance(loaded.cores, int)
        assert isinstance(loaded.peak_memory_bytes, int)

    def test_a_failed_trial_keeps_its_none_figures(self, store):
        store.create_run(sample_run("r1"))
        trial = failed_trial("r1", status="timeout")
        store.add_trial(trial)
        (loaded,) = store.trials("r1")
        assert loaded == trial and not loaded.ok
        assert loaded.latencies_ms == [] and loaded.details == {} and loaded.versions == {}
        figures = ("compile_s", "load_s", "first_inference_ms", "latency_median_ms",
                   "latency_p90_ms", "latency_p99_ms", "latency_spread", "peak_memory_bytes",
                   "memory_bytes", "artifact_size_bytes", "accuracy", "accuracy_drop",
                   "top1_agreement", "sqnr_db", "cosine")
        assert [name for name in figures if getattr(loaded, name) is not None] == []

    def test_configs_round_trip(self, store):
        store.create_run(sample_run("r1"))
        for config in (FP32, INT8, INT4, MIXED):
            store.add_trial(full_trial("r1", config))
        assert [trial.config for trial in store.trials("r1")] == [FP32, INT8, INT4, MIXED]
        assert len({trial.config.id for trial in store.trials("r1")}) == 4

    def test_identical_outputs_and_bad_text_are_stored(self, store):
        store.create_run(sample_run("r1"))
        trial = full_trial("r1")
        trial.sqnr_db = float("inf")  # outputs identical to fp32
        trial.error = "worker killed by SIGSEGV: \x00\x00garbage"  # a crashed worker's log
        store.add_trial(trial)
        (loaded,) = store.trials("r1")
        assert loaded.sqnr_db == 999.0  # a finite sentinel every driver can hold
        assert loaded.error == "worker killed by SIGSEGV: garbage"

    def test_trials_belong_to_their_run_in_insertion_order(self, store):
        store.create_run(sample_run("r1"))
        store.create_run(sample_run("r2"))
        store.add_trial(full_trial("r1", INT8))
        store.add_trial(failed_trial("r2"))
        store.add_trial(full_trial("r1", FP32))
        assert [t.config for t in store.trials("r1")] == [INT8, FP32]
        assert [t.status for t in store.trials("r2")] == ["compile_error"]
        assert store.trials("nowhere") == []

    def test_a_trial_needs_its_run(self, store):
        with pytest.raises(Exception):  # noqa: B017 - each driver names its integrity error
            store.add_trial(full_trial("no-such-run"))
        store.create_run(sample_run("r1"))
        assert store.trials("no-such-run") == [] and store.trials("r1") == []

    def test_one_trial_per_key(self, store):
        store.create_run(sample_run("r1"))
        store.add_trial(failed_trial("r1", FP32, "timeout"))
        store.add_trial(full_trial("r1", FP32))  # measured again: replaces the timeout
        store.add_trial(full_trial("r1", FP32, backend="tvm"))  # another key: another trial
        store.add_trial(full_trial("r1", FP32, target="arm-board"))
        store.add_trial(full_trial("r1", INT8))
        trials = store.trials("r1")
        assert len(trials) == 4 and all(trial.ok for trial in trials)
        assert store.finished_keys("r1") == {(FP32.id, "openvino", "host-cpu"),
                                             (FP32.id, "tvm", "host-cpu"),
                                             (FP32.id, "openvino", "arm-board"),
                                             (INT8.id, "openvino", "host-cpu")}
        assert store.finished_keys("nowhere") == set()

    def test_update_trial_in_place(self, store):
        store.create_run(sample_run("r1"))
        store.add_trial(full_trial("r1", FP32))
        store.add_trial(full_trial("r1", INT8))
        trial = store.trials("r1")[0]
        trial.latencies_ms = [*trial.latencies_ms, 1.25, 1.375]
        trial.latency_median_ms, trial.emulated = 1.5, False
        trial.passes.append(PassRecord(median_ms=1.3, spread=0.1, samples=2))
        store.update_trial(trial)
        assert store.trials("r1") == [trial, full_trial("r1", INT8)]  # same place, new figures
        with pytest.raises(KeyError):
            store.update_trial(full_trial("r1", MIXED))
        assert len(store.trials("r1")) == 2

    # Predictions

    def test_predictions_round_trip_apart_from_trials(self, store):
        store.create_run(sample_run("r1"))
        store.create_run(sample_run("r2"))
        store.add_predictions([])  # nothing to add is no error
        predicted = [
            Prediction(run_id="r1", model_hash="abc123", config=INT8, backend="openvino",
                       target="host-cpu", model_version="xgb-1", latency_ms=1.25,
                       memory_bytes=1048576.0, accuracy_drop=0.0125, stage="prior",
                       latency_low_ms=1.0, latency_high_ms=1.5, fidelity_error=0.002,
                       failure_probability=0.125, expected_hypervolume_improvement=0.25,
                       optimistic_gain=0.5, on_front=True, trained_on=4, models=2,
                       expected_budget=3, details={"shown": "as is"},
                       created_at="2026-01-01T00:00:00+00:00"),
            Prediction(run_id="r1", model_hash="abc123", config=MIXED, backend="tvm",
                       target="host-cpu", model_version="xgb-2", latency_ms=None,
                       memory_bytes=None, accuracy_drop=None, details={},
                       created_at="2026-01-01T00:00:05+00:00"),
        ]
        store.add_predictions(predicted)
        store.add_predictions([dataclasses.replace(predicted[0], run_id="r2", created_at="")])
        assert store.predictions("r1") == predicted
        (other,) = store.predictions("r2")
        assert other.created_at  # stamped when stored
        assert store.trials("r1") == [] and store.predictions("nowhere") == []

    def test_a_schema_5_store_moves_prediction_facts_from_details_into_fields(
            self, store_url):
        store = Store(store_url)
        store.create_run(sample_run("r1"))
        # What schema 5 wrote: no columns for these, the facts in the details JSON.
        schema_5_details = [
            {"predicted": True, "stage": "prior", "latency_low_ms": 1.0, "latency_high_ms": 1.5,
             "fidelity_error": 0.002, "failure_probability": 0.125, "optimistic_gain": 0.5,
             "on_predicted_front": True, "trained_on": 12, "models": 2, "expected_budget": 3,
             "candidates": 4, "extra": "kept"},
            {"predicted": True, "strategy": "guided", "fidelity_error": 0.003,
             "failure_probability": 0.25, "expected_hypervolume_improvement": 0.0625,
             "trained_on": 5}]
        with store.engine.begin() as connection:
            for column in ("stage", "latency_low_ms", "latency_high_ms", "fidelity_error",
                           "failure_probability", "expected_hypervolume_improvement",
                           "optimistic_gain", "on_front", "trained_on", "models",
                           "expected_budget"):
                connection.execute(sa.text(f"ALTER TABLE predictions DROP COLUMN {column}"))
            connection.execute(sa.text(
                "INSERT INTO predictions (created_at, run_id, model_hash, config_id, "
                "config_json, backend, target, model_version, latency_ms, memory_bytes, "
                "accuracy_drop, details_json) VALUES ('2026-01-01T00:00:00+00:00', 'r1', "
                "'abc123', :id, :config, 'openvino', 'host-cpu', 'xgb-1', 1.25, 1048576.0, "
                "0.0125, :details)"),
                [{"id": INT8.id, "config": json.dumps(INT8.to_dict()),
                  "details": json.dumps(details)} for details in schema_5_details])
            connection.execute(sa.text("UPDATE meta SET value = '5' "
                                       "WHERE key = 'schema_version'"))
        prior, proposed = Store(store_url).predictions("r1")
        common = dict(run_id="r1", model_hash="abc123", config=INT8, backend="openvino",
                      target="host-cpu", model_version="xgb-1", latency_ms=1.25,
                      memory_bytes=1048576.0, accuracy_drop=0.0125,
                      created_at="2026-01-01T00:00:00+00:00")
        assert prior == Prediction(**common, stage="prior", latency_low_ms=1.0,
                                   latency_high_ms=1.5, fidelity_error=0.002,
                                   failure_probability=0.125, optimistic_gain=0.5,
                                   on_front=True, trained_on=12, models=2, expected_budget=3,
                                   details={"extra": "kept"})
        assert proposed == Prediction(**common, stage="proposed", fidelity_error=0.003,
                                      failure_probability=0.25,
                                      expected_hypervolume_improvement=0.0625, trained_on=5)

    # Roofline peaks

    def test_latest_roofline(self, store):
        assert store.latest_roofline("host-cpu") is None
        old = sample_peaks(measured_at="2026-01-01T00:00:00+00:00", fp32=100.0)
        new = sample_peaks(measured_at="2026-02-01T00:00:00+00:00", fp32=120.0)
        elsewhere = sample_peaks(measured_at="2026-03-01T00:00:00+00:00", cpu_model="EPYC",
                                 cores=8, fp32=300.0)
        for peaks in (new, old, elsewhere, sample_peaks("arm-board", fp32=5.0)):
            store.add_roofline(peaks)
        assert store.latest_roofline("host-cpu") == elsewhere
        assert store.latest_roofline("host-cpu", cpu_model="Xeon") == new
        assert store.latest_roofline("host-cpu", cpu_model="Xeon", cores=2) == new
        assert store.latest_roofline("host-cpu", cores=8) == elsewhere
        assert store.latest_roofline("host-cpu", cpu_model="Xeon", cores=8) is None
        assert store.latest_roofline("arm-board").peak_gops == {"fp32": 5.0, "int8": 20.0}
        assert store.latest_roofline("nowhere") is None

    def test_level_bandwidths_round_trip_and_emulated_peaks_are_never_the_roof(self, store):
        real = sample_peaks(measured_at="2026-01-01T00:00:00+00:00", fp32=100.0)
        real.level_bandwidth_gbs = {"L1": 250.0, "L2": 160.0, "DRAM": 8.0}
        emulated = sample_peaks(measured_at="2026-02-01T00:00:00+00:00", fp32=1.0)
        emulated.emulator = "qemu-aarch64"
        store.add_roofline(real)
        store.add_roofline(emulated)
        assert store.latest_roofline("host-cpu") == real  # the newer one is emulated
        assert store.latest_roofline("host-cpu", cpu_model="Xeon", cores=2) == real
        assert store.latest_roofline("host-cpu", emulated=True) == emulated
        assert store.latest_roofline("host-cpu").details == real.details

    # The store itself

    def test_reopening_keeps_everything(self, store, store_url):
        store.create_run(sample_run("r1"))
        store.add_trial(full_trial("r1"))
        store.add_roofline(sample_peaks())
        again = Store(store_url)  # opening an existing store migrates nothing, loses nothing
        assert again.get_run("r1") == store.get_run("r1")
        assert again.trials("r1") == [full_trial("r1")]
        assert again.latest_roofline("host-cpu") == sample_peaks()

"""The suite's own hot paths under pytest-benchmark, so a 1,000-config space is never slowed
by the suite itself: store ingest, Pareto fronts and hypervolume, cost-model prediction, the
report.

Every figure fed in is SYNTHETIC (seeded random numbers in real ``Trial`` objects, stored
through the real ``Store``: ``autotune.testing.synthetic``): these time the suite's code,
never a compiler or a model. Kept out of the default test run (``testpaths = ["tests"]``);
run and save a baseline with

    pytest benchmarks/hotpaths --benchmark-only \
        --benchmark-storage=file://benchmarks/results/hotpaths --benchmark-save=NAME

and compare a later run against it with ``--benchmark-compare``.
"""

from __future__ import annotations

import csv
import random

import pytest

from autotune.costmodel import Workload, XGBoostCostModel, reference_ms
from autotune.pareto import frontier, hypervolume_2d, pareto_front
from autotune.report import write_report
from autotune.store import Store
from autotune.testing.synthetic import synthetic_run, synthetic_run_record, synthetic_trials

INGEST_TRIALS = 10_000
FRONT_POINTS = 10_000
CANDIDATES = 5_000
REPORT_TRIALS = 1_000


@pytest.fixture(scope="module")
def ten_thousand_trials():
    return synthetic_trials("synthetic-ingest", INGEST_TRIALS)


def test_store_ingest_10000_trials(benchmark, tmp_path, ten_thousand_trials):
    """One commit per trial, as a run stores each trial the moment it finishes."""
    counter = iter(range(1_000))

    def fresh_store():
        store = Store(f"sqlite:///{tmp_path}/ingest-{next(counter)}.db")
        store.create_run(synthetic_run_record("synthetic-ingest", INGEST_TRIALS))
        return (store,), {}

    def ingest(store: Store) -> None:
        for trial in ten_thousand_trials:
            store.add_trial(trial)

    benchmark.pedantic(ingest, setup=fresh_store, rounds=2)


def test_pareto_front_of_10000_points(benchmark):
    rng = random.Random(0)
    points = [(rng.random(), rng.random(), rng.random()) for _ in range(FRONT_POINTS)]
    front = benchmark(pareto_front, points)
    assert 0 < len(front) < FRONT_POINTS


def test_frontier_of_10000_trials(benchmark, ten_thousand_trials):
    front = benchmark(frontier, ten_thousand_trials)
    assert front and all(trial.ok for trial in front)


def test_hypervolume_of_10000_points(benchmark):
    rng = random.Random(1)
    points = [(rng.random(), rng.random()) for _ in range(FRONT_POINTS)]
    assert benchmark(hypervolume_2d, points, (1.1, 1.1)) > 0


@pytest.fixture(scope="module")
def fitted_cost_model(tmp_path_factory):
    """An XGBoost cost model fitted on SYNTHETIC trials of real graphs (tiny CNNs), and 5,000
    candidate workloads: every ``full``-space config on both backends, over those graphs."""
    from autotune.graph import analyze
    from autotune.roofline import Peaks
    from autotune.space import load_space
    from autotune.target import load_target
    from autotune.testing.models import tiny_cnn
    from autotune.trial import Trial

    folder = tmp_path_factory.mktemp("costmodel")
    profiles = [analyze(tiny_cnn(folder / f"tiny{c}x{s}.onnx", channels=c, size=s))
                for c in (4, 8, 16, 32) for s in (16, 32)]
    target = load_target("host-cpu")
    peaks = Peaks({"fp32": 100.0, "bf16": 200.0, "int8": 400.0}, 10.0, "synthetic")
    configs = load_space("full").configs
    distinct = [Workload(p, c, b, target, peaks) for p in profiles for c in configs
                for b in ("openvino", "tvm")]
    rng = random.Random(2)
    training = distinct[::4]
    trials = [Trial(run_id="synthetic", model="synthetic", model_hash=str(i), config=w.config,
                    backend=w.backend, target="host-cpu", status="ok",
                    latency_median_ms=reference_ms(w) * rng.uniform(1.5, 6.0),
                    memory_bytes=rng.randint(1, 40) << 20, accuracy_drop=rng.uniform(0, 0.03),
                    cosine=1.0 - rng.uniform(1e-6, 1e-3))
              for i, w in enumerate(training)]
    model = XGBoostCostModel()
    model.fit(training, trials)
    candidates = [distinct[i % len(distinct)] for i in range(CANDIDATES)]
    return model, candidates


def test_cost_model_predicts_5000_candidates(benchmark, fitted_cost_model):
    model, candidates = fitted_cost_model
    predicted = benchmark(model.predict, candidates)
    assert predicted.latency_ms.shape == (CANDIDATES,)


@pytest.fixture(scope="module")
def report_store(tmp_path_factory):
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('report')}/report.db")
    return store, synthetic_run(store, REPORT_TRIALS)


def test_report_of_1000_trials(benchmark, report_store, tmp_path):
    """Every rendering: facts, CSV, Markdown, PNG plot and the HTML page."""
    store, run_id = report_store
    out = benchmark.pedantic(write_report, args=(store, run_id, tmp_path), rounds=3)
    with open(out / "trials.csv", newline="") as file:
        assert sum(1 for _ in csv.DictReader(file)) == REPORT_TRIALS

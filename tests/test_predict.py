"""Transfer from the store, the predicted front before measuring (``--predict-only`` and a
guided run's prior), and guided search's convergence stop."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from test_guided import _drive, _small_model, world  # noqa: F401 - a fixture

from autotune.config import FP32, QuantConfig
from autotune.costmodel import Workload, reference_ms
from autotune.quantize import file_hash
from autotune.roofline import Peaks
from autotune.search import Candidate, GuidedSearch, StrategyContext
from autotune.settings import RunSpec
from autotune.store import Run, Store, now
from autotune.target import load_target
from autotune.trial import Trial

pytest.importorskip("xgboost")

PEAKS = Peaks({"fp32": 100.0, "bf16": 200.0, "int8": 400.0}, 10.0, "target")
CONFIGS = [QuantConfig(), QuantConfig("bf16", "bf16")] + [
    QuantConfig.from_text(f"w:int8:sym:{granularity} a:uint8:{scheme} cal:{calibration}")
    for granularity in ("per_channel", "per_tensor") for scheme in ("sym", "asym")
    for calibration in ("minmax", "percentile")]


def _truth(workload: Workload, run_id: str, model_hash: str) -> Trial:
    """A lawful made-up world, the same for every model: per-tensor and asymmetric
    activations cost time relative to the roofline bound, percentile loses fidelity."""
    config = workload.config
    factor = 3.0 * (1.4 if config.granularity == "per_tensor" else 1.0) * (
        1.8 if config.activation_scheme == "asymmetric" else 1.0)
    error = {"fp32": 1e-12, "bf16": 1e-5}.get(config.weight_dtype, 1e-4) * (
        3.0 if config.calibration == "percentile" else 1.0)
    return Trial(run_id=run_id, model=run_id, model_hash=model_hash, config=config,
                 backend="openvino", target="host-cpu", status="ok",
                 latency_median_ms=reference_ms(workload) * factor, memory_bytes=1 << 20,
                 accuracy_drop=error, cosine=1.0 - error)


def _add_run(store: Store, run_id: str, path, model_hash: str) -> Run:
    run = Run(id=run_id, created_at=now(), finished_at=None, status="finished", model=run_id,
              model_path=str(path), model_hash=model_hash, space="s", metric="fidelity",
              synthetic_data=True, reference_accuracy=None, settings=RunSpec(), host={},
              versions={})
    store.create_run(run)
    return run


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """A store with every config of two models measured (one model file deleted after its
    profile was stored, the other still on disk and profiled on first use), a run whose
    model is gone unprofiled, and a third model never measured."""
    from autotune.graph import analyze
    from autotune.testing.models import tiny_cnn
    from autotune.transfer import remember_profile

    folder = tmp_path_factory.mktemp("transfer")
    store = Store(f"sqlite:///{folder}/store.db")
    target = load_target("host-cpu")
    paths = {name: tiny_cnn(folder / f"{name}.onnx", channels=channels, size=size)
             for name, channels, size in (("small", 4, 16), ("large", 32, 32),
                                          ("unseen", 16, 16))}
    for name in ("small", "large"):
        model_hash = file_hash(paths[name])
        _add_run(store, name, paths[name], model_hash)
        if name == "small":
            remember_profile(store, model_hash, name, paths[name])
        profile = analyze(paths[name])
        for config in CONFIGS:
            store.add_trial(_truth(Workload(profile, config, "openvino", target, PEAKS),
                                   name, model_hash))
    gone = paths["small"].with_name("gone.onnx")
    shutil.copy(paths["small"], gone)
    _add_run(store, "gone", gone, "0123456789abcdef")
    store.add_trial(Trial(run_id="gone", model="gone", model_hash="0123456789abcdef",
                          config=CONFIGS[0], backend="openvino", target="host-cpu",
                          status="ok", latency_median_ms=1.0))
    gone.unlink()
    moved = folder / "moved"
    moved.mkdir()
    shutil.move(paths["small"], moved / "small.onnx")  # its profile is in the store
    return store, paths["unseen"], target


@pytest.mark.readme_claim("the cost model learns from every run in the store; a model's "
                          "profile is kept, so training never needs the ONNX file")
def test_fit_on_two_stored_models_predicts_a_third(two_models):
    from scipy.stats import spearmanr

    from autotune.costmodel import XGBoostCostModel
    from autotune.graph import analyze
    from autotune.transfer import training_set

    store, unseen, target = two_models
    rows = training_set(store, [target], peaks={target.name: PEAKS})
    assert len(rows.trials) == 2 * len(CONFIGS) and rows.models == 2
    assert rows.skipped == {"model profile unknown (file gone before it was stored)": 1}
    assert set(store.profiles()) == {t.model_hash for t in rows.trials}  # both kept now
    model = XGBoostCostModel(members=3, rounds=60)
    model.fit(rows.workloads, rows.trials)
    profile = analyze(unseen)
    workloads = [Workload(profile, config, "openvino", target, PEAKS) for config in CONFIGS]
    truth = np.array([_truth(w, "unseen", "u").latency_ms for w in workloads])
    predicted = model.predict(workloads).latency_ms
    assert spearmanr(predicted, truth).statistic > 0.9
    assert np.mean(np.abs(predicted - truth) / truth) < 0.25


@pytest.mark.readme_claim("a guided run's report opens with Predicted before measuring: the "
                          "predicted front, latency MAPE, front hits; drawn in the HTML frontier")
def test_guided_run_keeps_its_prior_and_its_report_checks_it(two_models, tmp_path):
    from autotune.report import gather, render_markdown
    from autotune.report.charts import frontier_svg

    store, unseen, target = two_models
    run = _add_run(store, f"unseen-{tmp_path.name}", unseen, file_hash(unseen))
    candidates = [Candidate(config, "openvino", target) for config in CONFIGS]
    strategy = GuidedSearch(0, StrategyContext(unseen, store, {target.name: PEAKS},
                                               run_id=run.id), seeds=2,
                            model_factory=_small_model)
    assert len(strategy.propose(candidates, [], 10)) == 2  # the seeds, as before
    prior = store.predictions(run.id)
    assert len(prior) == len(CONFIGS) and {p.stage for p in prior} == {"prior"}
    assert all(p.latency_low_ms <= p.latency_ms <= p.latency_high_ms for p in prior)
    assert 2 <= prior[0].expected_budget <= len(CONFIGS)
    strategy.propose(candidates, [], 10)
    assert len(store.predictions(run.id)) == len(CONFIGS)  # the prior is made once
    from autotune.graph import analyze

    profile = analyze(unseen)
    trials = [_truth(Workload(profile, c, "openvino", target, PEAKS), run.id, run.model_hash)
              for c in CONFIGS]
    facts = gather(store.get_run(run.id), trials, prior=prior)
    check = facts.prediction
    assert check.stage == "prior" and check.measured == len(CONFIGS)
    assert check.latency_mape < 0.25 and check.trained_on == 2 * len(CONFIGS)
    assert check.front and check.front_measured == len(check.front)
    # The report's front is the one the prediction found, not one of its own.
    assert {p.config for p in check.front} == {p.config for p in prior if p.on_front}
    assert 0 < check.front_hits <= check.front_measured
    summary = render_markdown(facts)
    assert summary.index("## Predicted before measuring") < summary.index("## Target")
    assert f"latency MAPE {check.latency_mape:.1%}" in summary
    assert 'class="predicted-front"' in frontier_svg(facts, facts.targets[0])


@pytest.mark.readme_claim("--until-converged: guided search stops when every remaining "
                          "candidate's EHVI is below the threshold, and says so")
def test_until_converged_stops_early_and_says_why(world, tmp_path):  # noqa: F811
    from autotune.driver import _note_stop
    from autotune.progress import TrialProgress

    candidates, context = world
    context = StrategyContext(context.model_path, peaks=context.peaks, converge_below=0.05)
    strategy = GuidedSearch(0, context, seeds=3, model_factory=_small_model)
    history = _drive(strategy, candidates, budget=len(candidates))
    assert strategy.converged is not None and len(history) < len(candidates)
    assert strategy.converged.best_gain < 0.05
    assert strategy.propose(candidates, history, 5) == []  # stopped stays stopped
    text = strategy.converged.text()
    assert text.startswith(f"converged after {len(history)} of {len(candidates)} candidates: "
                           "best remaining EHVI ") and "< threshold 5.000%" in text
    store = Store(f"sqlite:///{tmp_path}/c.db")
    _add_run(store, "run", context.model_path, "h")
    stream = io.StringIO()
    _note_stop(store, "run", strategy, TrialProgress(1, True, stream=stream))
    assert stream.getvalue().strip() == text
    assert store.get_run("run").search.converged == strategy.converged
    unbounded = GuidedSearch(0, StrategyContext(context.model_path, peaks=context.peaks),
                             seeds=3, model_factory=_small_model)
    assert len(_drive(unbounded, candidates, budget=len(history) + 1)) == len(history) + 1


@pytest.mark.openvino
@pytest.mark.readme_claim("autotune run --predict-only: the predicted front with intervals "
                          "and the expected budget, stored as predictions")
def test_predict_only_on_a_measured_store(tiny_run, tiny_model, tmp_path):
    from autotune.cli import main

    for path in (tiny_run / "results").glob("autotune.db*"):  # the fixture's store stays
        shutil.copy(path, tmp_path / path.name)
    url = f"sqlite:///{tmp_path}/autotune.db"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", "--predict-only", "--model", str(tiny_model), "--space", "smoke",
                     "--backend", "openvino", "--store", url, "--json"])
    assert code == 0
    found = json.loads(out.getvalue())
    assert found["trained_on"] == 2 and found["models"] == 1 and found["candidates"] == 2
    assert found["front"] and 1 <= found["expected_budget"] <= 2
    for point in found["front"]:
        low, high = point["latency_interval_ms"]
        assert 0 < low <= point["latency_ms"] <= high
    store = Store(url)
    stored = store.model_predictions(found["model_hash"])
    assert len(stored) == 2 and {p.stage for p in stored} == {"predict-only"}
    assert len(store.runs()) == 1  # nothing measured, no run made


@pytest.mark.openvino
@pytest.mark.readme_claim("--predict-only on a space larger than 2,000 candidates predicts the "
                          "pool guided search ranks first, and says so")
def test_predict_only_predicts_the_pool_of_a_large_space(tiny_run, tiny_model, tmp_path,
                                                         monkeypatch, capsys):
    """A space larger than the pool (per-layer spaces reach billions) is predicted through the
    pool guided search ranks first, never listed whole."""
    import autotune.search
    from autotune.cli import main

    for path in (tiny_run / "results").glob("autotune.db*"):
        shutil.copy(path, tmp_path / path.name)
    url = f"sqlite:///{tmp_path}/autotune.db"
    monkeypatch.setattr(autotune.search, "POOL_SIZE", 4)
    code = main(["run", "--predict-only", "--model", str(tiny_model), "--space", "default",
                 "--backend", "openvino", "--store", url])
    said = capsys.readouterr()
    assert code == 0
    stored = Store(url).model_predictions(file_hash(tiny_model))
    assert len(stored) == 5 and stored[0].config == FP32  # the baseline and a draw of 4
    assert "5 of the space's 18 candidates predicted" in said.out + said.err


@pytest.mark.readme_claim("run --predict-only: a store with no successful trial is an input "
                          "error (exit 2)")
def test_predict_only_needs_something_to_learn_from(tmp_path, capsys):
    from autotune.cli import main

    code = main(["run", "--predict-only", "--space", "smoke", "--backend", "openvino",
                 "--store", f"sqlite:///{tmp_path}/empty.db"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no successful trial" in err


def test_the_measured_front_a_prediction_is_checked_against_is_per_backend_and_target():
    from autotune.report.facts import _measured_fronts
    from autotune.testing.strategy_conformance import (
        synthetic_trial,
        world_candidates,
        world_target,
    )

    # Every tvm trial is 1.5x its openvino twin: a front across backends would hold no tvm
    # config, while the predicted front it is compared with has one per backend.
    trials = [synthetic_trial(c) for c in world_candidates(world_target())]
    on_front = _measured_fronts(trials)
    assert {backend for _, backend, _ in on_front} == {"openvino", "tvm"}
    fastest = {b: min((t for t in trials if t.ok and t.backend == b), key=lambda t: t.latency_ms)
               for b in ("openvino", "tvm")}
    assert {t.key for t in fastest.values()} <= on_front


def test_the_intro_says_which_fronts_are_drawn_over_configs_predicted_to_fail():
    from autotune.report.facts import PredictedPoint, PredictionCheck
    from autotune.report.text import prediction_intro

    def point(target, failure):
        return PredictedPoint(FP32, "openvino", target, 1.0, 0.0, None, "v", 0.9, 1.1, failure)

    def intro(*front):
        return prediction_intro(PredictionCheck("prior", "v", 10, 1, 4, 2, front, 0, None,
                                                0, 0, 0))

    assert "predicted more likely to fail" not in intro(point("host-cpu", 0.1))
    said = intro(point("host-cpu", 0.1), point("arm", 0.8))
    assert "(on arm (openvino) every config is predicted more likely to fail, and the front " \
           "is drawn over all of them)" in said and "host-cpu" not in said

"""A model's frontier predicted before anything is measured, and the budget to find it.

``autotune run --predict-only`` and the start of every guided run train the cost model on
the store (``autotune.transfer``), predict every candidate of the space and keep the
predictions (``Prediction`` rows, ``stage`` "predict-only" or "prior"), so a report can
later say how far the prediction was from what was measured. The predicted front is found
once, here (``Prediction.on_front``), and read by the command and the report alike
(``predicted_front``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autotune.config import FP32
from autotune.pareto import error_objective, hypervolume_2d, pareto_front, reference_point
from autotune.settings import DEFAULT_CONVERGENCE
from autotune.store import Prediction, now

# A config predicted to fail at least this likely is left out of its group's predicted
# front (unless every config of the group is; the report then says so).
LIKELY_TO_FAIL = 0.5


@dataclass(frozen=True)
class PredictedCandidate:
    """What the cost model expects of one candidate; the latency interval is the range of
    the ensemble members' predictions."""

    candidate: object  # a ``search.Candidate`` (this module stays below ``search``)
    latency_ms: float
    latency_low_ms: float
    latency_high_ms: float
    memory_bytes: float
    accuracy_drop: float
    fidelity_error: float
    failure_probability: float
    optimistic_gain: float  # optimistic hypervolume improvement, a fraction of the front's
    on_front: bool


@dataclass(frozen=True)
class SpacePrediction:
    rows: tuple[PredictedCandidate, ...]
    model_version: str
    trained_on: int  # trials
    models: int  # distinct models among them
    quality: str
    threshold: float
    expected_budget: int

    def predictions(self, run_id: str | None, model_hash: str, stage: str) -> list[Prediction]:
        """One row per candidate, all with the same time (a report finds the batch by it)."""
        made = now()
        return [Prediction(
            run_id=run_id, model_hash=model_hash, config=r.candidate.config,
            backend=r.candidate.backend, target=r.candidate.target.name,
            model_version=self.model_version, latency_ms=r.latency_ms,
            memory_bytes=r.memory_bytes, accuracy_drop=r.accuracy_drop, stage=stage,
            latency_low_ms=r.latency_low_ms, latency_high_ms=r.latency_high_ms,
            fidelity_error=r.fidelity_error, failure_probability=r.failure_probability,
            optimistic_gain=r.optimistic_gain, on_front=r.on_front, trained_on=self.trained_on,
            models=self.models, expected_budget=self.expected_budget, created_at=made)
            for r in self.rows]


def predicted_front(predictions: Sequence[Prediction]) -> list[Prediction]:
    """The predicted front of a batch of ``predict_space`` predictions, by target, backend
    and latency: what ``--predict-only`` prints and a report checks against measurements."""
    return sorted((p for p in predictions if p.on_front),
                  key=lambda p: (p.target, p.backend, p.latency_ms))


def candidate_workloads(profile, candidates: Sequence, store=None,
                        peaks: dict | None = None) -> list:
    """The cost model's workloads of ``candidates`` of one model (its graph ``profile``);
    ``peaks`` by target name override the measured (``store``) or the TOML's roofline."""
    from autotune.costmodel import Workload
    from autotune.roofline import peaks_for

    found = dict(peaks or {})
    for candidate in candidates:
        if candidate.target.name not in found:
            found[candidate.target.name] = peaks_for(candidate.target, store)
    return [Workload(profile, c.config, c.backend, c.target, found[c.target.name])
            for c in candidates]


def predict_space(model, workloads: Sequence, candidates: Sequence, first: Sequence = (),
                  quality: str = "fidelity", threshold: float = DEFAULT_CONVERGENCE,
                  trained_on: int = 0, models: int = 0) -> SpacePrediction:
    """Predict every candidate (``search.Candidate``; ``workloads`` aligned with them) with a
    fitted ``model``.

    The predicted front is, per backend and target, the Pareto front of the predicted
    (latency, error) of candidates more likely to work than to fail. The expected budget is
    a simple count: the candidates guided search measures ``first`` whatever the prediction
    (its seeds) and the fp32 baselines, plus every candidate whose optimistic improvement
    (its best member's latency and error together) of the predicted front's hypervolume is
    above ``threshold`` (a fraction of that hypervolume), i.e. the candidates that
    ``--until-converged`` could not rule out before measuring.
    """
    predicted = model.predict(workloads)
    errors = error_objective(predicted.quality_samples(quality), quality)
    mean_error = errors.mean(axis=0)
    works = predicted.failure_probability < LIKELY_TO_FAIL
    groups: dict[tuple[str, str], list[int]] = {}
    for index, candidate in enumerate(candidates):
        groups.setdefault((candidate.backend, candidate.target.name), []).append(index)
    on_front = np.zeros(len(candidates), dtype=bool)
    gains = np.zeros(len(candidates))
    for members in groups.values():
        usable = [i for i in members if works[i]] or members
        points = [(float(predicted.latency_ms[i]), float(mean_error[i])) for i in usable]
        front_indices = pareto_front(points)
        front = [points[k] for k in front_indices]
        for k in front_indices:
            on_front[usable[k]] = True
        reference = reference_point(points)
        volume = hypervolume_2d(front, reference)
        for i in members:
            optimistic = (float(predicted.latency_samples[:, i].min()), float(errors[:, i].min()))
            gain = hypervolume_2d([*front, optimistic], reference) - volume
            gains[i] = gain / volume if volume > 0 else float(gain > 0)
    needed = {candidates[i].key for i in range(len(candidates)) if gains[i] > threshold}
    needed |= {c.key for c in first}
    needed |= {c.key for c in candidates if c.config == FP32}
    rows = tuple(PredictedCandidate(
        c, float(predicted.latency_ms[i]), float(predicted.latency_samples[:, i].min()),
        float(predicted.latency_samples[:, i].max()), float(predicted.memory_bytes[i]),
        float(predicted.accuracy_drop[i]), float(predicted.fidelity_error[i]),
        float(predicted.failure_probability[i]), float(gains[i]), bool(on_front[i]))
        for i, c in enumerate(candidates))
    return SpacePrediction(rows, model.version, trained_on, models, quality, threshold,
                           len(needed))

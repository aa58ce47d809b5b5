"""Pareto fronts and deployment picks: pure functions over plain numbers and trials."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autotune.trial import Trial

OBJECTIVES = {
    "latency": ("latency_median_ms", "ms"),
    "memory": ("memory_bytes", "bytes"),
    "size": ("artifact_size_bytes", "bytes"),
}


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and better somewhere (minimizing)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True))


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (all objectives minimized), in input order."""
    return [index for index, point in enumerate(points)
            if not any(dominates(other, point) for other in points)]


def trial_objectives(trial: Trial) -> tuple[float, float, float]:
    """(latency, accuracy drop, memory): the axes of the frontier, all to be minimized."""
    return (trial.latency_median_ms, max(trial.accuracy_drop, 0.0), float(trial.memory_bytes))


def frontier(trials: Sequence[Trial]) -> list[Trial]:
    """The Pareto-optimal successful trials among ``trials`` (callers group by target)."""
    ok = [trial for trial in trials if trial.ok and trial.latency_median_ms is not None
          and trial.accuracy_drop is not None]
    return [ok[index] for index in pareto_front([trial_objectives(t) for t in ok])]


@dataclass(frozen=True)
class Pick:
    """The answer of ``pick``: the chosen trial, or the nearest misses when none qualifies."""

    chosen: Trial | None
    nearest: list[tuple[Trial, float]]  # (trial, how far over the accuracy-drop limit)


def pick(trials: Sequence[Trial], max_accuracy_drop: float, objective: str = "latency",
         max_memory_bytes: int | None = None) -> Pick:
    """The best successful trial under the constraints, minimizing ``objective``.

    ``max_accuracy_drop`` is a fraction (0.01 = one percentage point).
    """
    field, _ = OBJECTIVES[objective]
    ok = [trial for trial in trials if trial.ok and getattr(trial, field) is not None
          and trial.accuracy_drop is not None]
    fits_memory = [trial for trial in ok if max_memory_bytes is None
                   or (trial.memory_bytes or 0) <= max_memory_bytes]
    qualifying = [trial for trial in fits_memory if trial.accuracy_drop <= max_accuracy_drop]
    if qualifying:
        best = min(qualifying, key=lambda trial: (getattr(trial, field), trial.accuracy_drop))
        return Pick(best, [])
    misses = sorted(((trial, trial.accuracy_drop - max_accuracy_drop) for trial in ok),
                    key=lambda pair: (pair[1], getattr(pair[0], field)))
    return Pick(None, misses[:3])

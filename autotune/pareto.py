"""Pareto fronts and deployment picks: pure functions over plain numbers and trials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autotune.quantize import is_dynamic, is_weight_only
from autotune.trial import Trial

OBJECTIVES = {
    "latency": ("latency_ms", "ms"),  # Trial.latency_ms: the median of the fastest pass
    "memory": ("memory_bytes", "bytes"),
    "size": ("artifact_size_bytes", "bytes"),
    # Trial.throughput_ips: the throughput mode's best batch size (--batch), maximized.
    "throughput": ("throughput_ips", "inferences/s"),
}
MAXIMIZED = frozenset({"throughput"})


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and better somewhere (minimizing)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True))


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (all objectives minimized), in input order.

    A point's dominators sort before it (lexicographically), and whoever dominates a
    dominated point dominates it too: so each point, in sorted order, is checked against
    the front found so far only (about n x front size comparisons, not n squared).
    """
    order = sorted(range(len(points)), key=lambda index: tuple(points[index]))
    front: list[int] = []
    for index in order:
        if not any(dominates(points[kept], points[index]) for kept in front):
            front.append(index)
    return sorted(front)


def trial_objectives(trial: Trial) -> tuple[float, float, float]:
    """(latency, accuracy drop, memory): the axes of the frontier, all to be minimized."""
    return (trial.latency_ms, max(trial.accuracy_drop, 0.0), float(trial.memory_bytes or 0))


def frontier(trials: Sequence[Trial]) -> list[Trial]:
    """The Pareto-optimal successful trials among ``trials`` (callers group by target)."""
    ok = [trial for trial in trials if trial.ok and trial.latency_ms is not None
          and trial.accuracy_drop is not None]
    return [ok[index] for index in pareto_front([trial_objectives(t) for t in ok])]


def latency_accuracy_front(trials: Sequence[Trial]) -> list[Trial]:
    """The successful trials no other beats on both latency and accuracy drop, by accuracy
    drop then latency: the line a (latency, accuracy drop) plot draws.

    ``frontier`` also counts memory, so it holds trials this projection shows as dominated.
    """
    ok = [trial for trial in trials if trial.ok and trial.latency_ms is not None
          and trial.accuracy_drop is not None]
    front = [ok[index] for index in pareto_front([(t.latency_ms, max(t.accuracy_drop, 0.0))
                                                  for t in ok])]
    return sorted(front, key=lambda t: (t.accuracy_drop, t.latency_ms))


def throughput_front(trials: Sequence[Trial]) -> list[Trial]:
    """The successful trials no other beats on both throughput (``Trial.throughput_ips``,
    higher is better) and accuracy drop, by accuracy drop then throughput: the frontier a
    server that batches requests deploys from."""
    ok = [trial for trial in trials if trial.ok and trial.throughput_ips is not None
          and trial.accuracy_drop is not None]
    front = [ok[index] for index in pareto_front([(-t.throughput_ips, max(t.accuracy_drop, 0.0))
                                                  for t in ok])]
    return sorted(front, key=lambda t: (t.accuracy_drop, -t.throughput_ips))


@dataclass(frozen=True)
class Pick:
    """The answer of ``pick``: the chosen trial, or the nearest misses when none qualifies."""

    chosen: Trial | None
    nearest: list[tuple[Trial, float]]  # (trial, how far over the accuracy-drop limit)


def pick(trials: Sequence[Trial], max_accuracy_drop: float, objective: str = "latency",
         max_memory_bytes: int | None = None, max_saturation: float | None = None,
         max_class_drop: float | None = None) -> Pick:
    """The best successful trial under the constraints, minimizing ``objective``.

    ``max_accuracy_drop``, ``max_saturation`` (share of activations clipped) and
    ``max_class_drop`` (the worst class's drop) are fractions (0.01 = one percentage point).
    A trial without the figure a limit needs does not meet it, except a weight-only config
    under ``max_saturation``: its activations stay float, nothing is clipped.
    """
    field, _ = OBJECTIVES[objective]
    sign = -1.0 if objective in MAXIMIZED else 1.0

    def cost(trial: Trial) -> float:
        return sign * getattr(trial, field)

    ok = [trial for trial in trials if trial.ok and getattr(trial, field) is not None
          and trial.accuracy_drop is not None]
    fits_memory = [trial for trial in ok if (max_memory_bytes is None
                   or (trial.memory_bytes or 0) <= max_memory_bytes)
                   and _saturation_within(trial, max_saturation)
                   and _within(trial.worst_class_drop, max_class_drop)]
    qualifying = [trial for trial in fits_memory if trial.accuracy_drop <= max_accuracy_drop]
    if qualifying:
        best = min(qualifying, key=lambda trial: (cost(trial), trial.accuracy_drop))
        return Pick(best, [])
    misses = sorted(((trial, trial.accuracy_drop - max_accuracy_drop) for trial in ok),
                    key=lambda pair: (pair[1], cost(pair[0])))
    return Pick(None, misses[:3])



def _within(value: float | None, limit: float | None) -> bool:
    return limit is None or (value is not None and value <= limit)


def _saturation_within(trial: Trial, limit: float | None) -> bool:
    if limit is not None and trial.saturation_rate is None and (
            is_weight_only(trial.config) or is_dynamic(trial.config)):
        return True
    return _within(trial.saturation_rate, limit)


# Hypervolume of (latency, error) fronts: how much of the objective plane a set of configs
# dominates, the yardstick of a search that measures only part of a space.


def hypervolume_2d(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (both objectives minimized) and bounded by ``reference``.

    Points at or beyond the reference in either objective add nothing.
    """
    ref_x, ref_y = reference
    staircase: list[tuple[float, float]] = []
    for x, y in sorted((float(x), float(y)) for x, y in points):
        if x < ref_x and y < ref_y and (not staircase or y < staircase[-1][1]):
            staircase.append((x, y))
    if not staircase:
        return 0.0
    edges = [x for x, _ in staircase[1:]] + [ref_x]
    return sum((edge - x) * (ref_y - y) for (x, y), edge in zip(staircase, edges, strict=True))


def hypervolume_improvement(point: Sequence[float], points: Sequence[Sequence[float]],
                            reference: Sequence[float]) -> float:
    """How much area ``point`` would add to the front of ``points`` (0 when dominated)."""
    return (hypervolume_2d([*points, point], reference)
            - hypervolume_2d(points, reference))


def expected_hypervolume_improvement(samples: Sequence[Sequence[float]],
                                     points: Sequence[Sequence[float]],
                                     reference: Sequence[float]) -> float:
    """Mean improvement over equally likely outcomes of one candidate (e.g. the members of a
    cost-model ensemble): a Monte Carlo estimate of its expected hypervolume improvement."""
    if not samples:
        return 0.0
    base = hypervolume_2d(points, reference)
    return sum(hypervolume_2d([*points, sample], reference) - base
               for sample in samples) / len(samples)


# The error axis of a search front. Fidelity errors (1 - cosine vs fp32) span orders of
# magnitude (bf16 ~1e-5, int8 ~1e-4, a bad int8 config ~1e-3), and what matters is the
# ratio (as SQNR in dB measures it), so the front is drawn over log10(error): on a linear
# axis every config but the worst sits at "0" and the front degenerates to latency alone.
# Below the floor (1e-7, 70 dB) a config counts as identical to fp32.
FIDELITY_FLOOR = 1e-7


def fidelity_objective(error: float) -> float:
    """The front's error coordinate of a fidelity error (1 - cosine vs fp32)."""
    return math.log10(max(error, 0.0) + FIDELITY_FLOOR)


def error_objective(errors, quality: str):
    """The search front's error coordinate of an array of errors: fidelity errors on a log
    scale (``fidelity_objective``), accuracy drops as they are (at least 0)."""
    import numpy as np

    errors = np.asarray(errors, dtype=np.float64)
    if quality == "fidelity":
        return np.log10(np.maximum(errors, 0.0) + FIDELITY_FLOOR)
    return np.maximum(errors, 0.0)


def reference_point(points: Sequence[Sequence[float]]) -> tuple[float, float]:
    """A hypervolume reference just beyond the worst point: nadir + 10% of each range
    (of the value itself where all points agree), so every point adds some volume."""
    reference = []
    for axis in zip(*points, strict=True):
        worst, spread = max(axis), max(axis) - min(axis)
        reference.append(worst + 0.1 * (spread if spread > 0 else max(abs(worst), 1e-12)))
    return reference[0], reference[1]

"""Frontier drift: how a new run moved the configs a user would ship.

A regression table says which trial got slower; it does not say that the config the previous
run recommended is no longer worth shipping, or that one nobody looked at (dominated last
time) is now on the frontier or the best pick. Judged per target, over the two runs' trials,
with ``pareto.frontier`` and ``pareto.pick`` (latency objective): the same rules as the report's
frontier and recommendation and ``autotune pick``. A config is the same config on the same
backend in both runs. Pure: nothing here reads a store or prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autotune.pareto import dominates, frontier, pick, trial_objectives
from autotune.trial import Trial

# What happened to a config between the two runs.
DOMINATED = "dominated"  # the previous run's recommendation is dominated now
JOINED_FRONT = "joined_front"  # dominated in the previous run, on the frontier now
RECOMMENDED = "recommended"  # dominated in the previous run, the recommendation now
KINDS = (DOMINATED, JOINED_FRONT, RECOMMENDED)


@dataclass(frozen=True)
class DriftItem:
    """One config whose standing changed, with its trials of both runs."""

    kind: str  # one of KINDS
    before: Trial  # its trial in the previous run
    after: Trial  # its trial in the new run
    dominated_by: tuple[Trial, ...] = ()  # DOMINATED: the new run's trials that dominate it

    @property
    def name(self) -> str:
        return trial_name(self.after)

    @property
    def text(self) -> str:
        figures = f"{self.before.latency_ms:.4g} -> {self.after.latency_ms:.4g} ms"
        if self.kind == DOMINATED:
            by = ", ".join(trial_name(t) for t in self.dominated_by)
            return (f"{self.name}, recommended in the previous run, is dominated now by {by} "
                    f"({figures})")
        where = "the recommendation" if self.kind == RECOMMENDED else "on the frontier"
        return f"{self.name}, dominated in the previous run, is {where} now ({figures})"

    def to_json(self) -> dict:
        after = self.after
        return {"kind": self.kind, "config_id": after.config.id, "config": after.config.label,
                "backend": after.backend, "target": after.target,
                "latency_ms_before": self.before.latency_ms, "latency_ms_after": after.latency_ms,
                "dominated_by": [{"config_id": t.config.id, "config": t.config.label,
                                  "backend": t.backend} for t in self.dominated_by],
                "text": self.text}


def trial_name(trial: Trial) -> str:
    return f"{trial.config.label} on {trial.backend}/{trial.target}"


def frontier_drift(before: Sequence[Trial], after: Sequence[Trial],
                   max_accuracy_drop: float) -> list[DriftItem]:
    """What moved between the previous run's trials (``before``) and the new run's
    (``after``), target by target in the new run's order; empty when nothing did.

    Only configs measured successfully (with an accuracy drop) in both runs can drift: a
    config that failed is ``compare``'s finding, one measured once has no "before".
    """
    found: list[DriftItem] = []
    for target in dict.fromkeys(t.target for t in after):
        old = _placed([t for t in before if t.target == target])
        new = _placed([t for t in after if t.target == target])
        old_front = {_key(t) for t in frontier(old)}
        new_front = {_key(t) for t in frontier(new)}
        old_pick = pick(old, max_accuracy_drop).chosen
        new_pick = pick(new, max_accuracy_drop).chosen
        now = {_key(t): t for t in new}
        if old_pick is not None and _key(old_pick) in now and _key(old_pick) not in new_front:
            trial = now[_key(old_pick)]
            by = tuple(t for t in new if dominates(trial_objectives(t), trial_objectives(trial)))
            found.append(DriftItem(DOMINATED, old_pick, trial, by))
        for trial in old:
            key = _key(trial)
            if key in old_front or key not in now:
                continue
            if new_pick is not None and key == _key(new_pick):
                found.append(DriftItem(RECOMMENDED, trial, now[key]))
            elif key in new_front:
                found.append(DriftItem(JOINED_FRONT, trial, now[key]))
    return found


def _placed(trials: Sequence[Trial]) -> list[Trial]:
    """The trials a frontier can hold: successful, with a latency and an accuracy drop."""
    return [t for t in trials if t.ok and t.latency_ms is not None and t.accuracy_drop is not None]


def _key(trial: Trial) -> tuple[str, str]:
    return trial.config.id, trial.backend

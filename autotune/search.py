"""Search strategies: which (config, backend, target) candidates to measure next.

A strategy is an object with one method, ``propose(candidates, history, budget)``; the
driver calls it until it proposes nothing or the budget of measured trials is spent.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from autotune.config import QuantConfig
from autotune.errors import InputError
from autotune.target import Target
from autotune.trial import Trial


@dataclass(frozen=True)
class Candidate:
    config: QuantConfig
    backend: str
    target: Target

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.config.id, self.backend, self.target.name)


class SearchStrategy(Protocol):
    name: str

    def propose(self, candidates: Sequence[Candidate], history: Sequence[Trial],
                budget: int) -> list[Candidate]:
        """Up to ``budget`` candidates not yet in ``history``, in the order to measure them."""


def _remaining(candidates: Sequence[Candidate], history: Sequence[Trial]) -> list[Candidate]:
    done = {trial.key for trial in history}
    return [candidate for candidate in candidates if candidate.key not in done]


class ExhaustiveSearch:
    """Every candidate, in space order (fp32 first, the baseline of the others)."""

    name = "exhaustive"

    def propose(self, candidates, history, budget):
        return _remaining(candidates, history)[:budget]


class RandomSearch:
    """A seeded random sample; fp32 baselines always come first so slowdowns can be judged."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def propose(self, candidates, history, budget):
        remaining = _remaining(candidates, history)
        baselines = [c for c in remaining if c.config == QuantConfig()]
        others = [c for c in remaining if c.config != QuantConfig()]
        random.Random(self.seed).shuffle(others)
        return (baselines + others)[:budget]


_STRATEGIES: dict[str, type] = {}


def register_strategy(cls: type) -> type:
    if cls.name in _STRATEGIES:
        raise ValueError(f"search strategy {cls.name!r} is already registered")
    _STRATEGIES[cls.name] = cls
    return cls


register_strategy(ExhaustiveSearch)
register_strategy(RandomSearch)


def strategy_names() -> list[str]:
    return list(_STRATEGIES)


def make_strategy(name: str, seed: int = 0) -> SearchStrategy:
    if name not in _STRATEGIES:
        raise InputError(f"unknown --strategy {name!r} (known: {', '.join(_STRATEGIES)})")
    cls = _STRATEGIES[name]
    return cls(seed) if name == "random" else cls()

"""The nightly gate: which stored run a new run is judged against.

A run's baseline is the latest finished run before it that shares a comparable trial with it
(``autotune.regress.comparable_key``: model, config, backend, target, tuning budget and
emulation all match). The report's regressions section and ``autotune run --baseline
previous`` ask this module, so the two never name different baselines. An interrupted or
running run is never a baseline: its trials are a part of what it set out to measure.
"""

from __future__ import annotations

from collections.abc import Sequence

from autotune.regress import comparable_key
from autotune.store import Run, Store
from autotune.trial import Trial

BASELINE_STATUS = "finished"


def previous_comparable_run(store: Store, run: Run, trials: Sequence[Trial]) -> Run | None:
    """The latest finished run created before ``run`` with a trial comparable to one of
    ``trials``; None when the store holds none (the first night of a new setup)."""
    keys = {comparable_key(trial) for trial in trials}
    for earlier in reversed(store.runs()):
        if (earlier.created_at, earlier.id) >= (run.created_at, run.id):
            continue
        if earlier.status != BASELINE_STATUS or earlier.model_hash != run.model_hash:
            continue  # the model hash is part of every comparable key: a cheap filter
        if keys & {comparable_key(trial) for trial in store.trials(earlier.id)}:
            return earlier
    return None

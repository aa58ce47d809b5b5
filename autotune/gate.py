"""The nightly gate: which stored run a new run is judged against.

A run's baseline is the latest finished run before it that shares a comparable trial with it
(``autotune.regress.comparable_key``: model, config, backend, target, tuning budget and
emulation all match). The report's regressions section and ``autotune run --baseline
previous`` ask this module, so the two never name different baselines. An interrupted or
running run is never a baseline: its trials are a part of what it set out to measure.

A run of a campaign (a run file's cell) is judged against the same cell of an earlier night:
a run with the same runtime requirements and space (or configs), outside its own campaign.
Without that, tonight's second runtime version would be judged against tonight's first.
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
    for earlier in reversed(earlier_runs(store, run)):
        if keys & {comparable_key(trial) for trial in store.trials(earlier.id)}:
            return earlier
    return None


def earlier_runs(store: Store, run: Run) -> list[Run]:
    """The finished runs created before ``run`` that may hold trials comparable with its
    (same model; for a campaign's run, the same cell on other nights), oldest first."""
    return [earlier for earlier in store.runs()
            if (earlier.created_at, earlier.id) < (run.created_at, run.id)
            and earlier.status == BASELINE_STATUS
            and earlier.model_hash == run.model_hash  # part of every comparable key
            and (run.campaign is None or same_cell(earlier, run))]


def run_series(store: Store, run: Run,
               trials: Sequence[Trial]) -> dict[tuple, list[tuple[Run, Trial]]]:
    """The history of each of ``trials`` (``run``'s): the comparable trials of the runs before
    it (``earlier_runs``), oldest first, then its own, by comparable key. The change points a
    run's report and ``--fail-on change`` judge, as the run saw them (later runs left out)."""
    series: dict[tuple, list[tuple[Run, Trial]]] = {comparable_key(t): [] for t in trials}
    for earlier in earlier_runs(store, run):
        for trial in store.trials(earlier.id):
            if comparable_key(trial) in series:
                series[comparable_key(trial)].append((earlier, trial))
    for trial in trials:
        series[comparable_key(trial)].append((run, trial))
    return series


def same_cell(earlier: Run, run: Run) -> bool:
    """Whether ``earlier`` measured what the campaign cell ``run`` measures, on another
    night: the same runtime requirements and space or configs, in another campaign (or
    none)."""
    mine, theirs = run.settings, earlier.settings
    return (earlier.campaign != run.campaign and theirs.runtime == mine.runtime
            and theirs.configs == mine.configs
            and (bool(mine.configs) or theirs.space == mine.space))

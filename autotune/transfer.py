"""What the cost model learns from: every run in the store, not only the current one.

A trial becomes a training row once its model's graph profile is known. The store keeps
one profile per model hash (``Store.add_profile``): written when a run starts, and filled
in here from a run's model file while it still exists and still has the run's hash. A
model whose profile was never stored and whose file is gone is left out, and counted.

The features (``costmodel.features``) are mostly relative (fractions of operations per
precision, latency regressed against the roofline bound) plus a few size features (log
MACs, parameters, activations) that let trees tell models apart; so trials of other models,
targets and backends inform a model that has no trial yet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autotune.costmodel import Workload
from autotune.errors import InputError
from autotune.graph import GraphProfile, analyze
from autotune.roofline import peaks_for
from autotune.target import Target, load_target
from autotune.trial import Trial

log = logging.getLogger("autotune")


@dataclass
class TrainingSet:
    """Stored trials with their workloads, and what was left out and why."""

    workloads: list[Workload] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> trials

    @property
    def models(self) -> int:
        return len({trial.model_hash for trial in self.trials})

    def learnable(self) -> bool:
        """Whether anything here can train a latency regression (an ok trial)."""
        return any(trial.ok and trial.latency_ms for trial in self.trials)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


def remember_profile(store, model_hash: str, model: str, model_path: Path) -> GraphProfile:
    """The profile of a run's model, kept in the store for later training."""
    profile = analyze(model_path)
    store.add_profile(model_hash, model, profile.to_json())
    return profile


def stored_profiles(store) -> dict[str, GraphProfile]:
    """Every model's profile: the stored ones, plus those of runs whose model file still
    exists with the run's hash (stored now, so the file is not needed again)."""
    from autotune.quantize import file_hash

    profiles = {h: GraphProfile.from_json(data) for h, data in store.profiles().items()}
    for run in store.runs():
        path = Path(run.model_path)
        if run.model_hash in profiles or not path.is_file():
            continue
        try:
            if file_hash(path) != run.model_hash:
                continue  # the file changed since the run: not the model it measured
            profiles[run.model_hash] = remember_profile(store, run.model_hash, run.model, path)
        except Exception as error:  # noqa: BLE001 - a broken file costs its trials only
            log.warning("cannot profile %s for the cost model: %s", path, error)
    return profiles


def training_set(store, targets: Sequence[Target] = (), exclude_runs: Sequence[str] = (),
                 peaks: dict | None = None) -> TrainingSet:
    """Every ok or failed, non-emulated trial of the store's runs (but ``exclude_runs``) as
    cost-model training rows.

    ``targets`` are used by name before loading a stored trial's target by its name; a
    target that no longer loads (a TOML file gone) leaves its trials out. ``peaks`` (by
    target name) overrides the roofline peaks, as ``StrategyContext.peaks`` does. Emulated
    trials are left out: their latency is the emulator's, not a device's.
    """
    profiles = stored_profiles(store)
    known = {target.name: target for target in targets}
    peaks = dict(peaks or {})
    found = TrainingSet()
    for run in store.runs():
        if run.id in exclude_runs:
            continue
        trials = [t for t in store.trials(run.id) if t.ok or t.failed]
        if not trials:
            continue
        profile = profiles.get(run.model_hash)
        if profile is None:
            found.skip("model profile unknown (file gone before it was stored)", len(trials))
            continue
        for trial in trials:
            if trial.emulated:
                found.skip("emulated")
                continue
            target = _target(trial.target, known)
            if target is None:
                found.skip(f"target {trial.target} not found")
                continue
            if target.name not in peaks:
                peaks[target.name] = peaks_for(target, store)
            found.workloads.append(Workload(profile, trial.config, trial.backend, target,
                                            peaks[target.name]))
            found.trials.append(trial)
    return found


def _target(name: str, known: dict[str, Target]) -> Target | None:
    if name not in known:
        try:
            known[name] = load_target(name)
        except InputError:
            known[name] = None
    return known[name]

"""What a run was asked to do: one typed record, validated in one place, stored with the run.

``autotune run`` builds it from its flags, ``--resume`` reads it back from the store, and
reports quote it (the reproduce command, the tuning budget). Runs stored before this record
existed kept the argparse dict; ``from_legacy_args`` reads those with the defaults that
held when they were made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from autotune.errors import InputError
from autotune.machine_state import CONTENTION_LIMITS

DEFAULT_MODEL = "digits-cnn"
DEFAULT_TARGET = "host-cpu"
# TVM's default loops are ~100x slower than tuned kernels; 64 trials give each of a small
# model's kernels one search (about two minutes per kernel family on 2 cores, once: the
# database keeps them for every later config and run).
DEFAULT_TUNING_TRIALS = 64
# Guided search stops (--until-converged) when no remaining candidate's expected hypervolume
# improvement reaches this fraction of its group's current hypervolume.
DEFAULT_CONVERGENCE = 0.005
# A trial's own time limit grows with its tuning, which happens inside the trial.
BASE_TRIAL_TIMEOUT_S = 600.0
TIMEOUT_PER_TUNING_TRIAL_S = 5.0


@dataclass(frozen=True)
class RunSpec:
    """The settings of one run, as the user gave them (names resolved at the CLI)."""

    model: str = DEFAULT_MODEL  # zoo name or ONNX path
    data: str | None = None  # .npz of calibration/evaluation inputs
    metric: str | None = None
    shapes: tuple[str, ...] = ()  # --shape INPUT=DIMS texts for a model's dynamic dimensions
    space: str = "default"  # name or TOML path; unused when ``configs`` are given
    configs: tuple[str, ...] = ()  # canonical config texts (--config), fp32 added
    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    backends: tuple[str, ...] = ()  # empty: every registered backend
    strategy: str = "exhaustive"
    budget: int | None = None  # measured trials at most; None: the whole space
    seed: int = 0
    trial_timeout_s: float | None = None  # None: BASE + PER_TUNING_TRIAL x tuning_trials
    trial_memory_mib: int | None = None  # None: 60% of RAM, at most 8 GiB
    tuning_trials: int = DEFAULT_TUNING_TRIALS
    min_repeats: int = 50
    min_time_s: float = 1.0
    max_spread: float = 0.10
    # Contention limits of a timed window (autotune.machine_state.ContentionLimits; 0: off).
    max_other_cpu: float = CONTENTION_LIMITS.other_share
    max_steal: float = CONTENTION_LIMITS.steal_share
    max_canary_slowdown: float = CONTENTION_LIMITS.canary_slowdown
    passes: int = 3
    runtime: tuple[str, ...] = ()  # pip requirements the workers run against
    batches: tuple[int, ...] = ()  # throughput mode's batch sizes (--batch); (): off
    # Guided search stops when the best remaining expected hypervolume improvement is below
    # this fraction of the hypervolume (--until-converged); None: it spends the budget.
    until_converged: float | None = None

    def validate(self) -> RunSpec:
        """Raise InputError (naming the flag) for a setting no run can have; returns self."""
        for flag, value in (("--budget", self.budget), ("--tuning-trials", self.tuning_trials),
                            ("--max-spread", self.max_spread)):
            if value is not None and value < 0:
                raise InputError(f"{flag}: must not be negative; got {value}")
        for flag, value in (("--max-other-cpu", self.max_other_cpu),
                            ("--max-steal", self.max_steal),
                            ("--max-canary-slowdown", self.max_canary_slowdown)):
            if not 0 <= value <= 1:
                raise InputError(f"{flag}: must be a fraction between 0 and 1; got {value}")
        if self.batches:
            from autotune.throughput import check_batches

            check_batches(self.batches, "--batch")
        if self.shapes:
            from autotune.prepare import parse_shapes

            parse_shapes(self.shapes)
        if self.until_converged is not None:
            if not 0 < self.until_converged < 1:
                raise InputError(f"--until-converged: must be a fraction between 0 and 1; got "
                                 f"{self.until_converged}")
            if self.strategy != "guided":
                raise InputError("--until-converged needs --strategy guided")
        if self.passes < 1:
            raise InputError(f"--passes: must be at least 1; got {self.passes}")
        if self.min_repeats < 1:  # a trial with no sample has no latency to store
            raise InputError(f"--min-repeats: must be at least 1; got {self.min_repeats}")
        if self.trial_timeout_s is not None and self.trial_timeout_s <= 0:
            raise InputError(f"--trial-timeout: must be positive; got {self.trial_timeout_s}")
        if self.trial_memory_mib is not None and self.trial_memory_mib <= 0:
            raise InputError("--trial-memory: must be a positive number of MiB")
        return self

    @property
    def timeout_s(self) -> float:
        """The trial time limit in force (tuning happens inside the trial's compile step)."""
        if self.trial_timeout_s is not None:
            return self.trial_timeout_s
        return BASE_TRIAL_TIMEOUT_S + TIMEOUT_PER_TUNING_TRIAL_S * max(self.tuning_trials, 0)

    def to_json(self) -> dict:
        data = asdict(self)
        for name in ("shapes", "configs", "targets", "backends", "runtime", "batches"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown run settings {unknown}")
        values = dict(data)
        for name in ("shapes", "configs", "targets", "backends", "runtime", "batches"):
            if name in values:
                values[name] = tuple(values[name] or ())
        return cls(**values)

    @classmethod
    def from_legacy_args(cls, args: Mapping[str, Any]) -> RunSpec:
        """A run stored before settings were typed (its ``args_json``: argparse's dict).

        Missing keys take the defaults that held before they existed: one pass, a spread
        limit of 10%, no tuning."""
        spec = cls(passes=1, tuning_trials=0)
        renamed = {"config": "configs", "target": "targets", "backend": "backends",
                   "trial_timeout": "trial_timeout_s", "trial_memory": "trial_memory_mib",
                   "min_time": "min_time_s"}
        values = {}
        names = {f.name for f in fields(cls)}
        for key, value in args.items():
            name = renamed.get(key, key)
            if name in names and value is not None:
                values[name] = tuple(value) if isinstance(value, list) else value
        return replace(spec, **values)

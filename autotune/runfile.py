"""A run file (``autotune run -f nightly.toml``): the matrix a team measures every night.

One run takes one model, one space (or list of configs) and one runtime environment, but
several targets and backends. So a run file's cells are models x spaces x runtimes, and each
cell becomes one run with the file's other settings; the runs of one invocation share a
campaign id in the store. Flags the user gave override the file's values (``apply_flags``).

Paths in the file (an ONNX model, its data, a space or target TOML) are relative to the
file's folder, so a run file works from any working directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from autotune.errors import InputError
from autotune.prepare import parse_shapes
from autotune.settings import DEFAULT_MODEL, DEFAULT_TARGET, RunSpec
from autotune.tomlfile import Table, read_toml

# A runtime entry that means "the packages installed here" (no --runtime).
INSTALLED = "installed"
METRICS = ("top1", "cosine", "mse", "spearman")
FAIL_ON = ("regression", "change")  # as ``autotune run --fail-on``

# File keys that set one RunSpec field for every cell: key -> (field, accepted types).
# The keys are the flags' names (``--tuning-trials`` is ``tuning_trials``).
SCALAR_KEYS: dict[str, tuple[str, tuple[type, ...]]] = {
    "strategy": ("strategy", (str,)),
    "budget": ("budget", (int,)),
    "seed": ("seed", (int,)),
    "tuning_trials": ("tuning_trials", (int,)),
    "passes": ("passes", (int,)),
    "trial_timeout": ("trial_timeout_s", (int, float)),
    "trial_memory": ("trial_memory_mib", (int,)),
    "min_repeats": ("min_repeats", (int,)),
    "min_time": ("min_time_s", (int, float)),
    "max_spread": ("max_spread", (int, float)),
    "max_other_cpu": ("max_other_cpu", (int, float)),
    "max_steal": ("max_steal", (int, float)),
    "max_canary_slowdown": ("max_canary_slowdown", (int, float)),
}


@dataclass(frozen=True)
class ModelEntry:
    model: str  # zoo name or ONNX path
    data: str | None = None
    metric: str | None = None
    shapes: tuple[str, ...] = ()  # --shape INPUT=DIMS texts for its dynamic dimensions


@dataclass(frozen=True)
class RunFile:
    """A run file as read: the axes of the matrix and the settings every cell shares."""

    path: Path
    models: tuple[ModelEntry, ...]
    spaces: tuple[str, ...]  # one cell per space; empty when ``configs`` are given
    configs: tuple[str, ...]  # config texts measured in one cell instead of a space
    runtimes: tuple[tuple[str, ...], ...]  # each: pip requirements; () the installed ones
    shared: RunSpec  # targets, backends and the scalar settings (model/space/runtime unset)
    baseline: str | None = None  # the gate's --baseline (previous, latest or a run id)
    fail_on: tuple[str, ...] = ()  # the gate's --fail-on (regression, change)


@dataclass(frozen=True)
class Cell:
    """One run of a campaign: its settings and a short label for progress lines."""

    index: int  # 1-based
    spec: RunSpec

    @property
    def label(self) -> str:
        spec = self.spec
        what = f"{len(spec.configs)} config(s)" if spec.configs else f"space {spec.space}"
        runtime = " ".join(spec.runtime) or INSTALLED
        return f"model {spec.model}, {what}, runtime {runtime}"


def load_run_file(path: Path) -> RunFile:
    """Read and check a run file; an unknown key or a wrong type is an InputError naming the
    file and the key."""
    top = Table(read_toml(path), path)
    folder = path.parent
    models = tuple(_model(entry, path, index)
                   for index, entry in enumerate(top.get("models", list, [DEFAULT_MODEL])))
    if not models:
        raise InputError(f"{top.where('models')}: list at least one model")
    spaces = tuple(_file_or_name(name, folder) for name in _strings(top, "spaces", ["default"]))
    if not spaces:
        raise InputError(f"{top.where('spaces')}: list at least one space (or give configs)")
    configs = tuple(_strings(top, "configs", []))
    if "spaces" in top.keys() and configs:
        raise InputError(f"{top.where('configs')}: give spaces or configs, not both")
    runtimes = tuple(_runtime(entry, top, index)
                     for index, entry in enumerate(top.get("runtimes", list, [INSTALLED])))
    if not runtimes:
        raise InputError(f"{top.where('runtimes')}: list at least one runtime "
                         f"({INSTALLED!r}: the packages installed here)")
    targets = tuple(_file_or_name(name, folder)
                    for name in _strings(top, "targets", [DEFAULT_TARGET]))
    backends = tuple(_strings(top, "backends", []))
    values: dict[str, Any] = {}
    from autotune.search import strategy_names

    for key, (name, kinds) in SCALAR_KEYS.items():
        choices = tuple(strategy_names()) if key == "strategy" else None
        value = top.get(key, kinds, None, choices=choices)
        if value is not None:
            values[name] = float(value) if float in kinds else value
    batch = top.get("batch", (int, list), None)
    if batch is not None:
        from autotune.throughput import check_batches

        values["batches"] = check_batches([batch] if isinstance(batch, int) else batch,
                                          top.where("batch"))
    baseline = top.get("baseline", str, None)
    fail_on = top.get("fail_on", (str, list), [])
    fail_on = [fail_on] if isinstance(fail_on, str) else fail_on
    for index, value in enumerate(fail_on):
        if value not in FAIL_ON:
            raise InputError(f"{top.where('fail_on')}[{index}]: must be one of "
                             f"{', '.join(FAIL_ON)}; got {value!r}")
    if fail_on and "regression" in fail_on and baseline is None:
        raise InputError(f"{top.where('fail_on')}: regression needs a baseline (baseline = "
                         f"\"previous\")")
    top.finish()
    shared = RunSpec(targets=targets, backends=backends, **values)
    try:
        shared.validate()
    except InputError as error:  # the message names the flag; the file's key is its twin
        flag, _, problem = str(error).partition(":")
        key = flag.removeprefix("--").replace("-", "_")
        raise InputError(f"{top.where(key)}:{problem}") from None
    return RunFile(path, models, () if configs else spaces, configs, runtimes, shared,
                   baseline, tuple(dict.fromkeys(fail_on)))


def _strings(top: Table, key: str, default: list[str]) -> list[str]:
    values = top.get(key, list, default)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise InputError(f"{top.where(key)}[{index}]: expected a string, got "
                             f"{type(value).__name__} {value!r}")
    return values


def _model(entry: Any, path: Path, index: int) -> ModelEntry:
    """A ``[[models]]`` table (model, data, metric, shape), or a plain name or path."""
    if isinstance(entry, str):
        entry = {"model": entry}
    if not isinstance(entry, dict):
        raise InputError(f"{path}: models[{index}]: expected a table or a string, got "
                         f"{type(entry).__name__} {entry!r}")
    folder = path.parent
    table = Table(entry, path, f"models[{index}].")
    model = table.get("model", str)
    data = table.get("data", str, None)
    metric = table.get("metric", str, None, choices=METRICS)
    shapes = table.get("shape", list, [])
    try:
        parse_shapes([text if isinstance(text, str) else repr(text) for text in shapes])
    except InputError as error:
        raise InputError(f"{table.where('shape')}: {error}") from None
    table.finish()
    from autotune.zoo import ZOO

    if model not in ZOO:
        model = str(_relative(model, folder))
    return ModelEntry(model, None if data is None else str(_relative(data, folder)), metric,
                      tuple(shapes))


def _runtime(entry: Any, top: Table, index: int) -> tuple[str, ...]:
    """``"installed"``, one pip requirement, or a list of requirements installed together."""
    if isinstance(entry, str):
        entry = [] if entry == INSTALLED else [entry]
    if not isinstance(entry, list) or not all(isinstance(spec, str) and spec.strip()
                                              for spec in entry):
        raise InputError(f"{top.where('runtimes')}[{index}]: expected {INSTALLED!r}, a pip "
                         f"requirement or a list of them, got {entry!r}")
    return tuple(entry)


def _file_or_name(value: str, folder: Path) -> str:
    """A space or target: a NAME stays a name; a TOML path is taken from the file's folder."""
    if value.endswith(".toml") or "/" in value:
        return str(_relative(value, folder))
    return value


def _relative(value: str, folder: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def apply_flags(run_file: RunFile, flags: Mapping[str, Any]) -> RunFile:
    """The run file with the flags the user gave (``RunSpec`` field -> value) in force.

    ``--model`` (with ``--data``/``--metric``/``--shape``) replaces the file's models,
    ``--space`` its spaces, ``--config`` its spaces or configs, ``--runtime`` its runtimes
    (one, with every requirement given); the rest set the shared settings."""
    flags = dict(flags)
    models, spaces, configs = run_file.models, run_file.spaces, run_file.configs
    runtimes = run_file.runtimes
    if "model" in flags:
        models = (ModelEntry(flags.pop("model"), flags.pop("data", None),
                             flags.pop("metric", None), tuple(flags.pop("shapes", ()))),)
    elif given := [flag for key, flag in (("data", "--data"), ("metric", "--metric"),
                                          ("shapes", "--shape")) if key in flags]:
        raise InputError(f"{given[0]} with a run file ({run_file.path}) needs --model: the "
                         f"file's models have their own")
    if "configs" in flags:
        configs, spaces = flags.pop("configs"), ()
        flags.pop("space", None)
    elif "space" in flags:
        spaces, configs = (flags.pop("space"),), ()
    if "runtime" in flags:
        runtimes = (flags.pop("runtime"),)
    names = {f.name for f in fields(RunSpec)}
    unknown = sorted(set(flags) - names)
    if unknown:
        raise ValueError(f"not run settings: {unknown}")
    return replace(run_file, models=models, spaces=spaces, configs=configs, runtimes=runtimes,
                   shared=replace(run_file.shared, **flags))


def cells(run_file: RunFile) -> list[Cell]:
    """Every run of the campaign, models outermost, then spaces, then runtimes (so the
    runtime versions of one model and space run back to back)."""
    specs = []
    for entry in run_file.models:
        for space in run_file.spaces or (RunSpec.space,):
            for runtime in run_file.runtimes:
                specs.append(replace(run_file.shared, model=entry.model, data=entry.data,
                                     metric=entry.metric, shapes=entry.shapes, space=space,
                                     configs=run_file.configs, runtime=runtime))
    return [Cell(index, spec.validate()) for index, spec in enumerate(specs, start=1)]

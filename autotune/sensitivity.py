"""Mixed precision: a per-layer sensitivity scan, and the mixed-precision configs built on it.

The scan quantizes one compute layer at a time (every other layer kept in fp32 through the
config's overrides: ONNX Runtime's ``nodes_to_exclude``, or NNCF's ignored scope for a base
with SmoothQuant or bias correction), runs each model with
onnxruntime on the evaluation inputs and records how far its outputs move from fp32's.
Layers whose quantization hurts most are the ones worth keeping in float: a mixed space
keeps the k most sensitive layers in fp32 for k = 1..K, so it stays small (K configs per
base config instead of 2^layers). A per-layer space (``[per_layer]``) is the large one:
every assignment of {quantized, fp32} to the most sensitive layer groups, enumerated lazily
(``autotune.space.PerLayerConfigs``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from autotune.accuracy import fidelity_error, onnxruntime_outputs, quality
from autotune.config import QuantConfig
from autotune.data import Dataset
from autotune.errors import InputError
from autotune.graph import GraphProfile, analyze, layer_groups
from autotune.outcome import Sensitivity
from autotune.quantize import feeds_hash, file_hash, quantize, uses_nncf_quantize
from autotune.space import (
    MAX_GROUPS,
    ConfigSequence,
    PerLayerConfigs,
    PerLayerPolicy,
    SearchSpace,
)
from autotune.trial import Trial

log = logging.getLogger("autotune")


@dataclass(frozen=True)
class LayerSensitivity:
    """How much quantizing one layer alone changes the model's outputs."""

    layer: str
    op_type: str
    macs: int
    fidelity_error: float  # 1 - mean cosine of the outputs vs fp32
    sqnr_db: float
    accuracy_drop: float | None  # task-metric drop vs fp32 (None without a task metric)


@dataclass(frozen=True)
class SensitivityScan:
    """A scan of every compute layer of one model under one base config."""

    base: QuantConfig
    layers: tuple[LayerSensitivity, ...]

    def ranking(self) -> list[str]:
        """Layer names, most sensitive first: by task drop, then by fidelity error (the
        finer measure when a few hundred samples leave the task drop at 0 everywhere)."""
        ordered = sorted(self.layers, key=lambda s: (-(s.accuracy_drop or 0.0),
                                                     -s.fidelity_error, s.layer))
        return [s.layer for s in ordered]

    @property
    def metric(self) -> str:
        """What ``drops`` holds: the task drop where some layer moves the task metric, else
        the fidelity error (the driver's label-free drop): a model that keeps 100% top-1
        with any one layer quantized still differs in how far its outputs move."""
        moved = any(s.accuracy_drop for s in self.layers)
        return "accuracy_drop" if moved else "fidelity_error"

    def drops(self) -> dict[str, float]:
        """``{layer: drop}`` for ``Trial.sensitivity`` (see ``metric``)."""
        return {s.layer: s.accuracy_drop if self.metric == "accuracy_drop" else s.fidelity_error
                for s in self.layers}

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(),
                "layers": [dataclasses.asdict(s) for s in self.layers]}

    @classmethod
    def from_dict(cls, data: dict) -> SensitivityScan:
        return cls(QuantConfig.from_dict(data["base"]),
                   tuple(LayerSensitivity(**s) for s in data["layers"]))


def only_layer(config: QuantConfig, layer: str, layers: Sequence[str]) -> QuantConfig:
    """``config`` with every compute layer but ``layer`` kept in fp32."""
    return dataclasses.replace(config, overrides=tuple((other, "fp32") for other in layers
                                                       if other != layer))


def keep_in_float(config: QuantConfig, layers: Sequence[str]) -> QuantConfig:
    """``config`` with ``layers`` kept in fp32 (a mixed-precision config)."""
    return dataclasses.replace(config, overrides=tuple((layer, "fp32") for layer in layers))


def scan(model_path: Path, base: QuantConfig, dataset: Dataset, cache_dir: Path,
         reference: np.ndarray | None = None) -> SensitivityScan:
    """Quantize each compute layer alone under ``base`` and score it against fp32.

    Results are cached in ``cache_dir/sensitivity`` by model, data, config and onnxruntime
    version, like the quantized models themselves.
    """
    if not base.is_quantized or base.activation_scheme is None:  # no calibrated activations
        raise InputError(f"a sensitivity scan needs an integer base config, got {base.text}")
    cache = _cache_path(Path(model_path), base, dataset, Path(cache_dir))
    if cache.exists():
        return SensitivityScan.from_dict(json.loads(cache.read_text()))
    if reference is None:
        reference = onnxruntime_outputs(Path(model_path), dataset.evaluation)
    compute = analyze(Path(model_path)).compute_layers
    names = [layer.name for layer in compute]
    results = []
    for layer in compute:
        config = only_layer(base, layer.name, names)
        quantized = quantize(Path(model_path), config, dataset.calibration, Path(cache_dir))
        outputs = onnxruntime_outputs(quantized.path, dataset.evaluation)
        scores = quality(outputs, reference, dataset.labels, dataset.metric)
        reference_score = quality(reference, reference, dataset.labels, dataset.metric).accuracy
        drop = (None if scores.accuracy is None or reference_score is None
                else _signed_drop(reference_score, scores.accuracy, dataset.metric))
        results.append(LayerSensitivity(layer.name, layer.op_type, layer.macs,
                                        fidelity_error(scores.cosine), scores.sqnr_db, drop))
    found = SensitivityScan(base, tuple(results))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(found.to_dict()))
    return found


def _signed_drop(reference_score: float, score: float, metric: str) -> float:
    from autotune.accuracy import accuracy_drop

    return accuracy_drop(reference_score, score, metric)


def _cache_path(model_path: Path, base: QuantConfig, dataset: Dataset, cache_dir: Path) -> Path:
    digest = hashlib.sha256(feeds_hash(dataset.evaluation).encode()
                            + str(dataset.labels is not None).encode()).hexdigest()[:8]
    # A base with SmoothQuant or bias correction is quantized by NNCF: its version too.
    nncf = f"-nncf{version('nncf')}" if uses_nncf_quantize(base) else ""
    key = (f"{file_hash(model_path)}-{feeds_hash(dataset.calibration)}-{digest}-{base.id}"
           f"-ort{version('onnxruntime')}{nncf}-unfused")
    return cache_dir / "sensitivity" / f"{key}.json"


# Mixed-precision spaces


def mixed_configs(base: QuantConfig, ranking: Sequence[str], max_kept: int,
                  subsets: str = "prefix") -> list[QuantConfig]:
    """Mixed configs of ``base``: the top-k ranked layers kept in fp32 for k = 1..max_kept
    (``prefix``), or every non-empty subset of the top ``max_kept`` (``all``). Keeping every
    layer would be the float model again, so at least one layer stays quantized."""
    top = list(ranking[:min(max_kept, len(ranking) - 1)])
    if subsets == "prefix":
        return [keep_in_float(base, top[:k]) for k in range(1, len(top) + 1)]
    return [keep_in_float(base, list(chosen)) for k in range(1, len(top) + 1)
            for chosen in itertools.combinations(top, k)]


@dataclass(frozen=True)
class ExpandedSpace:
    """A space with its mixed configs added, and the scans that ranked their layers."""

    space: SearchSpace
    scans: dict[str, SensitivityScan]  # by base config id


def expand_mixed(space: SearchSpace, model_path: Path, dataset: Dataset,
                 cache_dir: Path) -> ExpandedSpace:
    """Add the mixed configs a space's ``[mixed]`` and ``[per_layer]`` tables ask for, now
    that the model is known.

    A space with neither table comes back unchanged.
    """
    policy = getattr(space, "mixed", None)
    per_layer = getattr(space, "per_layer", None)
    if policy is None and per_layer is None:
        return ExpandedSpace(space, {})
    profile = analyze(Path(model_path))
    configs = list(space.configs)
    scans: dict[str, SensitivityScan] = {}

    def ranking(base: QuantConfig) -> list[str]:
        if base.id not in scans:
            scans[base.id] = scan(model_path, base, dataset, cache_dir)
        return scans[base.id].ranking()

    if policy is not None:
        names = [layer.name for layer in profile.compute_layers]
        unknown = [layer for layer in policy.layers if layer not in names]
        if unknown:
            raise InputError(f"{space.path}: mixed.layers: {', '.join(unknown)} not among the "
                             f"model's compute layers ({', '.join(names)})")
        for base in policy.bases:
            order = list(policy.layers) if policy.layers else ranking(base)
            configs += mixed_configs(base, order, policy.max_kept, policy.subsets)
    unique = tuple(dict.fromkeys(configs))
    if per_layer is not None:
        blocks = per_layer_configs(per_layer, profile, ranking, space.path)
        expanded = dataclasses.replace(space, configs=ConfigSequence(unique, blocks),
                                       mixed=None, per_layer=None)
    else:
        expanded = dataclasses.replace(space, configs=unique, mixed=None)
    return ExpandedSpace(expanded, scans)


def per_layer_configs(policy: PerLayerPolicy, profile: GraphProfile, ranking,
                      where: Path | None = None) -> list[PerLayerConfigs]:
    """The per-layer configs of each base of ``policy`` for one model, enumerated lazily.

    Args:
        policy: The space's ``[per_layer]`` table.
        profile: The model's graph (its layer groups come from it).
        ranking: ``ranking(base) -> layer names, most sensitive first`` (a sensitivity scan);
            called only when ``policy.rank`` is "sensitivity".
        where: The space file, for errors.
    """
    groups = layer_groups(profile)
    macs = {layer.name: layer.macs for layer in profile.layers}
    if policy.max_groups is None and len(groups) > MAX_GROUPS:
        raise InputError(f"{where}: per_layer: the model has {len(groups)} layer groups, "
                         f"2^{len(groups)} configs per base; set max_groups (at most "
                         f"{MAX_GROUPS})")
    count = min(len(groups), policy.max_groups or len(groups))
    heaviest = sorted(groups, key=lambda group: -sum(macs[name] for name in group))
    blocks = []
    for base in policy.bases:
        if policy.rank == "macs":  # the same order for every base
            ordered = heaviest
        else:
            position = {layer: index for index, layer in enumerate(ranking(base))}
            ordered = sorted(groups, key=lambda group: min(position.get(name, len(position))
                                                           for name in group))
        blocks.append(PerLayerConfigs(base, ordered[:count], covers_model=count == len(groups)))
    return blocks


def attach_sensitivity(trial: Trial, scans: dict[str, SensitivityScan]) -> None:
    """Put the scan of a base config on its trial, where the report shows it."""
    found = scans.get(trial.config.id)
    if found is not None:
        trial.sensitivity = Sensitivity(found.metric, found.drops())

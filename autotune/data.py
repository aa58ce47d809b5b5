"""Datasets: calibration and evaluation inputs for a model, kept apart, with the metric.

A dataset is either given (a zoo entry, or a user's ``.npz``) or made from a seeded random
generator for the model's static input shapes, in which case only fidelity against fp32 can
be scored, and the run says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autotune.errors import InputError
from autotune.quantize import feeds_hash

Feeds = dict[str, np.ndarray]

METRICS = ("top1", "cosine", "mse", "spearman", "fidelity")

_ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_,
                10: np.float16, 11: np.float64}


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class Dataset:
    """Samples as feed dicts (one sample each, batch axis kept), labels for evaluation."""

    calibration: list[Feeds]
    evaluation: list[Feeds]
    labels: np.ndarray | None
    metric: str
    synthetic: bool = False
    # A declared identity (a zoo entry's name and data version) instead of the samples'
    # hash: images a zoo entry computes with scipy could differ in a last bit between
    # machines or scipy versions, which must not split one benchmark into two.
    identity: str | None = None
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)

    def digest(self) -> str:
        """The data's identity (calibration, evaluation, labels and metric, or the declared
        ``identity``): trials scored on other data are never compared with each other.
        Hashed once: every trial of a run carries it, and the samples never change."""
        if self._digest is None:
            self._digest = self._hash()
        return self._digest

    def _hash(self) -> str:
        if self.identity is not None:
            return hashlib.sha256(self.identity.encode()).hexdigest()[:16]
        digest = hashlib.sha256(self.metric.encode())
        for split in (self.calibration, self.evaluation):
            digest.update(feeds_hash(split).encode())
        if self.labels is not None:
            digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: Path) -> None:
        arrays = {}
        for split, samples in (("calibration", self.calibration), ("evaluation", self.evaluation)):
            for name in samples[0]:
                arrays[f"{split}/{name}"] = np.stack([feeds[name] for feeds in samples])
        if self.labels is not None:
            arrays["labels"] = self.labels
        arrays["meta/metric"] = np.array(self.metric)
        arrays["meta/synthetic"] = np.array(self.synthetic)
        if self.identity is not None:
            arrays["meta/identity"] = np.array(self.identity)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Dataset:
        with np.load(path) as data:
            splits: dict[str, dict[str, np.ndarray]] = {"calibration": {}, "evaluation": {}}
            for key in data.files:
                split, _, name = key.partition("/")
                if split in splits:
                    splits[split][name] = data[key]
            labels = data["labels"] if "labels" in data.files else None
            identity = str(data["meta/identity"]) if "meta/identity" in data.files else None
            return cls(calibration=_unstack(splits["calibration"]),
                       evaluation=_unstack(splits["evaluation"]), labels=labels,
                       metric=str(data["meta/metric"]), synthetic=bool(data["meta/synthetic"]),
                       identity=identity)


def _unstack(arrays: dict[str, np.ndarray]) -> list[Feeds]:
    count = len(next(iter(arrays.values())))
    return [{name: values[index] for name, values in arrays.items()} for index in range(count)]


def model_inputs(model_path: Path) -> list[InputSpec]:
    """The graph inputs of an ONNX model (initializers excluded), with static shapes."""
    from autotune.onnx_files import read_model

    model = read_model(model_path)
    if not model.graph.node:
        raise InputError(f"{model_path}: not a readable ONNX model (the graph has no nodes)")
    initializers = {tensor.name for tensor in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = []
        for index, dim in enumerate(tensor_type.shape.dim):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                raise InputError(
                    f"{model_path}: input {value.name!r} dimension {index} is dynamic "
                    f"({dim.dim_param or '?'}); autotune run sizes it with --shape")
            shape.append(dim.dim_value)
        dtype = _ONNX_DTYPES.get(tensor_type.elem_type)
        if dtype is None:
            raise InputError(f"{model_path}: input {value.name!r} has an unsupported element "
                             f"type {tensor_type.elem_type}")
        specs.append(InputSpec(value.name, tuple(shape), np.dtype(dtype)))
    return specs


def random_dataset(model_path: Path, calibration_count: int = 32, evaluation_count: int = 32,
                   seed: int = 0, metric: str | None = None) -> Dataset:
    """Seeded random inputs for a model with no data: only fidelity vs fp32 can be scored.

    Args:
        model_path: The ONNX model whose static input shapes and dtypes the samples take.
        calibration_count: Calibration samples to draw.
        evaluation_count: Evaluation samples to draw (a disjoint set).
        seed: Seed of the generator; the same seed gives the same samples.
        metric: ``cosine`` or ``mse`` (against the fp32 outputs), or None for ``fidelity``;
            metrics that need labels are input errors.
    """
    metric = metric or "fidelity"
    if metric not in ("fidelity", "cosine", "mse"):
        raise InputError(f"--metric {metric}: needs labels; give --data with a 'labels' array")
    rng = np.random.default_rng(seed)
    specs = model_inputs(model_path)
    integer_specs = [spec for spec in specs if not np.issubdtype(spec.dtype, np.floating)]
    ranges = integer_ranges(model_path, integer_specs) if integer_specs else {}

    def sample() -> Feeds:
        feeds = {}
        for spec in specs:
            if np.issubdtype(spec.dtype, np.floating):
                feeds[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
            else:
                low, high = ranges[spec.name]
                feeds[spec.name] = rng.integers(low, high, spec.shape).astype(spec.dtype)
        return feeds

    calibration = [sample() for _ in range(calibration_count)]
    evaluation = [sample() for _ in range(evaluation_count)]
    return Dataset(calibration, evaluation, None, metric, synthetic=True)


# Integer inputs that index nothing the graph shows (no embedding table) get small positive
# values: ids past a vocabulary would make Gather fail, and 0 is often a padding id.
_SMALL_IDS = (1, 100)


def integer_ranges(model_path: Path, specs: list[InputSpec]) -> dict[str, tuple[int, int]]:
    """The [low, high) range that random values of each integer (or bool) input come from.

    Masks (the name says so) are all ones, so every token counts; token ids that index an
    embedding table (a Gather on an initializer) stay within its rows; other integer inputs
    get small positive ids, and bools 0 or 1.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    ranges = {}
    for spec in specs:
        rows = _embedding_rows(graph, spec.name)
        if "mask" in spec.name.lower():
            ranges[spec.name] = (1, 2)
        elif spec.dtype == np.bool_:
            ranges[spec.name] = (0, 2)
        elif rows is not None:
            ranges[spec.name] = (0, rows)
        else:
            ranges[spec.name] = _SMALL_IDS
    return ranges


def _embedding_rows(graph, input_name: str) -> int | None:
    """Rows of the smallest initializer table that a Gather indexes with ``input_name``."""
    tables = {tensor.name: tensor.dims for tensor in graph.initializer}
    rows = [tables[node.input[0]][0] for node in graph.node
            if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == input_name
            and node.input[0] in tables and tables[node.input[0]]
            and all(attr.name != "axis" or attr.i == 0 for attr in node.attribute)]
    return min(rows) if rows else None

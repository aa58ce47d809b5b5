"""A user's own data for an ONNX model: one ``.npz`` checked against the model's inputs.

The file holds one array per model input name (first axis = samples) and optionally
``labels``. Split rule: the first quarter of the samples (at most 256) calibrates, the rest
evaluates, so the two never overlap. Instead, the splits can be given explicitly as
``calibration/<input>`` and ``evaluation/<input>`` arrays; ``labels`` then belong to the
evaluation samples.

Labels by metric: ``top1`` one integer class per sample; ``spearman`` one gold score per pair
of consecutive samples (a0, b0, a1, b1, ...), pairs never split between calibration and
evaluation; ``cosine`` and ``mse`` one target output per sample, or no labels to compare
with the fp32 model's outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autotune.data import Dataset, Feeds, InputSpec, model_inputs
from autotune.errors import InputError

MAX_CALIBRATION = 256
USER_METRICS = ("top1", "cosine", "mse", "spearman")
SPLITS = ("calibration", "evaluation")


def load_user_data(model_path: Path, data_path: Path, metric: str | None = None) -> Dataset:
    """The calibration and evaluation splits in ``data_path``, checked against the model.

    Raises:
        InputError: one line naming the file and the array that does not fit.
    """
    specs = model_inputs(model_path)
    arrays = _read_npz(data_path)
    labels = arrays.pop("labels", None)
    metric = _metric(data_path, metric, labels)
    explicit = any("/" in name for name in arrays)
    if explicit:
        splits = {split: _input_arrays(data_path, arrays, specs, f"{split}/") for split in SPLITS}
        unknown = set(arrays) - {f"{split}/{spec.name}" for split in SPLITS for spec in specs}
    else:
        splits = {"": _input_arrays(data_path, arrays, specs, "")}
        unknown = set(arrays) - {spec.name for spec in specs}
    if unknown:
        raise InputError(f"{data_path}: arrays {sorted(unknown)} match no model input "
                         f"(inputs: {', '.join(s.name for s in specs)}; splits are given as "
                         f"calibration/<input> and evaluation/<input>)")
    counts = {split: _count(data_path, split_arrays) for split, split_arrays in splits.items()}
    unit = 2 if metric == "spearman" else 1  # samples that one label belongs to
    if explicit:
        calibration = _samples(splits["calibration"])
        evaluation = _samples(splits["evaluation"])
        if not calibration or not evaluation:
            raise InputError(f"{data_path}: the calibration and evaluation splits need at "
                             f"least one sample each")
        _check_labels(data_path, labels, metric, len(evaluation), unit, "evaluation ")
    else:
        samples = _samples(splits[""])
        _check_labels(data_path, labels, metric, counts[""], unit, "")
        calibration_count = _calibration_count(data_path, counts[""], unit)
        calibration, evaluation = samples[:calibration_count], samples[calibration_count:]
        if labels is not None:
            labels = labels[calibration_count // unit:]
    if labels is not None and metric in ("cosine", "mse"):
        _check_targets(data_path, model_path, labels)
    return Dataset(calibration=calibration, evaluation=evaluation, labels=labels, metric=metric)


def sample_shapes(data_path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of one sample of each input array (batch 1 put first), by input name:
    what sizes a dynamic model's dimensions when ``--shape`` does not."""
    shapes = {}
    for key, values in _read_npz(data_path).items():
        name = key.partition("/")[2] if "/" in key else key
        if name != "labels" and values.ndim >= 1:
            shapes.setdefault(name, (1, *values.shape[1:]))
    return shapes


def _read_npz(data_path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(data_path)
    except FileNotFoundError:
        raise InputError(f"{data_path}: data file not found") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{data_path}: not a readable .npz file ({error})") from None
    if not hasattr(archive, "files"):
        raise InputError(f"{data_path}: a single array, not an .npz archive of named arrays")
    with archive:
        return {name: archive[name] for name in archive.files}


def _metric(data_path: Path, metric: str | None, labels: np.ndarray | None) -> str:
    if metric is None:
        return "fidelity" if labels is None else "top1"
    if metric not in USER_METRICS:
        raise InputError(f"--metric {metric}: not one of {', '.join(USER_METRICS)}")
    if metric in ("top1", "spearman") and labels is None:
        raise InputError(f"{data_path}: --metric {metric} needs a 'labels' array")
    return metric


def _input_arrays(data_path: Path, arrays: dict[str, np.ndarray], specs: list[InputSpec],
                  prefix: str) -> dict[str, np.ndarray]:
    """The array of each model input, checked for name, dtype and sample shape."""
    found = {}
    for spec in specs:
        key = prefix + spec.name
        if key not in arrays:
            raise InputError(f"{data_path}: no array named {key!r} for model input "
                             f"{spec.name!r} (arrays: {', '.join(sorted(arrays)) or 'none'})")
        values = arrays[key]
        if values.ndim == 0 or values.shape[1:] != spec.shape[1:] or spec.shape[0] != 1:
            # The whole shape, and the one expected: (N, 1, 3, 16, 16) for a (1, 3, 16, 16)
            # input read "(1, 3, 16, 16) does not match (1, 3, 16, 16)" with sample shapes.
            wanted = ", ".join(["N", *map(str, spec.shape[1:])])
            raise InputError(f"{data_path}: {key}: array of shape {values.shape} does not fit "
                             f"the model input shape {spec.shape}; expected ({wanted}): first "
                             f"axis = samples, each sample of batch 1")
        if values.dtype != spec.dtype:
            raise InputError(f"{data_path}: {key}: dtype {values.dtype} does not match the "
                             f"model input dtype {spec.dtype}")
        found[spec.name] = values
    return found


def _count(data_path: Path, arrays: dict[str, np.ndarray]) -> int:
    counts = {name: len(values) for name, values in arrays.items()}
    if len(set(counts.values())) > 1:
        raise InputError(f"{data_path}: arrays disagree on the number of samples "
                         f"({', '.join(f'{name}: {count}' for name, count in counts.items())})")
    return next(iter(counts.values()))


def _samples(arrays: dict[str, np.ndarray]) -> list[Feeds]:
    count = len(next(iter(arrays.values())))
    return [{name: values[index][None] for name, values in arrays.items()}
            for index in range(count)]


def _calibration_count(data_path: Path, count: int, unit: int) -> int:
    """The documented rule: the first quarter (at most 256 samples) calibrates."""
    if count < 2 * unit:
        raise InputError(f"{data_path}: needs at least {2 * unit} samples (calibration and "
                         f"evaluation)")
    units = count // unit
    return min(max(units // 4, 1), MAX_CALIBRATION // unit) * unit


def _check_labels(data_path: Path, labels: np.ndarray | None, metric: str, samples: int,
                  unit: int, split: str) -> None:
    if labels is None:
        return
    if samples % unit:
        raise InputError(f"{data_path}: --metric {metric} scores pairs of consecutive samples; "
                         f"{samples} samples is an odd count")
    expected = samples // unit
    if labels.ndim == 0 or len(labels) != expected:
        per = "pair of samples" if unit == 2 else "sample"
        raise InputError(f"{data_path}: labels: {0 if labels.ndim == 0 else len(labels)} "
                         f"labels for {expected} {split}{per}s; arrays disagree on the "
                         f"number of samples (one label per {per})")
    if metric == "top1" and (labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer)):
        raise InputError(f"{data_path}: labels: --metric top1 needs one integer class per "
                         f"sample, got {labels.dtype} of shape {labels.shape} (for scores "
                         f"or target outputs give --metric spearman, cosine or mse)")
    if metric == "spearman" and labels.ndim != 1:
        raise InputError(f"{data_path}: labels: --metric spearman needs one score per pair, "
                         f"got shape {labels.shape}")


def _check_targets(data_path: Path, model_path: Path, labels: np.ndarray) -> None:
    """Target outputs must have the size of the model's first output."""
    import onnx

    output = onnx.load(str(model_path), load_external_data=False).graph.output[0]
    dims = [dim.dim_value for dim in output.type.tensor_type.shape.dim]
    if dims and all(dim > 0 for dim in dims):
        size = int(np.prod(dims))
        if int(np.prod(labels.shape[1:])) != size:
            raise InputError(f"{data_path}: labels: target outputs of shape {labels.shape[1:]} "
                             f"do not match the model output {output.name!r} of shape "
                             f"{tuple(dims)}")

"""A user's own data for an ONNX model: one ``.npz`` checked against the model's inputs.

The file holds one array per model input name (first axis = samples) and optionally
``labels``. Split rule: the first quarter of the samples (at most 256) calibrates, the rest
evaluates, so the two never overlap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autotune.data import Dataset, model_inputs
from autotune.errors import InputError

MAX_CALIBRATION = 256


def load_user_data(model_path: Path, data_path: Path, metric: str | None = None) -> Dataset:
    specs = model_inputs(model_path)
    try:
        archive = np.load(data_path)
    except FileNotFoundError:
        raise InputError(f"{data_path}: data file not found") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{data_path}: not a readable .npz file ({error})") from None
    with archive:
        names = set(archive.files)
        arrays = {}
        for spec in specs:
            if spec.name not in names:
                raise InputError(f"{data_path}: no array named {spec.name!r} for model input "
                                 f"{spec.name!r} (arrays: {', '.join(sorted(names))})")
            values = archive[spec.name]
            if values.shape[1:] != spec.shape[1:] or (values.ndim and spec.shape[0] != 1):
                raise InputError(f"{data_path}: {spec.name}: samples of shape {values.shape[1:]}"
                                 f" do not match the model input shape {spec.shape} (first "
                                 f"axis = samples, each sample of batch 1)")
            if values.dtype != spec.dtype:
                raise InputError(f"{data_path}: {spec.name}: dtype {values.dtype} does not "
                                 f"match the model input dtype {spec.dtype}")
            arrays[spec.name] = values
        unknown = names - set(arrays) - {"labels"}
        if unknown:
            raise InputError(f"{data_path}: arrays {sorted(unknown)} match no model input "
                             f"(inputs: {', '.join(s.name for s in specs)})")
        counts = {len(values) for values in arrays.values()}
        labels = archive["labels"] if "labels" in names else None
    if len(counts) != 1 or (labels is not None and len(labels) not in counts):
        raise InputError(f"{data_path}: arrays disagree on the number of samples")
    count = counts.pop()
    if count < 2:
        raise InputError(f"{data_path}: needs at least 2 samples (calibration and evaluation)")
    calibration_count = min(max(count // 4, 1), MAX_CALIBRATION)
    samples = [{name: values[index][None] for name, values in arrays.items()}
               for index in range(count)]
    metric = metric or ("top1" if labels is not None else "fidelity")
    return Dataset(calibration=samples[:calibration_count],
                   evaluation=samples[calibration_count:],
                   labels=None if labels is None else labels[calibration_count:],
                   metric=metric)

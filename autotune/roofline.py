"""Roofline: a target's peak compute per precision and bandwidth per memory level, and
where trials sit.

Cache-aware (Ilic, Pratas & Sousa, "Cache-aware Roofline model", IEEE CAL 2014; Intel
Advisor's hierarchical roofline): each layer's bytes move at the bandwidth of the smallest
level its working set (weights plus activations, at their precision) fits in: L1, L2, L3
or DRAM. A config's roofline-bound latency is ``max(compute time, memory time)``: the
compute time sums each layer's operations over the peak of the precision it runs in, the
memory time each layer's bytes over its level's bandwidth. A trial's attained fraction is
that bound over its measured latency; above 1 the trial beat its bound, so a peak is too
low, and ``beaten_roof`` says which.

Peaks come from micro-benchmarks run on the target in an isolated worker
(``measure_peaks``: a large MatMul compiled at fp32, with the bf16 hint and as int8 QDQ; a
numpy kernel streaming a level-sized buffer per level, on the device itself; a large
elementwise model for DRAM), stored with the date and the measured device, or else from the
target TOML's ``[roofline]`` table. Peaks measured on an emulated device are never a roof.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autotune.graph import ConfigCost, analyze, config_cost
from autotune.onnx_files import save_model
from autotune.outcome import FLOAT_FALLBACK, DeviceFacts, RooflinePlacement
from autotune.target import Target
from autotune.target_spec import DRAM
from autotune.trial import Trial

log = logging.getLogger("autotune")

MEASURED_PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class LevelRoof:
    """One memory level's roof: the working sets it holds and the bandwidth it serves."""

    name: str
    capacity_bytes: int | None  # the whole target's (a private level: size x cores); None: DRAM
    bandwidth_gbs: float
    source: str  # "measured" or "estimate" (the target TOML's)


@dataclass(frozen=True)
class Peaks:
    """Peak GOPS per precision, bandwidth per memory level, and where those figures come from.

    ``bandwidth_gbs`` is DRAM's (the classic single-roof figure, which the cost model reads).
    """

    gops: dict[str, float]
    bandwidth_gbs: float | None
    source: str  # "measured" (with the date and host) or "target" (the TOML's estimate)
    measured_at: str | None = None
    hostname: str | None = None
    levels: tuple[LevelRoof, ...] = ()  # smallest first, DRAM last
    measured_gops: dict[str, float] = field(default_factory=dict)  # the micro-benchmarks'

    def peak(self, precision: str) -> float | None:
        """The peak of ``precision``; a precision with no figure of its own runs at fp32's."""
        return self.gops.get(precision) or self.gops.get("fp32")

    def level_for(self, working_set_bytes: float) -> LevelRoof | None:
        """The smallest level that holds ``working_set_bytes``; None without any bandwidth."""
        for level in self.levels:
            if level.capacity_bytes is None or working_set_bytes <= level.capacity_bytes:
                return level
        if self.bandwidth_gbs:
            return LevelRoof(DRAM, None, self.bandwidth_gbs, self.source)
        return None


@dataclass(frozen=True)
class Bound:
    """The roofline-bound latency of one config, which roof sets it, and which memory level
    takes the most of its memory time."""

    compute_ms: float
    memory_ms: float
    memory_level: str = ""
    memory_ms_by_level: dict[str, float] = field(default_factory=dict)
    layer_levels: dict[str, str] = field(default_factory=dict)  # layer name -> its level

    @property
    def bound_ms(self) -> float:
        return max(self.compute_ms, self.memory_ms)

    @property
    def bound(self) -> str:
        return "memory" if self.memory_ms > self.compute_ms else "compute"


def level_roofs(target: Target, measured: dict[str, float] | None = None
                ) -> tuple[LevelRoof, ...]:
    """The target's levels, each at the larger of its measured bandwidth (``measured``) and
    the TOML's estimate: a measurement shows what the level did at least, on a shared
    machine often far less than it can, and a roof set too low is beaten. A level is never
    slower than the one below it (a working set that fits L2 fits L3 too): where a figure
    says so, the one below counts for it as well."""
    measured = measured or {}
    roofs = []
    for level in target.memory_levels:
        capacity = (None if level.size_bytes is None
                    else level.size_bytes * (target.threads if level.private else 1))
        figure = measured.get(level.name) or 0.0
        roofs.append(LevelRoof(level.name, capacity, max(figure, level.bandwidth_gbs),
                               "measured" if figure > level.bandwidth_gbs else "estimate"))
    for index in range(len(roofs) - 2, -1, -1):
        below = roofs[index + 1]
        if below.bandwidth_gbs > roofs[index].bandwidth_gbs:
            roofs[index] = dataclasses.replace(roofs[index], bandwidth_gbs=below.bandwidth_gbs,
                                               source=below.source)
    return tuple(roofs)


def target_peaks(target: Target) -> Peaks | None:
    """The estimates in the target TOML, or None when it has no [roofline] table."""
    if not target.peak_gops:
        return None
    return Peaks(dict(target.peak_gops), target.memory_bandwidth_gbs, "target",
                 levels=level_roofs(target))


def peaks_for(target: Target, store=None, cpu_model: str | None = None,
              cores: int | None = None) -> Peaks | None:
    """Measured peaks for ``target`` (on that CPU and core count) if stored, else the TOML's.
    The store never answers with peaks measured on an emulated device."""
    if store is not None:
        record = store.latest_roofline(target.name, cpu_model, cores)
        if record is not None:
            measured = {**record.level_bandwidth_gbs}
            if record.memory_bandwidth_gbs:
                measured.setdefault(DRAM, record.memory_bandwidth_gbs)
            levels = level_roofs(target, measured)
            dram = next((level.bandwidth_gbs for level in levels if level.name == DRAM),
                        measured.get(DRAM))
            return Peaks(roof_gops(record.peak_gops, target.peak_gops), dram, "measured",
                         record.measured_at, record.hostname, levels,
                         dict(record.peak_gops))
    return target_peaks(target)


def roof_gops(measured: dict[str, float], estimated: dict[str, float]) -> dict[str, float]:
    """Each precision's roof: the larger of the micro-benchmark's figure (a lower bound on
    what the hardware does) and the target's theoretical peak (an upper bound, where the TOML
    or ``compute = "isa"`` gives one); a trial can beat a measured figure, not the hardware."""
    return {precision: max(measured.get(precision) or 0.0, estimated.get(precision) or 0.0)
            for precision in {*measured, *estimated}}


def roofline_bound(ops_by_precision: dict[str, float], bytes_moved: float,
                   peaks: Peaks) -> Bound:
    """The bound of ``ops_by_precision`` operations and ``bytes_moved`` bytes, every byte
    from DRAM: the classic single-roof bound (the cost model's feature)."""
    memory_s = bytes_moved / (peaks.bandwidth_gbs * 1e9) if peaks.bandwidth_gbs else 0.0
    return Bound(_compute_s(ops_by_precision, peaks) * 1e3, memory_s * 1e3)


def _compute_s(ops_by_precision: dict[str, float], peaks: Peaks) -> float:
    compute_s = 0.0
    for precision, ops in ops_by_precision.items():
        peak = peaks.peak(precision)
        if not peak:
            raise ValueError(f"no peak for {precision} (nor fp32) in the roofline")
        compute_s += ops / (peak * 1e9)
    return compute_s


def cache_aware_bound(cost: ConfigCost, peaks: Peaks) -> Bound:
    """The bound of ``cost`` with each layer's bytes at the bandwidth of the smallest level
    its working set fits in; the level with the most memory time is the trial's."""
    by_level: dict[str, float] = {}
    layer_levels: dict[str, str] = {}
    for layer in cost.layers:
        level = peaks.level_for(layer.bytes)
        if level is None:
            continue
        layer_levels[layer.name] = level.name
        by_level[level.name] = (by_level.get(level.name, 0.0)
                                + layer.bytes / (level.bandwidth_gbs * 1e9) * 1e3)
    dominant = max(by_level, key=by_level.get) if by_level else ""
    return Bound(_compute_s(cost.ops_by_precision, peaks) * 1e3, sum(by_level.values()),
                 dominant, by_level, layer_levels)


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
    bound = cache_aware_bound(cost, peaks)
    return dataclasses.replace(
        counts, bound_ms=bound.bound_ms, compute_ms=bound.compute_ms,
        memory_ms=bound.memory_ms, bound=bound.bound, peaks_source=peaks.source,
        peak_gops=dict(peaks.gops), memory_bandwidth_gbs=peaks.bandwidth_gbs,
        peaks_measured_at=peaks.measured_at or "",
        attained_fraction=bound.bound_ms / latency_ms if latency_ms else None,
        memory_level=bound.memory_level, memory_ms_by_level=dict(bound.memory_ms_by_level),
        layer_levels=dict(bound.layer_levels),
        level_bandwidth_gbs={level.name: level.bandwidth_gbs for level in peaks.levels},
        estimated_levels=[level.name for level in peaks.levels if level.source == "estimate"])


def beaten_roof(place: RooflinePlacement, latency_ms: float | None) -> str:
    """Empty while ``latency_ms`` respects the bound; else which peak must be wrong, in
    words (a bound that is beaten is not a bound: its attained fraction is never shown)."""
    if not place.bound_ms or not latency_ms or place.bound_ms <= latency_ms:
        return ""
    level = place.memory_level or DRAM
    wrong = []
    if place.memory_ms and place.memory_ms > latency_ms:
        wrong.append(f"the {level} bandwidth")
    if place.compute_ms and place.compute_ms > latency_ms:
        wrong.append(f"the {place.precision} peak")
    roof = f"the {level} bound" if place.bound == "memory" else \
        f"the {place.precision} compute bound"
    return f"measured faster than {roof}: {' or '.join(wrong)} is too low"


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
    """What ``measure_peaks`` found, with the per-benchmark figures behind it.

    ``level_bandwidth_gbs`` holds the levels measured trustworthily (DRAM's figure is also
    ``memory_bandwidth_gbs``); ``device`` is the remote device that ran them (None: this
    machine), whose CPU model keys the stored record.
    """

    peak_gops: dict[str, float]
    memory_bandwidth_gbs: float | None
    details: dict = field(default_factory=dict)
    level_bandwidth_gbs: dict[str, float] = field(default_factory=dict)
    device: DeviceFacts | None = None

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["device"] = None if self.device is None else self.device.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> PeakMeasurement:
        return cls(dict(data["peak_gops"]), data["memory_bandwidth_gbs"],
                   dict(data.get("details") or {}), dict(data.get("level_bandwidth_gbs") or {}),
                   DeviceFacts.from_json(data.get("device")))


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
    """Time compute and per-level bandwidth micro-benchmarks on ``target`` itself: through a
    backend (on a remote target, its device through the tracker) and, for the cache levels,
    a numpy kernel on the same machine. Call it in an isolated worker
    (``autotune.worker.run_roofline_isolated``), pinned as trials are.

    Each peak is operations (bytes) over the fastest sample, the least disturbed one on a
    shared machine. A precision the target cannot run, or an int8 model whose MatMul fell back
    to float, gets no peak, and a level whose kernel is not trustworthy gets no bandwidth:
    a wrong roof is worse than the estimate.
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
        record, device = _time_matmul(backend, target, path, precision, inputs, workdir,
                                      min_time_s)
        found.device = found.device or device
        found.details["precisions"][precision] = record
        if "best_ms" in record:
            found.peak_gops[precision] = ops / (record["best_ms"] / 1e3) / 1e9
    dram, device = _elementwise_gbs(backend, target, workdir, copy_bytes, min_time_s)
    found.device = found.device or device
    levels = _level_figures(target, copy_bytes, min_time_s)
    found.details["levels"] = levels
    found.details["dram_elementwise_gbs"] = dram
    for figure in levels.get("figures", []):
        if figure["bandwidth_gbs"]:
            found.level_bandwidth_gbs[figure["name"]] = figure["bandwidth_gbs"]
    found.level_bandwidth_gbs[DRAM] = max(dram, found.level_bandwidth_gbs.get(DRAM, 0.0))
    found.memory_bandwidth_gbs = found.level_bandwidth_gbs.get(DRAM)
    return found


def _time_matmul(backend, target: Target, path: Path, precision: str, inputs: list,
                 workdir: Path, min_time_s: float) -> tuple[dict, DeviceFacts | None]:
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
        return {"skipped": str(error)}, None
    fallback = [note.text for note in backend.notes(artifact) if note.kind == FLOAT_FALLBACK]
    if precision == "int8" and fallback:
        return {"skipped": f"the int8 MatMul ran in float ({'; '.join(fallback)})"}, None
    protocol = MeasurementProtocol(warmup_runs=3, min_repeats=10, min_time_s=min_time_s)
    measurement = backend.measure(artifact, inputs, target, protocol)
    samples = measurement.latencies_ms
    return ({"best_ms": float(min(samples)), "median_ms": float(np.median(samples)),
             "samples": len(samples)}, measurement.device)


def _elementwise_gbs(backend, target: Target, workdir: Path, copy_bytes: int,
                     min_time_s: float) -> tuple[float, DeviceFacts | None]:
    """DRAM bandwidth as the backend streams it (all of the target's threads, on the
    target's device): a Relu over ``copy_bytes``, one read and one write per element."""
    from autotune.config import QuantConfig
    from autotune.measure import MeasurementProtocol
    from autotune.quantize import QuantizedModel, file_hash

    elements = copy_bytes // 4
    source = np.random.default_rng(2).random(elements, dtype=np.float32) - 0.5
    path = elementwise_model(workdir / "relu.onnx", elements)
    model = QuantizedModel(path, QuantConfig(), "fp32", file_hash(path))
    artifact = backend.compile(model, target, _fresh(workdir / "relu"))
    protocol = MeasurementProtocol(warmup_runs=2, min_repeats=5, min_time_s=min_time_s)
    measurement = backend.measure(artifact, [{"x": source}], target, protocol)
    return 2 * copy_bytes / (min(measurement.latencies_ms) / 1e3) / 1e9, measurement.device


def _level_figures(target: Target, dram_bytes: int, min_time_s: float) -> dict:
    """Each memory level's bandwidth from the numpy kernel (``autotune.bandwidth``), run
    where the target is: here for a local CPU, on the device through the tracker for a
    remote one; a GPU's caches are not measured (they need a kernel on the GPU)."""
    from autotune.bandwidth import LevelSpec

    if not target.memory_levels:
        return {"skipped": "the target TOML describes no memory levels"}
    if target.device != "cpu":
        return {"skipped": f"a {target.device}'s cache levels need a kernel on the device; "
                           "the TOML's estimates are kept (DRAM from the elementwise model)"}
    specs = [LevelSpec(level.name, level.size_bytes, level.private)
             for level in target.memory_levels]
    if target.is_local:
        from autotune.bandwidth import measure_levels

        figures = [f.to_json() for f in measure_levels(specs, target.threads, min_time_s,
                                                       dram_bytes)]
        return {"where": "local", "figures": figures}
    from autotune.backends.remote import connect, device_memory_levels

    reach = target.reach
    session = connect(reach.host, reach.port, reach.key)
    try:
        figures = device_memory_levels(session, {
            "levels": [dataclasses.asdict(spec) for spec in specs], "threads": target.threads,
            "min_time_s": min_time_s, "dram_bytes": dram_bytes})
    except LookupError as error:
        return {"skipped": f"{error}; the TOML's estimates are kept"}
    return {"where": f"device {reach.key}", "figures": figures}


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

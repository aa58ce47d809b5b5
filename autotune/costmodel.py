"""The cost model: XGBoost trained on measured trials, predicting unmeasured configs.

One interface, four methods (``fit``, ``predict``, ``save``, ``load``). It learns from
features of the graph (per-layer operations and bytes), the config, the target's roofline
peaks and the roofline bound itself, and predicts:

- latency, as a log-latency regression relative to the layerwise roofline bound (each
  layer at its own roof, summed): the model learns the fraction of the roof a config
  attains, which carries over between models (on four zoo models the int8 kernels here
  run at 2.3-2.6x their layerwise bound, 2.4-3.8x the whole-model one). Only the memory
  regression sees features of the model's absolute size: with a handful of models in a
  store such a feature names a model, and the trees would answer an unseen model with the
  figures of the model nearest in size, not with what the configs share;
- peak memory, relative to a line fitted on the training trials (a runtime's base plus a
  multiple of the config's weight bytes: trees cannot extrapolate a model larger than every
  one they saw, a line can), task accuracy drop, and fidelity error (1 - cosine vs fp32,
  log-scaled: it spans orders of magnitude between fp32, bf16 and int8);
- the probability that a config fails (compile error, unsupported, ...): failed trials are
  counted and train this classifier, and never enter the regressions.

An ensemble of bootstrap members gives each prediction a spread, which the guided search
turns into an expected improvement. A fitted model carries its version: a hash of the
trials it learned from and the xgboost version. Predictions are predictions: callers store
them in the store's ``predictions`` table, never as trials.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autotune.backends import backend_names
from autotune.config import QuantConfig
from autotune.graph import GraphProfile, config_cost, kept_dtype
from autotune.pareto import FIDELITY_FLOOR
from autotune.roofline import Peaks, layerwise_bound_ms, roofline_bound
from autotune.target import Target
from autotune.trial import Trial

FORMAT_VERSION = 2
MEMORY_OFFSET_BYTES = 1 << 20
_WEIGHT_DTYPES = ("fp32", "fp16", "bf16", "int8", "uint8", "int4")
_ACTIVATION_DTYPES = ("fp32", "fp16", "bf16", "int8", "uint8", "int16")
_CALIBRATIONS = ("minmax", "percentile", "entropy", "mse")
_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_REGRESSIONS = ("latency", "memory", "accuracy", "fidelity")


@dataclass(frozen=True)
class Workload:
    """One thing to predict: a model's graph, a config, a backend and a target's peaks."""

    profile: GraphProfile
    config: QuantConfig
    backend: str
    target: Target
    peaks: Peaks | None


# Features of workloads seen before, by (profile and peaks identity, config, backend,
# target): a search refits on the whole store at every step, and the store's rows do not
# change. An entry keeps its profile and peaks, so their identities cannot be reused while
# it lives. Callers must not modify the dict ``features`` returns.
_FEATURE_CACHE: dict[tuple, tuple[GraphProfile, Peaks | None, dict[str, float]]] = {}
_FEATURE_CACHE_SIZE = 100_000


def features(workload: Workload) -> dict[str, float]:
    """Graph, config, roofline and target features of one workload, by name (cached)."""
    key = (id(workload.profile), id(workload.peaks), workload.config, workload.backend,
           workload.target.name, workload.target.threads)
    cached = _FEATURE_CACHE.get(key)
    if cached is not None and cached[0] is workload.profile and cached[1] is workload.peaks:
        return cached[2]
    if len(_FEATURE_CACHE) >= _FEATURE_CACHE_SIZE:
        _FEATURE_CACHE.clear()
    values = _features(workload)
    _FEATURE_CACHE[key] = (workload.profile, workload.peaks, values)
    return values


def _features(workload: Workload) -> dict[str, float]:
    profile, config, peaks = workload.profile, workload.config, workload.peaks
    cost = config_cost(profile, config)
    by_precision = cost.ops_by_precision
    total_ops = max(cost.ops, 1)
    compute = profile.compute_layers
    kept = [layer for layer in profile.layers if kept_dtype(layer, config) is not None]
    kept_macs = sum(layer.macs for layer in kept)
    compute_weight_bytes = sum(layer_cost.weight_bytes for layer, layer_cost
                               in zip(profile.layers, cost.layers, strict=True) if layer.compute)
    values: dict[str, float] = {
        "log_macs": _log(profile.macs),
        "log_parameters": _log(profile.parameters),
        "compute_layers": float(len(compute)),
        "layers": float(len(profile.layers)),
        "log_activation_elements": _log(sum(c for layer in profile.layers
                                            for _, c in layer.outputs)),
        "log_input_elements": _log(sum(c for _, c in profile.graph_inputs)),
        "log_ops": _log(cost.ops),
        "log_bytes": _log(cost.bytes),
        "log_weight_bytes": _log(cost.weight_bytes),
        # Peak memory's line (``memory_line``) takes the weights of compute layers (which a
        # runtime holds a few times: the file, the compiled blob, repacked kernels) apart
        # from the rest (embedding tables: read in place).
        "log_compute_weight_bytes": _log(compute_weight_bytes),
        "log_other_weight_bytes": _log(cost.weight_bytes - compute_weight_bytes),
        "log_intensity": _log(cost.intensity),
        "layers_kept_float": float(len(kept)),
        "kept_macs_fraction": kept_macs / max(profile.macs, 1),
        # What stays float, in scale-free terms: the kept share of the weights, and whether
        # the first and last compute layers (the usual sensitive ones) are kept. The output
        # error of a per-layer config follows these, not the model's size.
        "kept_weights_fraction": sum(layer.weight_elements for layer in kept)
        / max(sum(layer.weight_elements for layer in compute), 1),
        # The config's weight bytes over the fp32 model's: how much it compresses, the
        # scale-free form of log_weight_bytes.
        "weight_bytes_ratio": cost.weight_bytes / max(4.0 * sum(
            layer.weight_elements + layer.bias_elements for layer in profile.layers), 1.0),
        "first_layer_kept": float(bool(compute) and kept_dtype(compute[0], config) is not None),
        "last_layer_kept": float(bool(compute) and kept_dtype(compute[-1], config) is not None),
        "weight_symmetric": float(config.weight_scheme == "symmetric"),
        "activation_symmetric": float(config.activation_scheme == "symmetric"),
        "per_channel": float(config.granularity == "per_channel"),
        "per_group": float(config.granularity == "per_group"),
        # The algorithm dimension: NNCF's quantizer (SmoothQuant) leaves some MatMuls in
        # float, and data-aware int4 may keep other layers in int8.
        "smoothquant_alpha": config.smoothquant_alpha or 0.0,
        "bias_correction": float(config.bias_correction),
        "weight_algorithm_data_aware": float(config.weight_algorithm != "rtn"),
        # The share of weights NNCF puts in int4 (1 for plain int4; the rest stay int8).
        "int4_ratio": (config.int4_ratio or 1.0) if config.weight_dtype == "int4" else 0.0,
        "cores": float(workload.target.threads),
    }
    for precision in _PRECISIONS:
        values[f"{precision}_ops_fraction"] = by_precision.get(precision, 0) / total_ops
    values.update(_one_hot("weight", config.weight_dtype, _WEIGHT_DTYPES))
    values.update(_one_hot("activation", config.activation_dtype, _ACTIVATION_DTYPES))
    values.update(_one_hot("calibration", config.calibration, _CALIBRATIONS))
    # Which integer kernel a runtime picks depends on these together (e.g. OpenVINO runs
    # per-tensor asymmetric int8 weights, or int8 asymmetric activations, ~10x slower than
    # their neighbours on this host): crosses let a few dozen trials show it.
    values.update(_one_hot("weights", _weight_kind(config), _WEIGHT_KINDS))
    values.update(_one_hot("activations", _activation_kind(config), _ACTIVATION_KINDS))
    # One feature per registered backend (sorted names), so a new backend needs no edit here.
    values.update(_one_hot("backend", workload.backend, backend_names()))
    values.update(_roofline_features(cost, peaks))
    return values


_WEIGHT_KINDS = tuple(f"{scheme}-{granularity}" for scheme in ("symmetric", "asymmetric")
                      for granularity in ("per_tensor", "per_channel", "per_group"))
_ACTIVATION_KINDS = tuple(f"{dtype}-{scheme}" for dtype in ("int8", "uint8", "int16")
                          for scheme in ("symmetric", "asymmetric"))
# Calibration picks scales, never kernels: a split on it for latency or memory can only fit
# noise, so those regressions do not see it (accuracy and fidelity do).
_KERNEL_BLIND = {"latency", "memory"}
# A model's absolute size (and the absolute roofline times that follow from it): what the
# memory regression needs, and what the others, learning a fraction of the roof or what a
# config does to the outputs, must not see (see the module docstring). Leave-one-model-out
# on four zoo models, without them: latency MAPE 67/36/5/3% -> 4/15/1/1%, fidelity Spearman
# 0.40/0.49/0.94/0.52 -> 0.93/0.50/0.95/0.93 (benchmarks/costmodel.py).
_MODEL_SIZE = frozenset({
    "log_macs", "log_parameters", "compute_layers", "layers", "log_activation_elements",
    "log_input_elements", "log_ops", "log_bytes", "log_weight_bytes", "log_bound_ms",
    "log_compute_ms", "log_memory_ms", "log_layerwise_bound_ms", "log_compute_weight_bytes",
    "log_other_weight_bytes"})


def _weight_kind(config: QuantConfig) -> str | None:
    if not config.is_quantized:
        return None
    return f"{config.weight_scheme}-{config.granularity}"


def _activation_kind(config: QuantConfig) -> str | None:
    if not config.is_quantized or config.activation_scheme is None:
        return None
    return f"{config.activation_dtype}-{config.activation_scheme}"


def _roofline_features(cost, peaks: Peaks | None) -> dict[str, float]:
    if peaks is None:
        return {name: 0.0 for name in _ROOFLINE_FEATURES}
    bound = roofline_bound(cost.ops_by_precision, cost.bytes, peaks)
    return {
        "log_bound_ms": _log(bound.bound_ms),
        "log_compute_ms": _log(bound.compute_ms),
        "log_memory_ms": _log(bound.memory_ms),
        "memory_bound": float(bound.bound == "memory"),
        "log_layerwise_bound_ms": _log(layerwise_bound_ms(cost, peaks)),
        **{f"log_peak_{p}": _log(peaks.peak(p) or 0.0) for p in ("fp32", "bf16", "int8")},
        "log_bandwidth_gbs": _log(peaks.bandwidth_gbs or 0.0),
    }


_ROOFLINE_FEATURES = ("log_bound_ms", "log_compute_ms", "log_memory_ms", "memory_bound",
                      "log_layerwise_bound_ms", "log_peak_fp32", "log_peak_bf16",
                      "log_peak_int8", "log_bandwidth_gbs")


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -30.0


def _one_hot(prefix: str, value: str | None, choices: Sequence[str]) -> dict[str, float]:
    return {f"{prefix}_{choice}": float(value == choice) for choice in choices}


def reference_ms(workload: Workload) -> float:
    """What latency is regressed against: the layerwise roofline bound (a config keeping a
    memory-bound layer in fp32 pays for that layer's bytes, whatever the rest does), or
    1 GOPS without peaks."""
    cost = config_cost(workload.profile, workload.config)
    if workload.peaks is not None:
        bound = layerwise_bound_ms(cost, workload.peaks)
        if bound > 0:
            return bound
    return max(cost.ops, 1) / 1e6


def memory_reference(workload: Workload, line: tuple[float, float, float]) -> float:
    """Peak memory's reference for a workload: ``line``'s base plus its slopes times the
    config's weight bytes of compute layers and of the others."""
    base, per_compute_byte, per_other_byte = line
    compute, other = _weight_bytes(workload)
    return base + per_compute_byte * compute + per_other_byte * other


def _weight_bytes(workload: Workload) -> tuple[float, float]:
    row = features(workload)
    return tuple(value if value >= 1.0 else 0.0  # a feature's log of none is -30
                 for value in (math.exp(row["log_compute_weight_bytes"]),
                               math.exp(row["log_other_weight_bytes"])))


def memory_line(workloads: Sequence[Workload],
                trials: Sequence[Trial]) -> tuple[float, float, float]:
    """Non-negative least squares of measured peak memory on a base and the config's weight
    bytes of compute layers and of the others (a runtime holds its own base, then a few
    copies of the compute weights: the file, the compiled blob, repacked kernels; an
    embedding table is read in place); zeros without memory figures. Where the trials
    cannot tell the two apart (no model with embeddings: the other weights are a few
    constants, whose fitted slope could be anything), one slope of all weight bytes."""
    from scipy.optimize import nnls

    rows = [(1.0, *_weight_bytes(w), float(t.memory_bytes))
            for w, t in zip(workloads, trials, strict=True) if t.memory_bytes]
    if not rows:
        return 0.0, 0.0, 0.0
    table = np.array(rows)

    def fit(columns: np.ndarray) -> list[float]:
        scale = np.maximum(columns.max(axis=0), 1.0)  # columns of bytes: condition them
        return (nnls(columns / scale, table[:, 3])[0] / scale).tolist()

    base, per_compute_byte, per_other_byte = fit(table[:, :3])
    if per_other_byte > per_compute_byte:  # no runtime holds an embedding more than a kernel
        base, per_byte = fit(np.c_[table[:, 0], table[:, 1] + table[:, 2]])
        return base, per_byte, per_byte
    return base, per_compute_byte, per_other_byte


def data_version(trials: Sequence[Trial]) -> str:
    """A hash of the trials a model learned from (run, config, backend, target, status)."""
    keys = sorted(f"{t.run_id}/{t.config.id}/{t.backend}/{t.target}/{t.status}" for t in trials)
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


@dataclass
class Predictions:
    """Predicted figures per workload (ensemble means) and the members' latency and error
    samples ([members, workloads]) that an expected improvement integrates over."""

    latency_ms: np.ndarray
    memory_bytes: np.ndarray
    accuracy_drop: np.ndarray
    fidelity_error: np.ndarray
    failure_probability: np.ndarray
    latency_samples: np.ndarray
    accuracy_samples: np.ndarray
    fidelity_samples: np.ndarray

    def quality_samples(self, quality: str) -> np.ndarray:
        return self.fidelity_samples if quality == "fidelity" else self.accuracy_samples


@dataclass
class TrainingCounts:
    """How many trials a fit saw, and why some did not train the regressions."""

    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    ignored: int = 0  # unavailable, or ok without a latency


class XGBoostCostModel:
    """Gradient-boosted trees over ``features``; xgboost is imported only when used."""

    name = "xgboost"

    def __init__(self, members: int = 5, rounds: int = 150, max_depth: int = 4,
                 learning_rate: float = 0.1, seed: int = 0) -> None:
        self.members = members
        self.rounds = rounds
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.seed = seed
        self.feature_names: list[str] = []
        self.boosters: dict[str, list] = {}
        self.constants: dict[str, float] = {}  # targets with too little data to learn
        # Peak memory's reference (``memory_line``): base bytes, then bytes per weight byte
        # of compute layers and of the other layers.
        self.memory_line: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.counts = TrainingCounts()
        self.version = ""

    # The interface

    def fit(self, workloads: Sequence[Workload], trials: Sequence[Trial]) -> None:
        """Learn from measured ``trials`` (aligned with ``workloads``; failures included)."""
        import xgboost

        if len(workloads) != len(trials):
            raise ValueError(f"{len(workloads)} workloads for {len(trials)} trials")
        rows = [features(w) for w in workloads]
        self.feature_names = sorted(rows[0]) if rows else []
        matrix = self._matrix(rows)
        self.counts, self.boosters, self.constants = TrainingCounts(), {}, {}
        ok_index = []
        for index, trial in enumerate(trials):
            if trial.ok and trial.latency_ms:
                ok_index.append(index)
                self.counts.ok += 1
            elif trial.failed:
                self.counts.failed[trial.status] = self.counts.failed.get(trial.status, 0) + 1
            else:
                self.counts.ignored += 1
        self.memory_line = memory_line([workloads[i] for i in ok_index],
                                       [trials[i] for i in ok_index])
        targets = self._targets([workloads[i] for i in ok_index], [trials[i] for i in ok_index],
                                self.memory_line)
        for name, (rows_used, values) in targets.items():
            self._fit_regression(name, self._view(name, matrix)[
                np.asarray(ok_index, dtype=int)][rows_used], values)
        self._fit_failure(matrix, trials)
        used = [t for t in trials if t.ok or t.failed]
        self.version = f"{data_version(used)}-xgboost{xgboost.__version__}"

    def predict(self, workloads: Sequence[Workload]) -> Predictions:
        """Predicted latency, memory, accuracy drop, fidelity error and failure probability."""
        if not self.feature_names:
            raise ValueError("the cost model is not fitted")
        matrix = self._matrix([features(w) for w in workloads])
        reference = np.array([reference_ms(w) for w in workloads])
        latency = np.exp(self._members("latency", matrix)) * reference
        memory_at = np.array([memory_reference(w, self.memory_line) for w in workloads])
        memory = (np.exp(self._members("memory", matrix)) * (memory_at + MEMORY_OFFSET_BYTES)
                  - MEMORY_OFFSET_BYTES)
        accuracy = self._members("accuracy", matrix)
        fidelity = np.maximum(10.0 ** self._members("fidelity", matrix) - FIDELITY_FLOOR, 0.0)
        failure = self._members("failure", matrix, single=True).mean(axis=0)
        # The point latency is the members' median: one bootstrap member that drew an
        # unlucky resample of a few dozen trials must not drag it.
        return Predictions(np.median(latency, axis=0), np.maximum(memory.mean(axis=0), 0.0),
                           accuracy.mean(axis=0), fidelity.mean(axis=0), failure,
                           latency, accuracy, fidelity)

    def save(self, path: Path) -> None:
        """One JSON file: settings, version, counts and every booster in xgboost's JSON."""
        data = {"format": FORMAT_VERSION, "name": self.name, "version": self.version,
                "settings": {"members": self.members, "rounds": self.rounds,
                             "max_depth": self.max_depth, "learning_rate": self.learning_rate,
                             "seed": self.seed},
                "feature_names": self.feature_names, "constants": self.constants,
                "memory_line": list(self.memory_line),
                "counts": {"ok": self.counts.ok, "failed": self.counts.failed,
                           "ignored": self.counts.ignored},
                "boosters": {name: [bytes(b.save_raw("json")).decode() for b in members]
                             for name, members in self.boosters.items()}}
        Path(path).write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> XGBoostCostModel:
        import xgboost

        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT_VERSION or data.get("name") != cls.name:
            raise ValueError(f"{path}: not an autotune xgboost cost model (format "
                             f"{data.get('format')!r})")
        model = cls(**data["settings"])
        model.version = data["version"]
        model.feature_names = data["feature_names"]
        model.constants = data["constants"]
        model.memory_line = tuple(data["memory_line"])
        model.counts = TrainingCounts(**data["counts"])
        for name, members in data["boosters"].items():
            model.boosters[name] = []
            for raw in members:
                booster = xgboost.Booster()
                booster.load_model(bytearray(raw.encode()))
                model.boosters[name].append(booster)
        return model

    # Helpers

    def _matrix(self, rows: list[dict[str, float]]) -> np.ndarray:
        return np.array([[row[name] for name in self.feature_names] for row in rows],
                        dtype=np.float64).reshape(len(rows), len(self.feature_names))

    @staticmethod
    def _targets(workloads: Sequence[Workload], trials: Sequence[Trial],
                 line: tuple[float, float, float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per regression, which ok trials carry its figure and the transformed values."""
        columns: dict[str, list[tuple[int, float]]] = {name: [] for name in _REGRESSIONS}
        for index, (workload, trial) in enumerate(zip(workloads, trials, strict=True)):
            columns["latency"].append(
                (index, math.log(trial.latency_ms / reference_ms(workload))))
            if trial.memory_bytes is not None:
                columns["memory"].append((index, math.log(
                    (trial.memory_bytes + MEMORY_OFFSET_BYTES)
                    / (memory_reference(workload, line) + MEMORY_OFFSET_BYTES))))
            if trial.accuracy_drop is not None:
                columns["accuracy"].append((index, trial.accuracy_drop))
            error = trial.fidelity_error
            if error is not None:
                columns["fidelity"].append((index, math.log10(error + FIDELITY_FLOOR)))
        return {name: (np.array([i for i, _ in pairs], dtype=int),
                       np.array([v for _, v in pairs], dtype=np.float64))
                for name, pairs in columns.items()}

    def _params(self, member: int, objective: str) -> dict:
        return {"objective": objective, "max_depth": self.max_depth, "eta": self.learning_rate,
                "min_child_weight": 0.01 if objective == "binary:logistic" else 1.0,
                "lambda": 1.0, "nthread": 1, "seed": self.seed * 1000 + member,
                "verbosity": 0}

    def _fit_regression(self, name: str, matrix: np.ndarray, values: np.ndarray) -> None:

        if len(values) < 2 or np.ptp(values) == 0:
            # Nothing to learn yet (no or constant data): predict the mean, or nothing.
            self.constants[name] = float(values.mean()) if len(values) else 0.0
            return
        rng = np.random.default_rng(self.seed)
        self.boosters[name] = []
        for member in range(self.members):
            # Member 0 sees every trial; the others a bootstrap resample (their spread is
            # the model's uncertainty).
            rows = (np.arange(len(values)) if member == 0
                    else rng.integers(0, len(values), len(values)))
            self.boosters[name].append(self._train(
                self._params(member, "reg:squarederror"), matrix[rows], values[rows]))

    def _fit_failure(self, matrix: np.ndarray, trials: Sequence[Trial]) -> None:

        used = [i for i, t in enumerate(trials) if t.ok or t.failed]
        labels = np.array([0.0 if trials[i].ok else 1.0 for i in used])
        if len(labels) == 0 or labels.min() == labels.max():
            rate = float(labels.mean()) if len(labels) else 0.0
            self.constants["failure"] = rate
            return
        self.boosters["failure"] = [self._train(self._params(0, "binary:logistic"),
                                                matrix[np.asarray(used)], labels)]

    def _train(self, params: dict, matrix: np.ndarray, labels: np.ndarray):
        """One booster. Its training data carries no feature names (xgboost checks them at
        every round: a third of the fit on a few thousand trials); the booster gets them
        after, so a saved model and ``predict`` still check them."""
        import xgboost

        booster = xgboost.train(params, xgboost.DMatrix(matrix, label=labels), self.rounds)
        booster.feature_names = list(self.feature_names)
        return booster

    def _members(self, name: str, matrix: np.ndarray, single: bool = False) -> np.ndarray:
        """[members, rows] predictions of one target (a constant repeats for every member;
        ``single``: a target learned by one booster, not an ensemble)."""
        if name not in self.boosters:
            value = self.constants.get(name, 0.0)
            return np.full((1 if single else self.members, len(matrix)), value)
        import xgboost

        data = xgboost.DMatrix(self._view(name, matrix), feature_names=self.feature_names)
        return np.stack([booster.predict(data) for booster in self.boosters[name]])

    def _view(self, name: str, matrix: np.ndarray) -> np.ndarray:
        """The features regression ``name`` may split on (the others held constant)."""
        blind = [i for i, feature in enumerate(self.feature_names)
                 if (name in _KERNEL_BLIND and feature.startswith("calibration_"))
                 or (name != "memory" and feature in _MODEL_SIZE)]
        if not blind:
            return matrix
        view = matrix.copy()
        view[:, blind] = 0.0
        return view


# Validation on held-out trials


@dataclass(frozen=True)
class Validation:
    """How well predictions rank and match measured latencies of trials the model never saw."""

    train: int
    test: int
    spearman: float
    mape: float  # mean absolute percentage error of latency, a fraction
    memory_mape: float | None
    fidelity_spearman: float | None
    # Per model: (held-out trials, Spearman, MAPE) among that model's trials alone: what
    # picking a config for one deployment needs (pooled ranks also reward telling a big
    # model from a small one).
    within_model: dict[str, tuple[int, float | None, float]] = field(default_factory=dict)
    # TenSet's peak@1 and peak@5 within each model, averaged over the models: the true best
    # latency over the best among the configs predicted fastest (1.0: the pick is the best).
    peak_at_1: float | None = None
    peak_at_5: float | None = None


def peak_at(predicted: np.ndarray, measured: np.ndarray, k: int) -> float:
    """TenSet's peak@k of one model's configs: its fastest measured latency over the fastest
    measured among the ``k`` configs predicted fastest."""
    top = np.argsort(predicted, kind="stable")[:k]
    return float(measured.min() / measured[top].min())


def validate(model: XGBoostCostModel, train: Sequence[tuple[Workload, Trial]],
             test: Sequence[tuple[Workload, Trial]]) -> Validation:
    """Fit on ``train``, score latency (and memory, fidelity) predictions on ``test``'s ok
    trials."""
    from scipy.stats import spearmanr

    model.fit([w for w, _ in train], [t for _, t in train])
    scored = [(w, t) for w, t in test if t.ok and t.latency_ms]
    predicted = model.predict([w for w, _ in scored])
    measured = np.array([t.latency_ms for _, t in scored])
    spearman = float(spearmanr(predicted.latency_ms, measured).statistic)
    mape = float(np.mean(np.abs(predicted.latency_ms - measured) / measured))
    memory = [(p, t.memory_bytes) for p, (_, t) in zip(predicted.memory_bytes, scored,
                                                       strict=True) if t.memory_bytes]
    memory_mape = (float(np.mean([abs(p - m) / m for p, m in memory])) if memory else None)
    errors = [(p, t.fidelity_error) for p, (_, t) in zip(predicted.fidelity_error, scored,
                                                          strict=True)
              if t.fidelity_error is not None]
    fidelity = (float(spearmanr([p for p, _ in errors], [e for _, e in errors]).statistic)
                if len(errors) > 2 else None)
    within, peaks = {}, {1: [], 5: []}
    for name in sorted({t.model for _, t in scored}):
        mask = np.array([t.model == name for _, t in scored])
        rho = (float(spearmanr(predicted.latency_ms[mask], measured[mask]).statistic)
               if mask.sum() > 2 else None)
        within[name] = (int(mask.sum()), rho, float(np.mean(
            np.abs(predicted.latency_ms[mask] - measured[mask]) / measured[mask])))
        for k, values in peaks.items():
            if mask.sum() > k:  # with k configs or fewer the top k holds the best by itself
                values.append(peak_at(predicted.latency_ms[mask], measured[mask], k))
    return Validation(len(train), len(scored), spearman, mape, memory_mape, fidelity, within,
                      *(float(np.mean(v)) if v else None for v in peaks.values()))

"""Search spaces: TOML files that list the axes of quantization configs to try."""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from autotune.config import (
    ACTIVATION_DTYPES,
    CALIBRATIONS,
    DYNAMIC_ACTIVATION_DTYPES,
    FLOAT_DTYPES,
    FP32,
    GRANULARITIES,
    SCHEMES,
    ConfigError,
    QuantConfig,
    algorithm_fields,
)
from autotune.errors import InputError
from autotune.paths import SPACES, named_files, resolve_named_file
from autotune.tomlfile import Table, read_toml

INTEGER_WEIGHT_DTYPES = ("int8", "uint8", "int4")
# Calibrated integer activations ([integer]); dynamic ones go with [weight_only]'s weights.
INTEGER_ACTIVATION_DTYPES = tuple(d for d in ACTIVATION_DTYPES
                                  if d not in (*FLOAT_DTYPES, *DYNAMIC_ACTIVATION_DTYPES))


@dataclass(frozen=True)
class MixedPolicy:
    """Mixed precision: keep the k most sensitive layers of each base config in fp32.

    The ranking is a per-layer sensitivity scan of the model (``autotune.sensitivity``), or
    ``layers`` given in the TOML, most sensitive first; the configs exist once the model is
    known (``autotune.sensitivity.expand_mixed``).
    """

    bases: tuple[QuantConfig, ...]
    max_kept: int
    subsets: str = "prefix"  # "prefix": top-1..top-K; "all": every subset of the top K
    layers: tuple[str, ...] = ()


# 2^62 configs per base still fit len(); a model with more layer groups needs max_groups.
MAX_GROUPS = 62


@dataclass(frozen=True)
class PerLayerPolicy:
    """Per-layer mixed precision: every assignment of {quantized as the base, kept in fp32}
    to the model's layer groups (``autotune.graph.layer_groups``), per base config.

    ``rank`` orders the groups ("sensitivity": a per-layer scan of the model, a group as
    sensitive as its most sensitive layer; "macs": the groups with the most
    multiply-accumulates first, where the latency is); ``max_groups`` keeps the first of
    them to decide, the others stay quantized. Only fp32 is the other choice: a layer in
    int8 per tensor next to one in int8 per channel, or int8 activations here and int4
    weight-only there, is no single pass of onnxruntime's or NNCF's quantizers.
    """

    bases: tuple[QuantConfig, ...]
    max_groups: int | None = None
    rank: str = "sensitivity"


@dataclass(frozen=True)
class SearchSpace:
    """A named, ordered set of configs (fp32 first: it is every other config's baseline).

    ``configs`` is a tuple, or a ``ConfigSequence`` once a per-layer space is expanded for
    a model: thousands of configs, made on demand from their index.
    """

    name: str
    description: str
    configs: Sequence[QuantConfig]
    path: Path | None = None
    mixed: MixedPolicy | None = None  # mixed configs still to add for a given model
    per_layer: PerLayerPolicy | None = None  # per-layer configs still to add for a model
    # Backends that measure only some configs (``[backends.NAME] configs``): a backend
    # that tunes each kernel family for minutes can measure one config per family.
    backend_configs: Mapping[str, frozenset[QuantConfig]] = field(default_factory=dict)

    def backend_space(self, backend: str) -> Sequence[QuantConfig]:
        """The configs ``backend`` measures, in space order (lazy when the space is)."""
        only = self.backend_configs.get(backend)
        if only is None:
            return self.configs
        return tuple(sorted(only, key=self.configs.index))

    @property
    def size(self) -> int | None:
        """How many configs the space holds; None while that depends on the model (a
        ``[mixed]`` or ``[per_layer]`` table not yet expanded)."""
        return None if self.mixed is not None or self.per_layer is not None else len(
            self.configs)


class LazySequence(Sequence):
    """A sequence whose items are made from their index on demand (``_item``) and found by
    value (``find``), so a space of 10^5 configs or candidates is never a list."""

    def _item(self, index: int):
        raise NotImplementedError

    def find(self, value) -> int | None:
        """The index of ``value``, or None when the sequence does not hold it."""
        raise NotImplementedError

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} of {len(self)}")
        return self._item(index)

    def index(self, value, start: int = 0, stop: int | None = None) -> int:
        found = self.find(value)
        # start and stop as list.index reads them: negative ones count from the end.
        start, stop, _ = slice(start, stop).indices(len(self))
        if found is None or not start <= found < stop:
            raise ValueError(f"{getattr(value, 'text', value)} is not in the space")
        return found

    def __contains__(self, value) -> bool:
        return self.find(value) is not None


class PerLayerConfigs(LazySequence):
    """The per-layer configs of one base: config ``index`` keeps the groups whose bit is set
    in ``index`` in fp32 (bit 0: the first group). Index 0 is the base itself. When the
    groups cover every compute layer the all-kept index is left out (that is the fp32
    model). Nothing is listed: a config is made from its index, and back.
    """

    def __init__(self, base: QuantConfig, groups: Sequence[Sequence[str]],
                 covers_model: bool) -> None:
        self.base = base
        self.groups = tuple(tuple(group) for group in groups)
        self._count = (1 << len(self.groups)) - (1 if covers_model else 0)
        self._group_of = {layer: bit for bit, group in enumerate(self.groups)
                          for layer in group}

    def __len__(self) -> int:
        return self._count

    def _item(self, index: int) -> QuantConfig:
        kept = [layer for bit, group in enumerate(self.groups) if index >> bit & 1
                for layer in group]
        return replace(self.base, overrides=tuple((layer, "fp32") for layer in kept))

    def find(self, config) -> int | None:
        if not isinstance(config, QuantConfig) or replace(config, overrides=()) != self.base:
            return None
        bits = set()
        for layer, dtype in config.overrides:
            if dtype != "fp32" or layer not in self._group_of:
                return None
            bits.add(self._group_of[layer])
        index = sum(1 << bit for bit in bits)
        if index >= len(self) or self[index] != config:  # a group kept only in part
            return None
        return index

    def __iter__(self) -> Iterator[QuantConfig]:
        return (self[index] for index in range(len(self)))

    def neighbours(self, config: QuantConfig) -> list[QuantConfig]:
        """The configs one group away from ``config`` (one more or one fewer kept)."""
        index = self.find(config)
        if index is None:
            return []
        flipped = (index ^ (1 << bit) for bit in range(len(self.groups)))
        return [self[other] for other in flipped if other < len(self)]


class ConfigSequence(LazySequence):
    """Listed configs followed by per-layer blocks, as one sequence that lists nothing:
    ``len()``, index -> config, membership, and seeded sampling without replacement."""

    def __init__(self, listed: Sequence[QuantConfig], blocks: Sequence[PerLayerConfigs]) -> None:
        # One block per base: a base named twice would list each of its configs twice.
        first: dict[QuantConfig, PerLayerConfigs] = {}
        for block in blocks:
            first.setdefault(block.base, block)
        self.blocks = tuple(first.values())
        # A base is its block's index 0: the listed part does not repeat it.
        self.listed = tuple(c for c in listed if not any(c in b for b in self.blocks))
        self._starts = list(itertools.accumulate([len(self.listed),
                                                  *(len(b) for b in self.blocks)]))
        countable(self._starts[-1], "configs")

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def uniform(self) -> tuple[QuantConfig, ...]:
        """The configs that keep no layer in fp32 by choice: the listed ones and each base."""
        return (*self.listed, *(block.base for block in self.blocks))

    def _item(self, index: int) -> QuantConfig:
        if index < len(self.listed):
            return self.listed[index]
        block = next(b for b, start in enumerate(self._starts[1:]) if index < start)
        return self.blocks[block][index - self._starts[block]]

    def find(self, config) -> int | None:
        if config in self.listed:
            return self.listed.index(config)
        return next((self._starts[b] + at for b, block in enumerate(self.blocks)
                     if (at := block.find(config)) is not None), None)

    def __iter__(self) -> Iterator[QuantConfig]:
        yield from self.listed
        for block in self.blocks:
            yield from block

    def neighbours(self, config: QuantConfig) -> list[QuantConfig]:
        """The per-layer configs one group away from ``config`` (none for a listed one)."""
        return [other for block in self.blocks for other in block.neighbours(config)]

    def sample(self, count: int, seed: int = 0) -> list[QuantConfig]:
        """``count`` distinct configs drawn at random (seeded), without listing the others."""
        indices = random.Random(seed).sample(range(len(self)), min(count, len(self)))
        return [self[index] for index in indices]


def countable(total: int, what: str) -> int:
    """``total``, if ``len()`` can return it (at most 2^63 - 1); else the space is too large
    for any search here: a clear error rather than Python's OverflowError."""
    if total > sys.maxsize:
        raise InputError(f"per_layer: {total:,} {what} (2^{total.bit_length() - 1} or more), "
                         f"more than a search can count; lower max_groups")
    return total


def load_space(name_or_path: str) -> SearchSpace:
    path = resolve_named_file(name_or_path, SPACES)
    return parse_space(read_toml(path), path)


def configs_space(texts) -> SearchSpace:
    """The space of configs given by canonical text (``--config``), fp32 first as the
    baseline the others are judged against."""
    configs = [FP32]
    for text in texts:
        try:
            configs.append(QuantConfig.from_text(text))
        except ConfigError as error:
            raise InputError(f"--config {text!r}: {error}") from None
    return SearchSpace("custom", "configs given with --config", tuple(dict.fromkeys(configs)))


def known_spaces() -> list[SearchSpace]:
    """Every search space a NAME finds: the user's folders first, then the built-in ones."""
    return [load_space(str(file.path)) for file in named_files(SPACES).values()]


def parse_space(data: dict, path: Path) -> SearchSpace:
    top = Table(data, path)
    description = top.get("description", str, "")
    configs: list[QuantConfig] = [QuantConfig()]

    floats = top.table("float")
    for dtype in floats.get_list("dtypes", FLOAT_DTYPES, []):
        configs.append(QuantConfig(weight_dtype=dtype, activation_dtype=dtype))
    floats.finish()

    integer = top.table("integer")
    if integer:
        axes = [
            integer.get_list("weight_dtypes", INTEGER_WEIGHT_DTYPES),
            integer.get_list("activation_dtypes", INTEGER_ACTIVATION_DTYPES),
            integer.get_list("weight_schemes", SCHEMES, ["symmetric"]),
            integer.get_list("activation_schemes", SCHEMES),
            integer.get_list("granularities", GRANULARITIES),
            integer.get_list("calibrations", CALIBRATIONS),
        ]
        group_sizes = _group_sizes(integer)
        keep_float = _keep_float(integer)
        algorithms = _algorithms(integer)
        for weight, act, w_scheme, a_scheme, granularity, calibration in itertools.product(*axes):
            for group_size, kept, algorithm in itertools.product(
                    group_sizes if granularity == "per_group" else [None], keep_float,
                    algorithms):
                configs.append(_make(integer.where("*"), weight_dtype=weight,
                                     activation_dtype=act, weight_scheme=w_scheme,
                                     activation_scheme=a_scheme, granularity=granularity,
                                     group_size=group_size, calibration=calibration,
                                     overrides=kept, **algorithm))
    integer.finish()

    # Weight-only: integer weights, float activations (nothing to calibrate), e.g. int4 per
    # group for MatMul-heavy models; a backend without a weight compressor reports unsupported.
    weight_only = top.table("weight_only")
    if weight_only:
        axes = [
            weight_only.get_list("weight_dtypes", INTEGER_WEIGHT_DTYPES),
            weight_only.get_list("weight_schemes", SCHEMES, ["symmetric"]),
            weight_only.get_list("granularities", GRANULARITIES),
            weight_only.get_list("activation_dtypes", (*FLOAT_DTYPES, *DYNAMIC_ACTIVATION_DTYPES),
                                 ["fp32"]),
        ]
        group_sizes = _group_sizes(weight_only)
        algorithms = _algorithms(weight_only)
        for weight, w_scheme, granularity, act in itertools.product(*axes):
            for group_size, algorithm in itertools.product(
                    group_sizes if granularity == "per_group" else [None], algorithms):
                configs.append(_make(weight_only.where("*"), weight_dtype=weight,
                                     activation_dtype=act, weight_scheme=w_scheme,
                                     granularity=granularity, group_size=group_size,
                                     **algorithm))
    weight_only.finish()
    mixed = _mixed_policy(top.table("mixed"))
    if mixed is not None:
        configs += mixed.bases  # each base is also measured as it is, uniform
    per_layer = _per_layer_policy(top.table("per_layer"))
    if per_layer is not None:
        configs += per_layer.bases
    unique = tuple(dict.fromkeys(configs))
    backend_configs = _backend_configs(top.table("backends"), unique)
    top.finish()
    return SearchSpace(name=path.stem, description=description, configs=unique, path=path,
                       mixed=mixed, per_layer=per_layer, backend_configs=backend_configs)


def _backend_configs(table: Table, configs: tuple[QuantConfig, ...],
                     ) -> dict[str, frozenset[QuantConfig]]:
    """``[backends.NAME] configs = [TEXT, ...]``: the configs of the space NAME measures
    (fp32, every config's baseline, always among them)."""
    from autotune.backends import backend_names

    found = {}
    for name in table.keys():
        if name not in backend_names():
            raise InputError(f"{table.where(name)}: unknown backend; expected one of "
                             f"{', '.join(backend_names())}")
        entry = table.table(name)
        chosen = {QuantConfig()}
        for index, text in enumerate(entry.get_list("configs")):
            try:
                config = QuantConfig.from_text(str(text))
            except ConfigError as error:
                raise InputError(f"{entry.where('configs')}[{index}]: {error}") from None
            if config not in configs:
                raise InputError(f"{entry.where('configs')}[{index}]: {text!r} is not a "
                                 f"config of this space")
            chosen.add(config)
        entry.finish()
        found[name] = frozenset(chosen)
    return found


def _mixed_policy(table: Table) -> MixedPolicy | None:
    if not table:
        return None
    bases = _bases(table)
    max_kept = table.get("max_kept", int)
    if max_kept <= 0:
        raise InputError(f"{table.where('max_kept')}: must be a positive number of layers")
    subsets = table.get("subsets", str, "prefix", choices=("prefix", "all"))
    layers = table.get_list("layers", None, [])
    if not all(isinstance(layer, str) and layer for layer in layers):
        raise InputError(f"{table.where('layers')}: must be a list of ONNX node names")
    table.finish()
    return MixedPolicy(tuple(bases), max_kept, subsets, tuple(layers))


def _per_layer_policy(table: Table) -> PerLayerPolicy | None:
    if not table:
        return None
    bases = _bases(table)
    max_groups = table.get("max_groups", int, None)
    if max_groups is not None and not 0 < max_groups <= MAX_GROUPS:
        raise InputError(f"{table.where('max_groups')}: must be a number of groups from 1 to "
                         f"{MAX_GROUPS}")
    rank = table.get("rank", str, "sensitivity", choices=("sensitivity", "macs"))
    table.finish()
    return PerLayerPolicy(tuple(bases), max_groups, rank)


def _bases(table: Table) -> list[QuantConfig]:
    """``bases``: the integer configs whose layers a mixed space keeps in fp32 or not."""
    bases = []
    for index, text in enumerate(table.get_list("bases")):
        try:
            base = QuantConfig.from_text(str(text))
        except ConfigError as error:
            raise InputError(f"{table.where('bases')}[{index}]: {error}") from None
        if base.is_float or base.activation_scheme is None or base.overrides:
            raise InputError(f"{table.where('bases')}[{index}]: a base must quantize weights "
                             f"and activations and keep no layer yet; got {text!r}")
        bases.append(base)
    return bases


def _keep_float(table: Table) -> list[tuple[tuple[str, str], ...]]:
    """``keep_float``: variants of what stays in float, each a list of node names or
    ``op:TYPE`` (every node of that op type), e.g. ``[[], ["op:Softmax", "op:Add"]]``."""
    variants = table.get_list("keep_float", None, [[]])
    kept = []
    for index, variant in enumerate(variants):
        if not isinstance(variant, list) or not all(isinstance(v, str) and v for v in variant):
            raise InputError(f"{table.where('keep_float')}[{index}]: must be a list of node "
                             f"names or op:TYPE selectors; got {variant!r}")
        kept.append(tuple((layer, "fp32") for layer in variant))
    return kept


def _algorithms(table: Table) -> list[dict]:
    """``algorithms``: variants by their canonical text, e.g. ``["rtn", "bc", "sq0.75"]``
    (rtn: round to nearest, the default; see ``QuantConfig.algorithm_text``)."""
    variants = table.get_list("algorithms", None, ["rtn"])
    found = []
    for index, text in enumerate(variants):
        try:
            if not isinstance(text, str):
                raise ConfigError(f"must be an algorithm text such as \"sq0.75+bc\"; "
                                  f"got {text!r}")
            found.append(algorithm_fields(text))
        except ConfigError as error:
            raise InputError(f"{table.where('algorithms')}[{index}]: {error}") from None
    return found


def _group_sizes(table: Table) -> list[int]:
    group_sizes = table.get_list("group_sizes", None, [128])
    for index, size in enumerate(group_sizes):
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise InputError(f"{table.where('group_sizes')}[{index}]: must be a positive "
                             f"integer; got {size!r}")
    return group_sizes


def _make(where: str, **fields) -> QuantConfig:
    try:
        return QuantConfig(**fields)
    except ConfigError as error:
        raise InputError(f"{where}: {error}") from None

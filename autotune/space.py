"""Search spaces: TOML files that list the axes of quantization configs to try."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class SearchSpace:
    """A named, ordered set of configs (fp32 first: it is every other config's baseline)."""

    name: str
    description: str
    configs: tuple[QuantConfig, ...]
    path: Path | None = None
    mixed: MixedPolicy | None = None  # mixed configs still to add for a given model
    # Backends that measure only some configs (``[backends.NAME] configs``): a backend
    # that tunes each kernel family for minutes can measure one config per family.
    backend_configs: Mapping[str, frozenset[QuantConfig]] = field(default_factory=dict)

    def measures(self, backend: str, config: QuantConfig) -> bool:
        """Whether ``backend`` measures ``config`` in this space."""
        only = self.backend_configs.get(backend)
        return only is None or config in only


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
    unique = tuple(dict.fromkeys(configs))
    backend_configs = _backend_configs(top.table("backends"), unique)
    top.finish()
    return SearchSpace(name=path.stem, description=description, configs=unique, path=path,
                       mixed=mixed, backend_configs=backend_configs)


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
    max_kept = table.get("max_kept", int)
    if max_kept <= 0:
        raise InputError(f"{table.where('max_kept')}: must be a positive number of layers")
    subsets = table.get("subsets", str, "prefix", choices=("prefix", "all"))
    layers = table.get_list("layers", None, [])
    if not all(isinstance(layer, str) and layer for layer in layers):
        raise InputError(f"{table.where('layers')}: must be a list of ONNX node names")
    table.finish()
    return MixedPolicy(tuple(bases), max_kept, subsets, tuple(layers))


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

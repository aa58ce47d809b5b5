"""Search spaces: TOML files that list the axes of quantization configs to try."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from autotune.config import (
    ACTIVATION_DTYPES,
    CALIBRATIONS,
    FLOAT_DTYPES,
    GRANULARITIES,
    SCHEMES,
    ConfigError,
    QuantConfig,
)
from autotune.errors import InputError
from autotune.paths import SPACES_DIR, resolve_named_file
from autotune.tomlfile import Table, read_toml

INTEGER_WEIGHT_DTYPES = ("int8", "uint8", "int4")
INTEGER_ACTIVATION_DTYPES = tuple(d for d in ACTIVATION_DTYPES if d not in FLOAT_DTYPES)


@dataclass(frozen=True)
class SearchSpace:
    """A named, ordered set of configs (fp32 first: it is every other config's baseline)."""

    name: str
    description: str
    configs: tuple[QuantConfig, ...]
    path: Path | None = None


def load_space(name_or_path: str) -> SearchSpace:
    path = resolve_named_file(name_or_path, SPACES_DIR, "search space")
    return parse_space(read_toml(path), path)


def builtin_spaces() -> list[SearchSpace]:
    return [load_space(str(path)) for path in sorted(SPACES_DIR.glob("*.toml"))]


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
        group_sizes = integer.get_list("group_sizes", None, [128])
        for index, size in enumerate(group_sizes):
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise InputError(f"{integer.where('group_sizes')}[{index}]: must be a positive "
                                 f"integer; got {size!r}")
        for weight, act, w_scheme, a_scheme, granularity, calibration in itertools.product(*axes):
            for group_size in group_sizes if granularity == "per_group" else [None]:
                configs.append(_make(integer.where("*"), weight_dtype=weight,
                                     activation_dtype=act, weight_scheme=w_scheme,
                                     activation_scheme=a_scheme, granularity=granularity,
                                     group_size=group_size, calibration=calibration))
    integer.finish()
    top.finish()
    unique = tuple(dict.fromkeys(configs))
    return SearchSpace(name=path.stem, description=description, configs=unique, path=path)


def _make(where: str, **fields) -> QuantConfig:
    try:
        return QuantConfig(**fields)
    except ConfigError as error:
        raise InputError(f"{where}: {error}") from None

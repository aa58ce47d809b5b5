"""QuantConfig: one point of the quantization search space.

A config is immutable and hashable and has one canonical text form, so the same config
is the same row in every run, on every machine, and in every later version of the suite.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

FLOAT_DTYPES = ("fp32", "fp16", "bf16")
WEIGHT_DTYPES = (*FLOAT_DTYPES, "int8", "uint8", "int4")
ACTIVATION_DTYPES = (*FLOAT_DTYPES, "int8", "uint8", "int16")
SCHEMES = ("symmetric", "asymmetric")
GRANULARITIES = ("per_tensor", "per_channel", "per_group")
CALIBRATIONS = ("minmax", "percentile", "entropy", "mse")

_SHORT = {"symmetric": "sym", "asymmetric": "asym"}
_LONG = {v: k for k, v in _SHORT.items()}


class ConfigError(ValueError):
    """A config that cannot exist (e.g. int8 weights without a calibration method)."""


@dataclass(frozen=True)
class QuantConfig:
    """What to quantize, to which dtype, and how the ranges are chosen.

    Float configs (fp32, fp16, bf16 for weights and activations alike) carry no scheme,
    granularity or calibration: those fields are None, so two spellings of "fp32" are one
    config. ``overrides`` maps layer (ONNX node) names to the weight dtype that layer keeps
    instead, e.g. ``(("conv1", "fp32"),)`` for mixed precision; it is stored sorted.
    """

    weight_dtype: str = "fp32"
    activation_dtype: str = "fp32"
    weight_scheme: str | None = None
    activation_scheme: str | None = None
    granularity: str | None = None
    group_size: int | None = None
    calibration: str | None = None
    overrides: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_choice("weight_dtype", self.weight_dtype, WEIGHT_DTYPES)
        _check_choice("activation_dtype", self.activation_dtype, ACTIVATION_DTYPES)
        if self.is_float:
            if self.weight_dtype != self.activation_dtype:
                raise ConfigError(
                    f"float configs use one dtype for weights and activations, got "
                    f"weights {self.weight_dtype} and activations {self.activation_dtype}"
                )
            extra = {
                name: getattr(self, name)
                for name in ("weight_scheme", "activation_scheme", "granularity", "group_size",
                             "calibration")
                if getattr(self, name) is not None
            }
            if extra or self.overrides:
                raise ConfigError(f"float config {self.weight_dtype} takes no "
                                  f"{sorted(extra) or 'overrides'}")
            return
        if self.weight_dtype in FLOAT_DTYPES:
            raise ConfigError(
                f"integer activations ({self.activation_dtype}) need integer weights, "
                f"got {self.weight_dtype}"
            )
        _check_choice("weight_scheme", self.weight_scheme, SCHEMES)
        _check_choice("granularity", self.granularity, GRANULARITIES)
        if self.activation_dtype in FLOAT_DTYPES:
            # Weight-only quantization: activations stay float, nothing to calibrate.
            if self.activation_scheme is not None or self.calibration is not None:
                raise ConfigError("weight-only configs take no activation scheme or calibration")
        else:
            _check_choice("activation_scheme", self.activation_scheme, SCHEMES)
            _check_choice("calibration", self.calibration, CALIBRATIONS)
        if self.granularity == "per_group":
            if not isinstance(self.group_size, int) or self.group_size <= 0:
                raise ConfigError("per_group granularity needs a positive group_size")
        elif self.group_size is not None:
            raise ConfigError(f"group_size is only meaningful with per_group, "
                              f"not {self.granularity}")
        for layer, dtype in self.overrides:
            _check_choice(f"overrides[{layer}]", dtype, WEIGHT_DTYPES)
        if list(self.overrides) != sorted(set(self.overrides)):
            object.__setattr__(self, "overrides", tuple(sorted(set(self.overrides))))

    @property
    def is_float(self) -> bool:
        return self.weight_dtype in FLOAT_DTYPES and self.activation_dtype in FLOAT_DTYPES

    @property
    def is_quantized(self) -> bool:
        return not self.is_float

    @property
    def text(self) -> str:
        """The canonical text form, e.g. ``w:int8:sym:per_channel a:uint8:asym cal:minmax``."""
        if self.is_float:
            return self.weight_dtype
        weight = f"w:{self.weight_dtype}:{_SHORT[self.weight_scheme]}:{self.granularity}"
        if self.group_size is not None:
            weight += f":{self.group_size}"
        parts = [weight]
        if self.activation_dtype in FLOAT_DTYPES:
            parts.append(f"a:{self.activation_dtype}")
        else:
            parts.append(f"a:{self.activation_dtype}:{_SHORT[self.activation_scheme]}")
            parts.append(f"cal:{self.calibration}")
        if self.overrides:
            parts.append("keep:" + ",".join(f"{layer}={dtype}" for layer, dtype in self.overrides))
        return " ".join(parts)

    @property
    def id(self) -> str:
        """A short id that depends only on the canonical text."""
        return hashlib.blake2b(self.text.encode(), digest_size=5).hexdigest()

    @property
    def label(self) -> str:
        """A compact human label for tables and plots."""
        if self.is_float:
            return self.weight_dtype
        pieces = [f"{self.weight_dtype}{'' if self.weight_scheme == 'symmetric' else '-asym'}",
                  {"per_tensor": "pt", "per_channel": "pc", "per_group": f"g{self.group_size}"}[
                      self.granularity]]
        if self.activation_dtype not in FLOAT_DTYPES:
            pieces.append(f"{self.activation_dtype}-{_SHORT[self.activation_scheme]}")
            pieces.append(self.calibration)
        else:
            pieces.append(f"{self.activation_dtype} act")
        if self.overrides:
            pieces.append(f"+{len(self.overrides)} kept")
        return " ".join(pieces)

    def to_dict(self) -> dict:
        return {
            "weight_dtype": self.weight_dtype,
            "activation_dtype": self.activation_dtype,
            "weight_scheme": self.weight_scheme,
            "activation_scheme": self.activation_scheme,
            "granularity": self.granularity,
            "group_size": self.group_size,
            "calibration": self.calibration,
            "overrides": [list(pair) for pair in self.overrides],
        }

    @classmethod
    def from_dict(cls, data: dict) -> QuantConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown QuantConfig field(s): {sorted(unknown)}")
        values = dict(data)
        values["overrides"] = tuple(tuple(pair) for pair in values.get("overrides", ()))
        return cls(**values)

    @classmethod
    def from_text(cls, text: str) -> QuantConfig:
        """Parse the canonical text form back into a config (the inverse of ``text``)."""
        text = text.strip()
        if text in FLOAT_DTYPES:
            return cls(weight_dtype=text, activation_dtype=text)
        values: dict = {}
        for part in text.split():
            head, _, rest = part.partition(":")
            fields = rest.split(":")
            try:
                if head == "w":
                    values["weight_dtype"], scheme, values["granularity"], *group = fields
                    values["weight_scheme"] = _LONG[scheme]
                    if group:
                        values["group_size"] = int(group[0])
                elif head == "a":
                    values["activation_dtype"] = fields[0]
                    if len(fields) > 1:
                        values["activation_scheme"] = _LONG[fields[1]]
                elif head == "cal":
                    values["calibration"] = rest
                elif head == "keep":
                    values["overrides"] = tuple(
                        tuple(item.split("=", 1)) for item in rest.split(",") if item
                    )
                else:
                    raise ConfigError(f"unknown part {part!r}")
            except (ValueError, KeyError) as error:
                raise ConfigError(f"cannot parse config text {text!r}: {error}") from None
        return cls(**values)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


FP32 = QuantConfig()

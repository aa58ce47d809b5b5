"""QuantConfig: one point of the quantization search space.

A config is immutable and hashable and has one canonical text form, so the same config
is the same row in every run, on every machine, and in every later version of the suite.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

FLOAT_DTYPES = ("fp32", "fp16", "bf16")
WEIGHT_DTYPES = (*FLOAT_DTYPES, "int8", "uint8", "int4")
# int8_dynamic: activations quantized to int8 at run time, per group of input channels, by
# the kernel itself (OpenVINO CPU's dynamic quantization): no scheme, nothing to calibrate.
DYNAMIC_ACTIVATION_DTYPES = ("int8_dynamic",)
ACTIVATION_DTYPES = (*FLOAT_DTYPES, "int8", "uint8", "int16", *DYNAMIC_ACTIVATION_DTYPES)
SCHEMES = ("symmetric", "asymmetric")
GRANULARITIES = ("per_tensor", "per_channel", "per_group")
CALIBRATIONS = ("minmax", "percentile", "entropy", "mse")
# Weight-only algorithms: round to nearest (the default, no data), and NNCF's data-aware ones.
WEIGHT_ALGORITHMS = ("rtn", "awq", "scale_estimation", "gptq")

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

    The algorithm dimension goes beyond rounding to nearest. Activation-quantized configs
    may migrate activation outliers into the weights first (``smoothquant_alpha``, SmoothQuant's
    migration strength in (0, 1]) and correct the bias shift quantization leaves in each
    layer's output (``bias_correction``); weight-only configs pick how integer weights are
    found (``weight_algorithm``: rtn, awq, scale_estimation, gptq), and int4 ones may keep
    some layers in int8 (``int4_ratio``: NNCF's ``ratio``, the share of weights it puts in
    int4, in (0, 1), the rest int8 by its sensitivity criterion; None: all int4). The
    defaults (None, False, rtn, None) are what every config was before the dimension
    existed: they add nothing to the text, so stored configs keep their ids. Activations
    ``int8_dynamic`` (W4A8, W8A8 dynamic) are quantized at run time by the kernel: like
    weight-only configs they take no activation scheme or calibration (text
    ``a:int8_dynamic``).
    """

    weight_dtype: str = "fp32"
    activation_dtype: str = "fp32"
    weight_scheme: str | None = None
    activation_scheme: str | None = None
    granularity: str | None = None
    group_size: int | None = None
    calibration: str | None = None
    overrides: tuple[tuple[str, str], ...] = field(default=())
    smoothquant_alpha: float | None = None
    bias_correction: bool = False
    weight_algorithm: str = "rtn"
    int4_ratio: float | None = None

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
            self._check_algorithm(activations=False, weight_only=False)
            return
        if self.weight_dtype in FLOAT_DTYPES:
            raise ConfigError(
                f"integer activations ({self.activation_dtype}) need integer weights, "
                f"got {self.weight_dtype}"
            )
        _check_choice("weight_scheme", self.weight_scheme, SCHEMES)
        _check_choice("granularity", self.granularity, GRANULARITIES)
        if self.activation_dtype in (*FLOAT_DTYPES, *DYNAMIC_ACTIVATION_DTYPES):
            # Weight-only quantization: activations stay float, nothing to calibrate; or
            # quantized at run time (W4A8 dynamic), nothing to calibrate either.
            if self.activation_scheme is not None or self.calibration is not None:
                raise ConfigError(f"configs with {self.activation_dtype} activations take no "
                                  f"activation scheme or calibration")
            self._check_algorithm(activations=False, weight_only=True)
        else:
            _check_choice("activation_scheme", self.activation_scheme, SCHEMES)
            _check_choice("calibration", self.calibration, CALIBRATIONS)
            self._check_algorithm(activations=True, weight_only=False)
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

    def _check_algorithm(self, activations: bool, weight_only: bool) -> None:
        """The algorithm fields a config of this kind can take (each error names its field)."""
        if self.smoothquant_alpha is not None:
            if not activations:
                raise ConfigError("smoothquant_alpha needs quantized activations (SmoothQuant "
                                  "moves activation outliers into the weights)")
            object.__setattr__(self, "smoothquant_alpha", _alpha(self.smoothquant_alpha))
        if not isinstance(self.bias_correction, bool):
            raise ConfigError(f"bias_correction must be true or false; got "
                              f"{self.bias_correction!r}")
        if self.bias_correction and not activations:
            raise ConfigError("bias_correction needs quantized activations (weight-only and "
                              "float configs have no quantization bias to correct)")
        _check_choice("weight_algorithm", self.weight_algorithm, WEIGHT_ALGORITHMS)
        if self.weight_algorithm != "rtn" and not weight_only:
            raise ConfigError(f"weight_algorithm {self.weight_algorithm} is for weight-only "
                              f"configs (integer weights, float activations)")
        if self.int4_ratio is not None:
            if not weight_only or self.weight_dtype != "int4":
                raise ConfigError("int4_ratio is for int4 weight-only configs (the share of "
                                  "weights NNCF compresses to int4 rather than int8)")
            object.__setattr__(self, "int4_ratio", _ratio(self.int4_ratio))

    @property
    def algorithm_text(self) -> str:
        """The non-default algorithms, e.g. ``sq0.75+bc``, ``awq`` or ``gptq+r0.8``; empty
        for plain RTN."""
        parts = []
        if self.smoothquant_alpha is not None:
            parts.append(f"sq{_number_text(self.smoothquant_alpha)}")
        if self.bias_correction:
            parts.append("bc")
        if self.weight_algorithm != "rtn":
            parts.append(self.weight_algorithm)
        if self.int4_ratio is not None:
            parts.append(f"r{_number_text(self.int4_ratio)}")
        return "+".join(parts)

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
        if self.activation_scheme is None:  # float, or quantized at run time
            parts.append(f"a:{self.activation_dtype}")
        else:
            parts.append(f"a:{self.activation_dtype}:{_SHORT[self.activation_scheme]}")
            parts.append(f"cal:{self.calibration}")
        if self.algorithm_text:
            parts.append(f"alg:{self.algorithm_text}")
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
        if self.activation_scheme is not None:
            pieces.append(f"{self.activation_dtype}-{_SHORT[self.activation_scheme]}")
            pieces.append(self.calibration)
        else:
            pieces.append(f"{self.activation_dtype} act")
        if self.algorithm_text:
            pieces.append(self.algorithm_text)
        if self.overrides:
            pieces.append(f"+{len(self.overrides)} kept")
        return " ".join(pieces)

    def to_dict(self) -> dict:
        data = {
            "weight_dtype": self.weight_dtype,
            "activation_dtype": self.activation_dtype,
            "weight_scheme": self.weight_scheme,
            "activation_scheme": self.activation_scheme,
            "granularity": self.granularity,
            "group_size": self.group_size,
            "calibration": self.calibration,
            "overrides": [list(pair) for pair in self.overrides],
        }
        # The algorithm fields only where they are not the default, so the stored form of
        # every config made before they existed stays byte for byte what it was.
        for name in ("smoothquant_alpha", "bias_correction", "weight_algorithm", "int4_ratio"):
            if getattr(self, name) != self.__dataclass_fields__[name].default:
                data[name] = getattr(self, name)
        return data

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
                elif head == "alg":
                    values.update(algorithm_fields(rest))
                elif head == "keep":
                    values["overrides"] = tuple(
                        tuple(item.split("=", 1)) for item in rest.split(",") if item
                    )
                else:
                    raise ConfigError(f"unknown part {part!r}")
            except (ValueError, KeyError) as error:
                raise ConfigError(f"cannot parse config text {text!r}: {error}") from None
        return cls(**values)


def algorithm_fields(text: str) -> dict:
    """The QuantConfig fields an algorithm text names, e.g. ``sq0.75+bc`` or ``awq+r0.8``
    (``rtn``: round to nearest, the default; ``rR``: int4 ratio R)."""
    values: dict = {}
    for item in text.split("+"):
        prefix = next((prefix for prefix in _NUMBERED if item.startswith(prefix)), None)
        if item == "bc":
            values["bias_correction"] = True
        elif item in WEIGHT_ALGORITHMS:
            values["weight_algorithm"] = item
        elif prefix is not None:
            name, check, expected = _NUMBERED[prefix]
            try:
                values[name] = check(float(item[len(prefix):]))
            except ValueError:
                raise ConfigError(f"{name}: {item!r} is not {prefix}<number> with {expected}"
                                  ) from None
        else:
            raise ConfigError(f"unknown algorithm {item!r} (known: rtn, sq<alpha>, bc, "
                              f"{', '.join(WEIGHT_ALGORITHMS[1:])}, r<int4 ratio>)")
    return values


def _number_text(value: float) -> str:
    """``value`` in a config's text: ``:g`` (0.75, 1) where that reads back exactly, so every
    stored id stays what it was, else the shortest exact form (0.1234567, not 0.123457: two
    configs never share a text, and ``from_text(config.text) == config``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _alpha(alpha: object) -> float:
    """SmoothQuant's migration strength, a number in (0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise ConfigError(f"smoothquant_alpha must be a number in (0, 1]; got {alpha!r}")
    return float(alpha)


def _ratio(ratio: object) -> float:
    """NNCF's int4 ratio, a number in (0, 1): 1 is every weight in int4, the default (None)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ConfigError(f"int4_ratio must be a number in (0, 1); got {ratio!r}")
    return float(ratio)


# Algorithm tokens that carry a number: prefix -> (field, its check, what it expects).
_NUMBERED = {"sq": ("smoothquant_alpha", _alpha, "alpha in (0, 1], e.g. sq0.75"),
             "r": ("int4_ratio", _ratio, "ratio in (0, 1), e.g. r0.8")}


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


FP32 = QuantConfig()

import pytest

from autotune.config import FP32, ConfigError, QuantConfig

INT8 = QuantConfig(weight_dtype="int8", activation_dtype="uint8", weight_scheme="symmetric",
                   activation_scheme="asymmetric", granularity="per_channel",
                   calibration="minmax")


def test_id_is_stable_across_processes_and_versions():
    # The id is part of every stored trial: changing it orphans every earlier result.
    assert FP32.id == "4fc86248cb"
    assert INT8.id == "e0c77a5341"
    assert INT8.text == "w:int8:sym:per_channel a:uint8:asym cal:minmax"
    assert INT8.id == QuantConfig.from_text(INT8.text).id


def test_equal_configs_are_one_row():
    same = QuantConfig(weight_dtype="int8", activation_dtype="uint8", weight_scheme="symmetric",
                       activation_scheme="asymmetric", granularity="per_channel",
                       calibration="minmax")
    assert same == INT8 and hash(same) == hash(INT8) and len({same, INT8}) == 1


@pytest.mark.parametrize("config", [
    FP32,
    QuantConfig("bf16", "bf16"),
    INT8,
    QuantConfig("int4", "fp32", weight_scheme="asymmetric", granularity="per_group",
                group_size=32),
    QuantConfig("int8", "int8", "symmetric", "symmetric", "per_tensor", None, "entropy",
                overrides=(("conv2", "fp32"), ("conv1", "fp32"))),
])
def test_text_and_dict_round_trip(config):
    assert QuantConfig.from_text(config.text) == config
    assert QuantConfig.from_dict(config.to_dict()) == config


def test_overrides_are_canonical():
    a = QuantConfig("int8", "int8", "symmetric", "symmetric", "per_tensor", None, "minmax",
                    overrides=(("b", "fp32"), ("a", "fp32")))
    b = QuantConfig("int8", "int8", "symmetric", "symmetric", "per_tensor", None, "minmax",
                    overrides=(("a", "fp32"), ("b", "fp32")))
    assert a == b and a.id == b.id and a.text.endswith("keep:a=fp32,b=fp32")


@pytest.mark.parametrize("fields, message", [
    ({"weight_dtype": "int3"}, "weight_dtype"),
    ({"weight_dtype": "fp32", "activation_dtype": "bf16"}, "one dtype"),
    ({"weight_dtype": "fp32", "activation_dtype": "fp32", "calibration": "minmax"}, "takes no"),
    ({"weight_dtype": "int8", "activation_dtype": "uint8", "weight_scheme": "symmetric",
      "activation_scheme": "asymmetric", "granularity": "per_channel"}, "calibration"),
    ({"weight_dtype": "int8", "activation_dtype": "uint8", "weight_scheme": "symmetric",
      "activation_scheme": "asymmetric", "granularity": "per_group", "calibration": "minmax"},
     "group_size"),
    ({"weight_dtype": "fp32", "activation_dtype": "int8"}, "integer weights"),
])
def test_impossible_configs_are_rejected(fields, message):
    with pytest.raises(ConfigError, match=message):
        QuantConfig(**fields)


def test_from_text_rejects_garbage():
    with pytest.raises(ConfigError):
        QuantConfig.from_text("w:int8:sideways:per_channel a:uint8:asym cal:minmax")
    with pytest.raises(ConfigError):
        QuantConfig.from_text("bogus:1")

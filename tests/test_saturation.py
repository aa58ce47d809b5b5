"""Saturation rate from real QDQ models made by ``autotune.quantize`` (no compile)."""

from pathlib import Path

import numpy as np
import pytest

from autotune.config import FP32, QuantConfig
from autotune.quantize import quantize
from autotune.saturation import activation_ranges, measure_saturation, saturation_of

INT8 = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_tensor", None, "minmax")


def _samples(count: int, scale: float = 1.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"input": (scale * rng.standard_normal((1, 3, 16, 16))).astype(np.float32)}
            for _ in range(count)]


@pytest.mark.readme_claim("saturation rate: the share of activation values the quantized model's "
                          "ranges clip")
def test_minmax_ranges_hold_their_calibration_data_and_clip_larger_inputs(tiny_model, tmp_path):
    calibration = _samples(8)
    model = quantize(tiny_model, INT8, calibration, tmp_path)
    ranges = activation_ranges(model.path)
    assert "input" in ranges and all(low <= 0 <= high for low, high in ranges.values())
    weights = {init.name for init in __import__("onnx").load(str(tiny_model)).graph.initializer}
    assert not weights & set(ranges)  # weights are not activations

    # Min-max ranges are the calibration data's own extremes: nothing in it is clipped.
    held = measure_saturation(tiny_model, model.path, calibration, tmp_path)
    assert held.rate == 0.0 and set(held.tensors) == set(ranges) and held.samples == 8
    # Inputs four times as large fall outside the input's range (and more downstream).
    clipped = measure_saturation(tiny_model, model.path, _samples(8, scale=4.0, seed=1),
                                 tmp_path)
    assert clipped.rate > 0.01 and clipped.tensors["input"] > 0.3
    assert clipped.worst[1] == max(clipped.tensors.values())
    assert len(list((tmp_path / "saturation").glob("*.json"))) == 2  # cached by model hash
    assert measure_saturation(tiny_model, model.path, _samples(8, scale=4.0, seed=1),
                              tmp_path) == clipped


@pytest.mark.readme_claim("saturation: float configs 0, weight-only configs n/a")
def test_float_and_weight_only_configs_clip_nothing_and_say_so(tiny_model, tmp_path):
    assert saturation_of(FP32, tiny_model, tiny_model, [], tmp_path).rate == 0.0
    weight_only = QuantConfig("int8", "fp32", "symmetric", None, "per_channel")
    found = saturation_of(weight_only, tiny_model, tiny_model, [], tmp_path)
    assert found.rate is None and "not applicable: weight-only" in found.note


@pytest.mark.readme_claim("what moves saturation is the calibration method, not the granularity")
def test_digits_percentile_clips_more_than_minmax_per_tensor_or_per_channel(tmp_path):
    """On digits-cnn the calibration method moves saturation: percentile (99.99) cuts the
    tails min-max keeps. Granularity does not: it is the weights', and saturation is the
    activations' (per-tensor and per-channel give the same activation ranges)."""
    from autotune.zoo import resolve_model

    source = resolve_model("digits-cnn")
    calibration, evaluation = source.dataset.calibration[:24], source.dataset.evaluation[:32]
    rates = {}
    for granularity, method in (("per_tensor", "minmax"), ("per_tensor", "percentile"),
                                ("per_channel", "percentile")):
        config = QuantConfig("int8", "uint8", "symmetric", "asymmetric", granularity, None,
                             method)
        model = quantize(Path(source.path), config, calibration, tmp_path)
        rates[granularity, method] = measure_saturation(source.path, model.path, evaluation,
                                                        tmp_path).rate
    assert 0 <= rates["per_tensor", "minmax"] < rates["per_tensor", "percentile"] < 0.01
    assert rates["per_channel", "percentile"] == rates["per_tensor", "percentile"]

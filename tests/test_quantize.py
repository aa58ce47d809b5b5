"""The quantizer, on real onnxruntime quantization of a tiny model."""

import os
import threading
from importlib.metadata import version

import pytest

from autotune.config import QuantConfig
from autotune.data import random_dataset
from autotune.quantize import file_hash, quantize

INT8 = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None, "minmax")


def test_quantizing_never_writes_next_to_the_source_model(tiny_model, tmp_path):
    # onnxruntime writes and deletes "<model>-inferred.onnx" beside its input; two runs
    # quantizing one model at once used to delete each other's file.
    dataset = random_dataset(tiny_model, calibration_count=4, evaluation_count=2)
    before = os.stat(tiny_model.parent).st_mtime_ns
    model = quantize(tiny_model, INT8, dataset.calibration, tmp_path / "cache")
    assert model.fresh and model.path.exists()
    assert os.stat(tiny_model.parent).st_mtime_ns == before
    again = quantize(tiny_model, INT8, dataset.calibration, tmp_path / "cache")
    assert not again.fresh and again.path == model.path


def test_concurrent_quantizations_of_one_model_all_succeed(tiny_model, tmp_path):
    dataset = random_dataset(tiny_model, calibration_count=4, evaluation_count=2)
    errors, paths = [], []

    def work(index: int) -> None:
        try:
            paths.append(quantize(tiny_model, INT8, dataset.calibration,
                                  tmp_path / f"cache{index % 2}").path)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(paths) == 4 and all(path.exists() for path in paths)


@pytest.mark.readme_claim("quantized models are cached, keyed by model hash, "
                          "calibration data hash, config id and onnxruntime version")
def test_the_quantized_cache_is_keyed_by_model_data_config_and_onnxruntime(tiny_model, tmp_path):
    # An upgrade of onnxruntime or other calibration data must never reuse a quantized model.
    samples = random_dataset(tiny_model, calibration_count=8, evaluation_count=2).calibration
    cache = tmp_path / "cache"
    first = quantize(tiny_model, INT8, samples[:4], cache)
    assert first.path.parent == cache / "quantized"
    assert first.path.name.startswith(file_hash(tiny_model))
    assert INT8.id in first.path.name and f"ort{version('onnxruntime')}" in first.path.name
    other_data = quantize(tiny_model, INT8, samples[4:], cache)
    per_tensor = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_tensor", None,
                             "minmax")
    other_config = quantize(tiny_model, per_tensor, samples[:4], cache)
    assert other_data.fresh and other_config.fresh
    assert len({first.path, other_data.path, other_config.path}) == 3

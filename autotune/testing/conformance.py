"""A conformance suite every backend's tests subclass, so each proves the same contract.

Subclass ``BackendConformance`` in ``tests/backends/test_NAME.py`` and set ``backend_name``
and ``target_name``; the tests compile and run a tiny CNN for real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autotune.config import FP32, QuantConfig
from autotune.measure import MeasurementProtocol

INT8 = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None, "minmax")
QUICK = MeasurementProtocol(warmup_runs=2, min_repeats=5, min_time_s=0.05)


class BackendConformance:
    backend_name: str
    target_name: str

    @pytest.fixture
    def backend(self):
        from autotune.backends import get_backend

        return get_backend(self.backend_name)

    @pytest.fixture
    def target(self, backend):
        from autotune.target import load_target

        target = load_target(self.target_name)
        availability = backend.available(target)
        if not availability.ok:
            pytest.skip(f"{self.backend_name} on {self.target_name}: {availability.reason}")
        return target

    @pytest.fixture
    def data(self, tmp_path_factory):
        from autotune.data import random_dataset
        from autotune.testing.models import tiny_cnn

        path = tiny_cnn(tmp_path_factory.mktemp("conformance") / "tiny.onnx")
        return path, random_dataset(path, calibration_count=8, evaluation_count=6)

    @pytest.fixture
    def fp32_model(self, data):
        from autotune.quantize import quantize

        path, dataset = data
        return quantize(path, FP32, dataset.calibration, path.parent / "cache")

    @pytest.fixture
    def quantized_int8(self, data):
        from autotune.quantize import quantize

        path, dataset = data
        return quantize(path, INT8, dataset.calibration, path.parent / "cache")

    def _reference(self, data):
        from autotune.driver import reference_outputs

        path, dataset = data
        return reference_outputs(path, dataset)

    def test_available_says_why_not(self, backend):
        from autotune.target import Target

        nowhere = Target(name="nowhere", description="", device="cpu", arch="x86_64",
                         path=Path("nowhere.toml"))
        availability = backend.available(nowhere)
        assert not availability.ok and availability.reason

    def test_versions_name_the_runtime(self, backend):
        assert backend.versions()

    def test_fp32_matches_onnxruntime(self, backend, target, fp32_model, data, tmp_path):
        from autotune.accuracy import first_outputs

        artifact = backend.compile(fp32_model, target, tmp_path)
        assert artifact.path.exists() and artifact.size_bytes > 0 and artifact.compile_s > 0
        measurement = backend.measure(artifact, data[1].evaluation, target, QUICK)
        assert len(measurement.latencies_ms) >= QUICK.min_repeats
        assert all(sample > 0 for sample in measurement.latencies_ms)
        assert measurement.load_s > 0 and measurement.first_inference_ms > 0
        outputs = first_outputs(measurement.outputs)
        np.testing.assert_allclose(outputs, self._reference(data), rtol=1e-3, atol=1e-3)

    def test_int8_stays_close_to_fp32(self, backend, target, quantized_int8, data, tmp_path):
        from autotune.accuracy import first_outputs, sqnr_db

        artifact = backend.compile(quantized_int8, target, tmp_path)
        measurement = backend.measure(artifact, data[1].evaluation, target, QUICK)
        outputs = first_outputs(measurement.outputs)
        reference = self._reference(data)
        assert outputs.shape == reference.shape
        # 8-bit quantization of a 3-layer net keeps well above 15 dB of signal over noise.
        assert sqnr_db(reference, outputs) > 15

"""A conformance suite every backend's tests subclass, so each proves the same contract.

Subclass ``BackendConformance`` in ``tests/backends/test_NAME.py`` and set ``backend_name``
and ``target_name``; the tests compile and run a tiny CNN for real, in this process and, as
a run does, in isolated workers. Name a config the backend cannot express in
``unsupported_config`` (and, where the tiny CNN cannot show it, the model in
``unsupported_model``), or say in ``unsupported_skip`` why there is none.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autotune.config import FP32, QuantConfig
from autotune.errors import UnsupportedConfig
from autotune.measure import MeasurementProtocol

INT8 = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None, "minmax")
QUICK = MeasurementProtocol(warmup_runs=2, min_repeats=5, min_time_s=0.05)


# Generous limits for a tiny model: a worker that hits them has hung or leaked.
WORKER_TIMEOUT_S = 300.0
WORKER_MEMORY_BYTES = 6 * 2**30


class BackendConformance:
    backend_name: str
    target_name: str
    #: A config (canonical text) that ``compile`` must refuse with ``UnsupportedConfig``.
    unsupported_config: str | None = None
    #: Why no config is unsupported, when ``unsupported_config`` is None.
    unsupported_skip: str = "the backend names no config it cannot express"

    def unsupported_model(self, folder: Path) -> Path:
        """The ONNX model that ``unsupported_config`` is compiled for (the tiny CNN)."""
        from autotune.testing.models import tiny_cnn

        return tiny_cnn(folder / "tiny.onnx")

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

    def test_requirements_decide_availability(self, backend):
        """``available`` is the first missing requirement; each one says what it found."""
        from autotune.backends.base import availability_of
        from autotune.target import known_targets

        for target in known_targets():
            requirements = backend.requirements(target)
            assert requirements and all(requirement.found for requirement in requirements)
            assert backend.available(target) == availability_of(requirements)

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

    def test_measures_in_fresh_workers_as_a_run_does(self, backend, target, data, tmp_path):
        """Compile and measure in one isolated worker, then measure the kept artifact again
        in another, as ``autotune.driver`` does for its later passes."""
        from autotune.accuracy import first_outputs
        from autotune.worker import Job, run_isolated

        path, dataset = data
        dataset.save(tmp_path / "dataset.npz")
        job = Job(model_path=str(path), config=FP32.to_dict(), backend=self.backend_name,
                  target_path=str(target.path), dataset_path=str(tmp_path / "dataset.npz"),
                  cache_dir=str(tmp_path / "cache"), protocol=QUICK.to_dict(),
                  artifact_dir=str(tmp_path / "artifact"))
        reference = self._reference(data)
        first = run_isolated(job, WORKER_TIMEOUT_S, WORKER_MEMORY_BYTES)
        assert (first.status, first.error) == ("ok", "")
        compiled, measured = first.outcome.compiled, first.outcome.measured
        assert len(measured.latencies_ms) >= QUICK.min_repeats
        assert all(sample > 0 for sample in measured.latencies_ms)
        assert compiled.compile_s > 0 and compiled.artifact_size_bytes > 0
        assert measured.load_s > 0 and measured.first_inference_ms > 0
        assert measured.peak_memory_bytes > 0
        assert set(backend.versions()) <= set(first.outcome.versions)
        assert len(first.outputs) == len(dataset.evaluation)
        np.testing.assert_allclose(first_outputs(first.outputs), reference, rtol=1e-3, atol=1e-3)

        artifact = first.outcome.artifact
        assert Path(artifact["path"]).exists(), "the artifact outlives its worker"
        again = run_isolated(replace(job, artifact=artifact), WORKER_TIMEOUT_S,
                             WORKER_MEMORY_BYTES)
        assert (again.status, again.error) == ("ok", "")
        assert len(again.outcome.measured.latencies_ms) >= QUICK.min_repeats
        assert again.outcome.compiled is None, "a measure-only pass compiles nothing"
        np.testing.assert_allclose(first_outputs(again.outputs), first_outputs(first.outputs),
                                   rtol=1e-5, atol=1e-5)

    def test_a_config_it_cannot_express_is_unsupported(self, backend, target, tmp_path):
        from autotune.quantize import quantize

        if self.unsupported_config is None:
            pytest.skip(self.unsupported_skip)
        config = QuantConfig.from_text(self.unsupported_config)
        path = self.unsupported_model(tmp_path)
        # Float and weight-only configs need no calibration; a QDQ config gets a few samples.
        calibration = []
        if config.is_quantized and config.activation_dtype not in ("fp32", "fp16", "bf16"):
            from autotune.data import random_dataset

            calibration = random_dataset(path, calibration_count=4,
                                         evaluation_count=1).calibration
        model = quantize(path, config, calibration, tmp_path / "cache")
        with pytest.raises(UnsupportedConfig) as raised:
            backend.compile(model, target, tmp_path)
        assert str(raised.value), "the reason is given"

"""The OpenVINO backend, on real OpenVINO, through the shared conformance suite."""

import numpy as np
import pytest

from autotune.testing.conformance import BackendConformance

pytestmark = pytest.mark.openvino
pytest.importorskip("openvino", reason="openvino is not installed")


class TestOpenVINO(BackendConformance):
    backend_name = "openvino"
    target_name = "host-cpu"
    # int4 groups of 128 weights on MatMuls with 64 input channels: NNCF cannot group them.
    unsupported_config = "w:int4:sym:per_group:128 a:fp32"

    def unsupported_model(self, folder):
        from autotune.zoo.shapes import BertShape, bert_encoder, random_bert_weights

        shape = BertShape(layers=1, hidden=64, heads=2, intermediate=128, vocab=100,
                          max_positions=16)
        return bert_encoder(folder / "tiny_bert.onnx", random_bert_weights(shape, seed=1),
                            shape, seq_len=16)

    def test_int8_runs_integer_kernels(self, backend, target, quantized_int8, tmp_path):
        artifact = backend.compile(quantized_int8, target, tmp_path)
        ops = artifact.details["op_precisions"]
        assert ops, "the runtime model lists the heavy ops"
        assert all(op["integer"] for op in ops), ops
        assert artifact.details["float_fallback"] == []

    def test_fp32_runs_float_kernels(self, backend, target, fp32_model, tmp_path):
        artifact = backend.compile(fp32_model, target, tmp_path)
        assert not any(op["integer"] for op in artifact.details["op_precisions"])


@pytest.mark.readme_claim("OpenVINO IR shipped to the device, compiled and measured there "
                          "(autotune worker)")
def test_measures_on_a_device_through_the_tracker(local_worker, tmp_path):
    """OpenVINO IR compiled and measured by `autotune worker` (here: this host, through a
    real tracker), int8 kernels and outputs as when measured locally."""
    from autotune.accuracy import first_outputs
    from autotune.backends import get_backend
    from autotune.data import random_dataset
    from autotune.quantize import quantize
    from autotune.target import load_target
    from autotune.testing.conformance import INT8, QUICK
    from autotune.testing.models import tiny_cnn

    path = tiny_cnn(tmp_path / "tiny.onnx")
    dataset = random_dataset(path, calibration_count=4, evaluation_count=3)
    model = quantize(path, INT8, dataset.calibration, tmp_path / "cache")
    backend = get_backend("openvino")
    local = load_target("host-cpu")
    remote = load_target(str(local_worker.target_toml(tmp_path / "board.toml")))
    assert backend.available(remote).ok
    for folder in ("local", "remote"):
        (tmp_path / folder).mkdir()
    here = backend.measure(backend.compile(model, local, tmp_path / "local"),
                           dataset.evaluation, local, QUICK)
    artifact = backend.compile(model, remote, tmp_path / "remote")
    assert artifact.path.suffix == ".xml" and artifact.details["compiled_on"] == "device"
    there = backend.measure(artifact, dataset.evaluation, remote, QUICK)
    assert len(there.latencies_ms) >= QUICK.min_repeats
    assert there.device.served_by == "autotune worker"
    assert there.details["op_precisions"] and there.details["float_fallback"] == []
    np.testing.assert_allclose(first_outputs(there.outputs), first_outputs(here.outputs),
                               rtol=1e-4, atol=1e-4)

"""The OpenVINO backend, on real OpenVINO, through the shared conformance suite."""

import pytest

from autotune.testing.conformance import BackendConformance

pytestmark = pytest.mark.openvino
pytest.importorskip("openvino", reason="openvino is not installed")


class TestOpenVINO(BackendConformance):
    backend_name = "openvino"
    target_name = "host-cpu"

    def test_int8_runs_integer_kernels(self, backend, target, quantized_int8, tmp_path):
        artifact = backend.compile(quantized_int8, target, tmp_path)
        ops = artifact.details["op_precisions"]
        assert ops, "the runtime model lists the heavy ops"
        assert all(op["integer"] for op in ops), ops
        assert artifact.details["float_fallback"] == []

    def test_fp32_runs_float_kernels(self, backend, target, fp32_model, tmp_path):
        artifact = backend.compile(fp32_model, target, tmp_path)
        assert not any(op["integer"] for op in artifact.details["op_precisions"])

"""The TVM backend on real TVM: conformance, real integer kernels, and the tuning database."""

import numpy as np
import pytest

from autotune.config import FP32, QuantConfig
from autotune.driver import reference_outputs
from autotune.errors import UnsupportedConfig
from autotune.testing.conformance import INT8, QUICK, BackendConformance

pytestmark = pytest.mark.tvm
pytest.importorskip("tvm", reason="apache-tvm is not installed")

SIGNED = QuantConfig.from_text("w:int8:sym:per_channel a:int8:sym cal:minmax")


class TestTVM(BackendConformance):
    backend_name = "tvm"
    target_name = "host-cpu"
    unsupported_config = "bf16"  # no bf16 mixed precision on LLVM CPUs

    def test_int8_runs_integer_kernels_that_match_the_qdq_reference(
            self, backend, target, quantized_int8, data, tmp_path):

        from autotune.accuracy import first_outputs

        artifact = backend.compile(quantized_int8, target, tmp_path)
        lowered = artifact.details["integer_ops"]
        assert len(lowered["integer"]) == 3 and lowered["left_in_float"] == []
        measurement = backend.measure(artifact, data[1].evaluation, target, QUICK)
        qdq_reference = reference_outputs(quantized_int8.path, data[1])
        # The integer kernels compute what the QDQ graph means; the float epilogue may round
        # a requantized value one step apart from onnxruntime's, nothing more.
        step = float(np.abs(qdq_reference).max()) / 127
        np.testing.assert_allclose(first_outputs(measurement.outputs), qdq_reference,
                                   atol=2 * step)

    @pytest.mark.parametrize("text", [SIGNED.text, "w:int8:sym:per_tensor a:int8:asym "
                                                    "cal:percentile"], ids=["sym", "asym"])
    def test_int8_activations_become_uint8_and_compute_exactly_the_same(self, target, data,
                                                                        text, tmp_path):
        from collections import Counter

        import tvm
        from tvm import relax

        from autotune.backends.tvm import import_onnx, resolve_target
        from autotune.backends.tvm_int8 import lower_qdq_to_integer
        from autotune.quantize import quantize

        path, dataset = data
        model = quantize(path, QuantConfig.from_text(text), dataset.calibration,
                         tmp_path / "cache")
        tvm_target = tvm.target.Target(resolve_target(target))
        outputs, dtypes = {}, {}  # the quantized activations' dtypes, each counted
        for unsigned in (False, True):
            mod, names = import_onnx(model.path)
            mod, report = lower_qdq_to_integer(mod, unsigned=unsigned)
            dtypes[unsigned] = Counter(str(call.ty.dtype) for call in _calls(mod, "relax.quantize"))
            with tvm_target:
                mod = relax.get_pipeline("zero")(
                    relax.transform.DecomposeOpsForInference()(mod))
                vm = relax.VirtualMachine(tvm.compile(mod, target=tvm_target), tvm.cpu(0))
            outputs[unsigned] = [vm["main"](tvm.runtime.tensor(feeds[names[0]])).numpy()
                                 for feeds in dataset.evaluation]
        assert set(dtypes[False]) == {"int8"}
        assert dtypes[True]["uint8"] == report["unsigned_activations"] > 0
        # The same integers, shifted by 128 with the zero points: bit-identical outputs.
        np.testing.assert_array_equal(np.stack(outputs[True]), np.stack(outputs[False]))

    def test_asymmetric_weights_stay_in_float_and_say_so(self, backend, target, data, tmp_path):
        from autotune.quantize import quantize

        path, dataset = data
        config = QuantConfig("int8", "uint8", "asymmetric", "asymmetric", "per_tensor", None,
                             "minmax")
        model = quantize(path, config, dataset.calibration, tmp_path / "cache")
        artifact = backend.compile(model, target, tmp_path)
        assert artifact.details["integer_ops"]["integer"] == []
        assert all("asymmetric weights" in reason
                   for reason in artifact.details["integer_ops"]["left_in_float"])

    def test_unsupported_precision_is_a_clear_status(self, backend, target, data, tmp_path):
        from autotune.quantize import quantize

        path, dataset = data
        model = quantize(path, QuantConfig("bf16", "bf16"), dataset.calibration, tmp_path)
        with pytest.raises(UnsupportedConfig, match="bf16"):
            backend.compile(model, target, tmp_path)
        int4 = QuantConfig("int4", "fp32", "symmetric", None, "per_group", 16)
        with pytest.raises(UnsupportedConfig, match="weight-only"):
            backend.compile(quantize(path, int4, dataset.calibration, tmp_path), target,
                            tmp_path)

    def test_fp16_mixed_precision_stays_close(self, backend, target, data, tmp_path):
        from autotune.accuracy import first_outputs, sqnr_db
        from autotune.quantize import quantize

        path, dataset = data
        model = quantize(path, QuantConfig("fp16", "fp16"), dataset.calibration, tmp_path)
        artifact = backend.compile(model, target, tmp_path)
        outputs = first_outputs(backend.measure(artifact, dataset.evaluation, target,
                                                QUICK).outputs)
        assert sqnr_db(self._reference(data), outputs) > 40

    @pytest.mark.parametrize("config", [FP32, INT8, SIGNED], ids=["fp32", "int8", "s8"])
    def test_cpu_convolutions_run_packed_and_compute_the_same(self, target, config, tmp_path):
        import tvm
        from tvm import relax

        from autotune.accuracy import first_outputs
        from autotune.backends.tvm import import_onnx, resolve_target
        from autotune.backends.tvm_int8 import lower_qdq_to_integer
        from autotune.backends.tvm_layout import pack_for_cpu
        from autotune.data import random_dataset
        from autotune.quantize import quantize
        from autotune.testing.models import tiny_cnn

        # 16 channels: the second convolution divides into blocks on every CPU (4, 8 or 16);
        # the first, from 3 channels, is packed on its outputs only.
        path = tiny_cnn(tmp_path / "tiny16.onnx", channels=16)
        dataset = random_dataset(path, calibration_count=8, evaluation_count=4)
        model = quantize(path, config, dataset.calibration, tmp_path / "cache")
        mod, names = import_onnx(model.path)
        if config.is_quantized:
            mod, _ = lower_qdq_to_integer(mod, unsigned=True)
        tvm_target = tvm.target.Target(resolve_target(target))
        with tvm_target:  # the backend's lowering when it tunes, untuned here
            mod = relax.transform.DecomposeOpsForInference()(mod)
            mod, packed = pack_for_cpu(mod, tvm_target)
            mod = relax.get_pipeline("zero")(mod)
            vm = relax.VirtualMachine(tvm.compile(mod, target=tvm_target), tvm.cpu(0))
        assert packed["count"] == 2
        # Both convolutions' outputs stay packed (through bias, ReLU, requantization and
        # the zero-point padding); the one layout transform left feeds the classifier.
        transforms = [gv for gv in mod.get_global_vars() if "layout_transform" in gv.name_hint]
        assert len(transforms) == 1, transforms
        outputs = first_outputs([[vm["main"](tvm.runtime.tensor(feeds[names[0]])).numpy()]
                                 for feeds in dataset.evaluation])
        reference = reference_outputs(model.path, dataset)
        step = float(np.abs(reference).max()) / 127 if config.is_quantized else 0.0
        np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-4 + 2 * step)

    @pytest.mark.slow
    def test_tuned_int8_convolutions_use_vnni_and_compute_the_same(self, backend, target,
                                                                   tmp_path):
        import json

        import tvm
        from tvm.target.codegen import target_has_features

        from autotune.accuracy import first_outputs
        from autotune.backends.base import CompileOptions
        from autotune.backends.tvm import resolve_target
        from autotune.data import random_dataset
        from autotune.quantize import quantize
        from autotune.testing.models import tiny_cnn

        if not target_has_features("avx512vnni", tvm.target.Target(resolve_target(target))):
            pytest.skip("this CPU has no AVX-512 VNNI")
        path = tiny_cnn(tmp_path / "tiny16.onnx", channels=16)
        dataset = random_dataset(path, calibration_count=8, evaluation_count=4)
        model = quantize(path, INT8, dataset.calibration, tmp_path / "cache")
        options = CompileOptions(tuning_trials=64, cache_dir=tmp_path / "cache")
        artifact = backend.compile(model, target, tmp_path, options)
        records = (tmp_path / "cache").glob("tvm-tuning/*/database_tuning_record.json")
        assert any("dot_16x4_vnni" in line for file in records
                   for line in file.read_text().splitlines() if json.loads(line))
        outputs = first_outputs(backend.measure(artifact, dataset.evaluation, target,
                                                QUICK).outputs)
        reference = reference_outputs(model.path, dataset)
        step = float(np.abs(reference).max()) / 127
        np.testing.assert_allclose(outputs, reference, atol=2 * step)

    def test_untuned_build_is_labelled(self, backend, target, fp32_model, tmp_path):
        from autotune.backends.base import CompileOptions

        cache = tmp_path / "cache"
        artifact = backend.compile(fp32_model, target, tmp_path, CompileOptions(cache_dir=cache))
        assert artifact.tuning.trials_run == 0 and not artifact.tuning.tuned
        assert [note.kind for note in backend.notes(artifact)] == ["untuned"]
        assert "packed_convolutions" not in artifact.details  # NCHW: the faster naive loops
        assert not cache.exists()  # nothing tuned, so no tuning database made

    @pytest.mark.slow
    def test_tuning_spreads_the_budget_and_the_database_is_reused(
            self, backend, target, fp32_model, tmp_path):
        from autotune.backends.base import CompileOptions

        options = CompileOptions(tuning_trials=16, cache_dir=tmp_path / "cache")
        (tmp_path / "a").mkdir()
        first = backend.compile(fp32_model, target, tmp_path / "a", options)
        tuning = first.details["tuning"]
        assert tuning["trials_run"] > 0 and not first.details["untuned"]
        tuned_tasks = [task for task in tuning["tasks"] if task["budget"] > 0]
        assert len(tuned_tasks) >= 3  # every kernel got trials, not just the first one
        assert tuning["database_records_applied"] == len(tuning["tasks"])

        (tmp_path / "b").mkdir()
        second = backend.compile(fp32_model, target, tmp_path / "b", options)
        assert second.details["tuning"]["trials_run"] == 0
        assert second.details["tuning"]["database_records_applied"] == len(tuning["tasks"])
        assert not second.details["untuned"]


def test_int8_config_constant_is_the_smoke_config():
    assert INT8.text == "w:int8:sym:per_channel a:uint8:asym cal:minmax"


def _calls(mod, op_name: str) -> list:
    """The calls of one Relax operator in ``mod["main"]``."""
    from tvm import relax
    from tvm.ir import Op

    op, found = Op.get(op_name), []
    relax.analysis.post_order_visit(mod["main"], lambda expr: found.append(expr) if (
        isinstance(expr, relax.Call) and expr.op == op) else None)
    return found


def test_layers_left_in_float_are_flagged_in_both_reports(workspace, tiny_model, capsys):
    """TVM keeps asymmetric int8 weights fake-quantized (float): its note about the trial
    reaches summary.md and index.html as OpenVINO's float fallbacks do, without the reports
    knowing which backend wrote it."""
    from autotune.cli import main
    from autotune.store import Store

    asym = "w:uint8:asym:per_channel a:uint8:asym cal:minmax"  # zero points far from 0
    assert main(["run", "--model", str(tiny_model), "--backend", "tvm", "--config", asym,
                 "--tuning-trials", "0", "--passes", "1", "--min-repeats", "5",
                 "--min-time", "0.05", "--no-progress",
                 # The notes under test only: no contended or noisy flag from a busy machine.
                 "--max-spread", "0", "--max-other-cpu", "0", "--max-steal", "0"]) == 0
    run_id = capsys.readouterr().out.split()[1]
    trials = Store(f"sqlite:///{workspace}/results/autotune.db").trials(run_id)
    (int8,) = [t for t in trials if t.config.text == asym]
    assert int8.ok and [note.kind for note in int8.notes] == ["untuned", "float_fallback"]
    left = int8.notes[1].text
    assert left.startswith("3 of 3 conv/matmul layers left in float, not integer")
    assert "asymmetric weights" in left
    report = workspace / "reports" / run_id
    summary = (report / "summary.md").read_text()
    row = next(line for line in summary.splitlines()
               if line.startswith(f"| {int8.config.label} | tvm |"))
    assert left in row and "untuned" in row
    import html

    assert html.escape(left) in (report / "index.html").read_text()

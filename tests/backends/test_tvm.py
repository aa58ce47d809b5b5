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

    @pytest.mark.readme_claim("TVM int8 (QDQ) configs run integer kernels whose outputs equal the "
                              "QDQ reference")
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
    @pytest.mark.readme_claim("TVM on x86: int8 activations run as uint8, bit-identical outputs")
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

    @pytest.mark.readme_claim("TVM: bf16 and int4 weight-only configs are unsupported with the "
                              "reason")
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

    @pytest.mark.readme_claim("TVM: fp16 uses Relax's ToMixedPrecision (fp16 storage, fp32 "
                              "accumulation)")
    def test_fp16_mixed_precision_stays_close(self, backend, target, data, tmp_path):
        from autotune.accuracy import first_outputs, sqnr_db
        from autotune.quantize import quantize

        path, dataset = data
        model = quantize(path, QuantConfig("fp16", "fp16"), dataset.calibration, tmp_path)
        artifact = backend.compile(model, target, tmp_path)
        outputs = first_outputs(backend.measure(artifact, dataset.evaluation, target,
                                                QUICK).outputs)
        assert sqnr_db(self._reference(data), outputs) > 40

    @pytest.mark.readme_claim("TVM on CPUs: convolutions run in channel-blocked layouts, packed "
                              "through bias/ReLU")
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

    @pytest.mark.readme_claim("TVM on a VNNI CPU: tuned uint8 x int8 convolutions run vpdpbusd and"
                              " equal the QDQ reference")
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

    @pytest.mark.readme_claim("--tuning-trials 0 builds untuned and labels the trials untuned")
    def test_untuned_build_is_labelled(self, backend, target, fp32_model, tmp_path):
        from autotune.backends.base import CompileOptions

        cache = tmp_path / "cache"
        artifact = backend.compile(fp32_model, target, tmp_path, CompileOptions(cache_dir=cache))
        assert artifact.tuning.trials_run == 0 and not artifact.tuning.tuned
        assert [note.kind for note in backend.notes(artifact)] == ["untuned"]
        assert "packed_convolutions" not in artifact.details  # NCHW: the faster naive loops
        assert not cache.exists()  # nothing tuned, so no tuning database made


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


@pytest.mark.readme_claim("TVM: asymmetric weights stay in float and both reports say so")
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


@pytest.mark.readme_claim("TVM on a VNNI CPU: MetaSchedule tensorizes uint8 x int8 convolutions "
                          "with vpdpbusd (autotune registers an intrinsic that builds with LLVM "
                          "22)")
def test_vnni_target_tensorizes_uint8_int8_convolutions_with_vpdpbusd(tmp_path):
    """On an AVX-512 VNNI CPU (cascadelake), MetaSchedule's design space for a packed uint8 x
    int8 convolution holds candidates tensorized with ``dot_16x4_vnni``, and one built for
    that CPU computes with ``vpdpbusd``. Cross-compiled only: nothing here runs, so any CPU
    checks it; the slow test above runs tuned VNNI kernels where the CPU has VNNI.

    No measurement either: the candidates are the design space's sampled schedules, each
    post-processed as tuning would (RewriteTensorize swaps in the intrinsic's body, which
    ``use_vnni_intrinsic`` makes build with TVM's LLVM)."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from autotune.backends.tvm import canonical_block_names, import_onnx, load_tensor_intrinsics
    from autotune.backends.tvm_int8 import lower_qdq_to_integer
    from autotune.backends.tvm_layout import pack_for_cpu
    from autotune.data import random_dataset
    from autotune.quantize import quantize
    from autotune.testing.models import one_conv

    spec = {"kind": "llvm", "mcpu": "cascadelake", "num-cores": 1}
    load_tensor_intrinsics(spec)  # as the backend does: x86's intrinsics, VNNI's made to build
    from tvm.s_tir.tensor_intrin.x86 import VNNI_DOT_16x4_INTRIN  # after: x86's alone
    tvm_target = tvm.target.Target(spec)
    path = one_conv(tmp_path / "conv16.onnx", channels=16)  # one block of 16: VNNI's width
    dataset = random_dataset(path, calibration_count=4, evaluation_count=1)
    mod, _ = import_onnx(quantize(path, INT8, dataset.calibration, tmp_path / "cache").path)
    mod, _ = lower_qdq_to_integer(mod, unsigned=True)
    with tvm_target:  # the backend's lowering when it tunes
        mod = relax.transform.DecomposeOpsForInference()(mod)
        mod, packed = pack_for_cpu(mod, tvm_target)
        mod = canonical_block_names(relax.get_pipeline("zero")(mod))
    assert packed == {"layout": "NCHW16c", "count": 1, "vnni": True}
    (task,) = [task for task in ms.relax_integration.extract_tasks(mod, tvm_target)
               if "conv2d_NCHWc_int8" in task.task_name]
    context = ms.TuneContext(task.dispatched[0], target=tvm_target, task_name=task.task_name,
                             space_generator="post-order-apply", num_threads=1, rand_state=1)
    tensorized = []
    for schedule in context.generate_design_space():
        if VNNI_DOT_16x4_INTRIN not in str(schedule.trace):
            continue
        assert all(postproc.apply(schedule) for postproc in context.space_generator.postprocs)
        # A candidate whose padding was inlined into the convolution keeps the tensorize
        # annotation but fails to match the intrinsic; only the rewritten ones count.
        if "llvm.x86.avx512.vpdpbusd" in schedule.mod.script():
            tensorized.append(schedule)
    assert tensorized, "no design-space candidate was tensorized with dot_16x4_vnni"
    assembly = tvm.tirx.build(tensorized[0].mod, target=tvm_target).inspect_source("asm")
    assert "vpdpbusd" in assembly


@pytest.fixture(scope="module")
def tuned_conv(tmp_path_factory):
    """One packed fp32 convolution tuned for host-cpu with 8 trials (three tasks, one search
    batch each): real MetaSchedule tuning at CI's cost. Its database serves the reuse test
    and the default run's."""
    from types import SimpleNamespace

    from autotune.backends import get_backend
    from autotune.backends.base import CompileOptions
    from autotune.data import random_dataset
    from autotune.quantize import quantize
    from autotune.target import load_target
    from autotune.testing.models import one_conv

    folder = tmp_path_factory.mktemp("tuned")
    backend, target = get_backend("tvm"), load_target("host-cpu")
    if not backend.available(target).ok:
        pytest.skip(backend.available(target).reason)
    path = one_conv(folder / "conv.onnx")
    dataset = random_dataset(path, calibration_count=2, evaluation_count=2)
    model = quantize(path, FP32, dataset.calibration, folder / "cache")
    options = CompileOptions(tuning_trials=8, cache_dir=folder / "cache")
    (folder / "first").mkdir()
    first = backend.compile(model, target, folder / "first", options)
    return SimpleNamespace(backend=backend, target=target, path=path, dataset=dataset,
                           model=model, options=options, folder=folder, first=first)


@pytest.mark.readme_claim("--tuning-trials tunes every kernel with MetaSchedule into a "
                          "persistent database; a kernel already tuned is not tuned again")
def test_tuning_spreads_the_budget_and_the_database_is_reused(tuned_conv):
    """The first compile tuned every kernel (the packed convolution and its layout
    transforms); a second one finds them all in the database and tunes nothing."""
    from autotune.accuracy import first_outputs

    backend, first = tuned_conv.backend, tuned_conv.first
    tuning = first.details["tuning"]
    assert first.details["packed_convolutions"]["count"] == 1
    assert first.tuning.trials_run > 0 and first.tuning.tuned
    assert len(tuning["tasks"]) >= 3  # the convolution and its layout transforms
    assert all(task["budget"] > 0 for task in tuning["tasks"])  # every kernel got trials
    assert tuning["database_records_applied"] == len(tuning["tasks"])
    assert "untuned" not in [note.kind for note in backend.notes(first)]

    (tuned_conv.folder / "second").mkdir()
    second = backend.compile(tuned_conv.model, tuned_conv.target, tuned_conv.folder / "second",
                             tuned_conv.options)
    assert second.tuning.trials_run == 0
    assert second.tuning.records_applied == len(tuning["tasks"])
    assert all(task["already_tuned"] >= task["budget"]
               for task in second.details["tuning"]["tasks"])
    # The tuned, packed kernels compute what the model means.
    outputs = first_outputs(backend.measure(second, tuned_conv.dataset.evaluation,
                                            tuned_conv.target, QUICK).outputs)
    np.testing.assert_allclose(outputs, reference_outputs(tuned_conv.path, tuned_conv.dataset),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # ~2 min: out of CI's 30 minutes (README: Tests)
@pytest.mark.readme_claim("autotune run with no --backend measures TVM (tuned) and OpenVINO "
                          "side by side")
def test_the_default_run_tunes_tvm_beside_openvino(tuned_conv, workspace):
    """The default run's composition: every backend (no --backend), tuning on, a space that
    gives TVM only some configs as default.toml does. Kept CI-cheap: one convolution, and
    the run's cache starts from ``tuned_conv``'s database, so TVM's fp32 trial reuses it (a
    later run tunes nothing again) and its int8 trial tunes inside the trial."""
    import shutil

    from autotune.cli import main
    from autotune.store import Store

    shutil.copytree(tuned_conv.folder / "cache" / "tvm-tuning",
                    workspace / "results" / "cache" / "tvm-tuning")
    model = shutil.copy(tuned_conv.path, workspace / "conv.onnx")
    space = workspace / "space.toml"
    space.write_text(f'[integer]\nweight_dtypes = ["int8"]\nactivation_dtypes = ["uint8"]\n'
                     f'activation_schemes = ["asymmetric"]\ngranularities = ["per_channel"]\n'
                     f'calibrations = ["minmax"]\n\n[backends.tvm]\nconfigs = ["{INT8.text}"]\n')
    assert main(["run", "--model", str(model), "--space", str(space), "--tuning-trials", "8",
                 "--passes", "1", "--min-repeats", "5", "--min-time", "0.05", "--no-progress",
                 "--max-spread", "0", "--max-other-cpu", "0", "--max-steal", "0"]) == 0
    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    trials = {(t.backend, t.config.text): t for t in store.trials(store.runs()[0].id)}
    assert sorted(trials) == [("openvino", FP32.text), ("openvino", INT8.text),
                              ("tvm", FP32.text), ("tvm", INT8.text)]
    assert all(t.ok for t in trials.values()), [(k, t.status, t.error) for k, t in trials.items()]
    for trial in (trials["tvm", FP32.text], trials["tvm", INT8.text]):
        assert trial.tuning.tuned and "untuned" not in [note.kind for note in trial.notes]
        assert trial.details["packed_convolutions"]["count"] == 1
    assert trials["tvm", FP32.text].tuning.trials_run == 0  # tuned_conv's records
    assert trials["tvm", INT8.text].tuning.trials_run > 0  # tuned in the trial

"""Models as they come: torch's exports (tests/data/exported, made by make_exported.py) with
dynamic dimensions, external data and unfused BatchNormalization run end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from autotune.errors import InputError
from autotune.prepare import parse_shape, parse_shapes, prepare_model

EXPORTED = Path(__file__).parent / "data" / "exported"
BERT_DYNAMO = EXPORTED / "tiny_bert_dynamo.onnx"  # torch's default exporter
BERT_LEGACY = EXPORTED / "tiny_bert_legacy.onnx"  # TorchScript: Shape/Gather/Concat chains
CNN_BN = EXPORTED / "tiny_cnn_bn.onnx"  # BatchNormalization unfused, weights in .onnx.data


def _tokens(batch: int, sequence: int) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(1, 256, (batch, sequence)).astype(np.int64)
    mask = np.ones((batch, sequence), np.int64)
    mask[-1, sequence // 2:] = 0  # padding, so the mask matters
    return {"input_ids": ids, "attention_mask": mask}


def _outputs(path: Path, feeds) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, feeds)[0]


def _static_inputs(path: Path) -> dict[str, list[int]]:
    graph = onnx.load(str(path)).graph
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}


@pytest.mark.parametrize("source", [BERT_DYNAMO, BERT_LEGACY], ids=["dynamo", "legacy"])
@pytest.mark.readme_claim("dynamic dimensions default to batch 1 and 128 for a sequence; outputs "
                          "equal the export's")
def test_dynamic_batch_and_sequence_take_the_defaults_and_compute_the_same(source, tmp_path):
    prepared = prepare_model(source, cache_dir=tmp_path)
    assert prepared.prepared and prepared.path.parent == tmp_path
    assert _static_inputs(prepared.path) == {"input_ids": [1, 128], "attention_mask": [1, 128]}
    assert "dim 0 'batch' = 1 (batch default)" in prepared.steps[0]
    assert "dim 1 'sequence' = 128 (sequence default)" in prepared.steps[0]
    folded = onnx.load(str(prepared.path))
    assert not [node for node in folded.graph.node if node.op_type == "Shape"]
    feeds = _tokens(1, 128)
    np.testing.assert_allclose(_outputs(prepared.path, feeds), _outputs(source, feeds),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.readme_claim("--shape INPUT=DIMS; a dimension name shared by inputs takes one size")
def test_a_shape_given_for_one_input_sizes_the_dimensions_it_shares(tmp_path):
    prepared = prepare_model(BERT_DYNAMO, parse_shapes(["input_ids=2x32"]), cache_dir=tmp_path)
    assert prepared.shapes == {"input_ids": (2, 32), "attention_mask": (2, 32)}
    feeds = _tokens(2, 32)
    np.testing.assert_allclose(_outputs(prepared.path, feeds), _outputs(BERT_DYNAMO, feeds),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="'sequence' is 32 for one input and 16 for input "
                                         "'attention_mask'"):
        prepare_model(BERT_DYNAMO, parse_shapes(["input_ids=2x32", "attention_mask=2x16"]),
                      cache_dir=tmp_path)


@pytest.mark.readme_claim("external data is read in and BatchNormalization folded into the "
                          "convolution")
def test_external_data_and_batchnorm_are_folded_into_one_file(tmp_path):
    with pytest.raises(InputError, match=r"dimension 2 \('H'\) of input 'image' is dynamic and "
                                         r"has no default .* give --shape image=1x3xHxW"):
        prepare_model(CNN_BN, cache_dir=tmp_path)
    prepared = prepare_model(CNN_BN, {"image": (1, 3, 32, 32)}, cache_dir=tmp_path)
    assert any("weights read from tiny_cnn_bn.onnx.data" in step for step in prepared.steps)
    model = onnx.load(str(prepared.path), load_external_data=False)
    assert not [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 0
    image = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_outputs(prepared.path, {"image": image}),
                               _outputs(CNN_BN, {"image": image}), rtol=1e-4, atol=1e-5)
    # Prepared once: the same request finds the same file, not rewritten.
    written = prepared.path.stat().st_mtime_ns
    again = prepare_model(CNN_BN, {"image": (1, 3, 32, 32)}, cache_dir=tmp_path)
    assert again.path == prepared.path and again.path.stat().st_mtime_ns == written


def test_the_data_sizes_what_no_shape_gives(tmp_path):
    from autotune.userdata import sample_shapes

    data = tmp_path / "images.npz"
    np.savez(data, image=np.zeros((6, 3, 24, 24), np.float32))
    prepared = prepare_model(CNN_BN, data_shapes=sample_shapes(data), cache_dir=tmp_path)
    assert prepared.shapes == {"image": (1, 3, 24, 24)}


@pytest.mark.readme_claim("a missing external data file is named")
def test_a_missing_external_data_file_is_named(tmp_path):
    shutil.copy(CNN_BN, tmp_path / "alone.onnx")
    with pytest.raises(InputError, match="external data file 'tiny_cnn_bn.onnx.data' that is "
                                         "not next to it"):
        prepare_model(tmp_path / "alone.onnx", {"image": (1, 3, 32, 32)}, cache_dir=tmp_path)


@pytest.mark.readme_claim("a static, single-file model is used as it is (its hash does not change)")
def test_a_static_single_file_model_is_taken_as_it_is(tiny_model, tmp_path):
    prepared = prepare_model(tiny_model, cache_dir=tmp_path)
    assert prepared.path == tiny_model and not prepared.prepared and not prepared.steps
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("texts, message", [
    (["input_ids"], "expected INPUT=DIMS"),
    (["input_ids=1xa"], "expected INPUT=DIMS"),
    (["input_ids=0x8"], "expected INPUT=DIMS"),
    (["tokens=1x8"], "has no input 'tokens' \\(inputs: input_ids, attention_mask\\)"),
    (["input_ids=1x8x4"], "has 2 dimensions, not 3"),
])
def test_bad_shapes_are_input_errors_naming_the_flag(texts, message, tmp_path):
    with pytest.raises(InputError, match=message):
        prepare_model(BERT_DYNAMO, parse_shapes(texts), cache_dir=tmp_path)


def test_a_shape_may_not_contradict_a_fixed_dimension(tmp_path):
    with pytest.raises(InputError, match="dimension 1 of input 'image' is fixed at 3"):
        prepare_model(CNN_BN, {"image": (1, 4, 32, 32)}, cache_dir=tmp_path)
    assert parse_shape("image=1X3x8x8") == ("image", (1, 3, 8, 8))


@pytest.mark.readme_claim("a torch export with dynamic batch and sequence runs on both "
                          "backends with --shape and with the defaults")
def test_exported_bert_runs_end_to_end_on_both_backends(workspace, monkeypatch, capsys):
    """The must-show of issue #22: a model exported with dynamic batch and sequence runs on
    OpenVINO and TVM with the default (1x128) and with --shape, fp32 and int8 trials ok."""
    from autotune.cli import main
    from autotune.store import Store

    monkeypatch.setenv("AUTOTUNE_CACHE_DIR", str(workspace / "cache"))
    quick = ["--backend", "openvino", "--backend", "tvm", "--tuning-trials", "0",
             "--config", "w:int8:sym:per_channel a:uint8:asym cal:minmax", "--passes", "1",
             "--min-repeats", "3", "--min-time", "0.02", "--no-progress", "--max-spread", "0",
             "--max-other-cpu", "0", "--max-steal", "0", "--max-canary-slowdown", "0"]
    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    for shape in ([], ["--shape", "input_ids=2x16"]):
        assert main(["run", "--model", str(BERT_DYNAMO), *shape, *quick]) == 0
        run_id = capsys.readouterr().out.split()[1]
        trials = store.trials(run_id)
        assert len(trials) == 4 and all(trial.ok for trial in trials), [
            (t.backend, t.config.label, t.status, t.error) for t in trials]
        assert store.get_run(run_id).settings.shapes == tuple(shape[1:])
    assert main(["run", "--model", str(CNN_BN), *quick]) == 2
    assert "give --shape image=1x3xHxW" in capsys.readouterr().err


def _one_node_model(path: Path, op: str, shape, domain: str = "") -> Path:
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["x"], ["y"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, shape)])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_an_input_without_any_shape_takes_its_rank_from_the_flag(tmp_path):
    path = _one_node_model(tmp_path / "norank.onnx", "Relu", None)
    with pytest.raises(InputError, match="input 'x' has no shape in the model .* give "
                                         "--shape x=DIMS"):
        prepare_model(path, cache_dir=tmp_path)
    prepared = prepare_model(path, {"x": (2, 5)}, cache_dir=tmp_path)
    assert _static_inputs(prepared.path) == {"x": [2, 5]}


def test_an_op_no_runtime_knows_is_one_line_naming_it(tmp_path):
    path = _one_node_model(tmp_path / "custom.onnx", "FancyOp", ["N", 4], domain="com.example")
    with pytest.raises(InputError, match=r"custom.onnx: onnxruntime cannot load it at the "
                                         r"shapes x 1x4: .*com.example:FancyOp"):
        prepare_model(path, cache_dir=tmp_path)

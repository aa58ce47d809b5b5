"""Bad input is one line naming the file and the field, exit code 2, and no traceback.

Every file here is real and broken the way users break them: a model cut in half by a failed
download, a model with dynamic shapes, data of the wrong shape, TOML typos, a store that
cannot be opened. A model that loads but holds an op no backend compiles is not bad input:
its trials fail with the backend's own message and the run goes on.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autotune.cli import main
from autotune.paths import TARGETS, ZOO_MODELS_DIR

pytestmark = [pytest.mark.openvino, pytest.mark.reliability]
QUICK = ["--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05", "--no-progress",
         "--max-spread", "0"]


def _error_line(capsys) -> str:
    """The one error line of a failed command (a no-data warning may precede it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "WARNING" not in line and line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("autotune: error: ")
    return lines[0]


def _target_toml(workspace, replace: str, by: str):
    text = (TARGETS.builtin / "host-cpu.toml").read_text()
    assert replace in text
    path = workspace / "target.toml"
    path.write_text(text.replace(replace, by, 1))
    return path


SPACE = """description = "one int8 config"
[integer]
weight_dtypes = {weights}
activation_dtypes = ["uint8"]
activation_schemes = ["asymmetric"]
granularities = ["per_channel"]
calibrations = ["minmax"]
{extra}
"""


def _one_op_model(path, op: str, domain: str = "", **attributes):
    """Conv then ``op`` on a 1x3x16x16 input: a real model that onnxruntime may or may not run."""
    weight = numpy_helper.from_array(
        np.random.default_rng(0).normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node(op, ["conv"], ["out"], domain=domain, **attributes)]
    graph = helper.make_graph(
        nodes, "one_op", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                        [1, 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [weight])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_truncated_model(workspace, capsys):
    whole = (ZOO_MODELS_DIR / "digits_cnn.onnx").read_bytes()
    (workspace / "half.onnx").write_bytes(whole[: len(whole) // 2])  # a failed download
    assert main(["run", "--model", "half.onnx", *QUICK]) == 2
    assert "half.onnx: not a readable ONNX model" in _error_line(capsys)


def test_a_file_that_is_not_onnx(workspace, capsys):
    (workspace / "model.onnx").write_text("name,score\nresnet,0.76\n")
    assert main(["run", "--model", "model.onnx", *QUICK]) == 2
    assert "model.onnx: not a readable ONNX model" in _error_line(capsys)


@pytest.mark.readme_claim("any other dynamic dimension is an error naming it, with the --shape to "
                          "give (exit 2)")
def test_dynamic_shapes_with_no_shape_given(workspace, tiny_model, capsys):
    """A dynamic batch takes the default (1); a dynamic height has none and needs --shape."""
    model = onnx.load(tiny_model)
    height = model.graph.input[0].type.tensor_type.shape.dim[2]
    height.ClearField("dim_value")
    height.dim_param = "height"
    onnx.save(model, workspace / "dynamic.onnx")
    assert main(["run", "--model", "dynamic.onnx", *QUICK]) == 2
    line = _error_line(capsys)
    assert ("dynamic.onnx: dimension 2 ('height') of input 'input' is dynamic and has no "
            "default") in line and "give --shape input=1x3xheightx16" in line


@pytest.mark.parametrize("shape, dtype, message", [
    ((8, 3, 8, 8), np.float32, "input: array of shape (8, 3, 8, 8) does not fit the model "
                               "input shape (1, 3, 16, 16); expected (N, 3, 16, 16)"),
    ((8, 1, 3, 16, 16), np.float32, "array of shape (8, 1, 3, 16, 16) does not fit"),
    ((8, 3, 16, 16), np.float64, "input: dtype float64 does not match the model input dtype "
                                 "float32"),
])
def test_calibration_data_that_does_not_fit_the_model(workspace, tiny_model, capsys, shape,
                                                      dtype, message):
    np.savez(workspace / "data.npz", input=np.zeros(shape, dtype))
    assert main(["run", "--model", str(tiny_model), "--data", "data.npz", *QUICK]) == 2
    line = _error_line(capsys)
    assert "data.npz: " in line and message in line


@pytest.mark.parametrize("option, make, message", [
    ("--target", lambda ws: _target_toml(ws, "cores = 0", 'cores = "two"'),
     "target.toml: cores: expected a count or CPU numbers and ranges such as \"0-3,6\", "
     "got 'two'"),
    ("--target", lambda ws: _target_toml(ws, 'device = "cpu"', 'devcie = "cpu"'),
     "target.toml: devcie: unknown key (did you mean 'device'?)"),
    ("--space", lambda ws: _write(ws / "space.toml", SPACE.format(weights='"int8"', extra="")),
     "space.toml: integer.weight_dtypes: expected a list, got str 'int8'"),
    ("--space", lambda ws: _write(ws / "space.toml", SPACE.format(
        weights='["int8"]', extra="calibration_samples = 64")),
     "space.toml: integer.calibration_samples: unknown key"),
    ("--space", lambda ws: _write(ws / "space.toml", "[integer\n"), "space.toml: not valid TOML"),
    ("--target", lambda ws: "mars", "unknown target 'mars'"),
    ("--space", lambda ws: "nope", "unknown search space 'nope'"),
], ids=["target wrong type", "target unknown key", "space wrong type", "space unknown key",
        "space not TOML", "unknown target", "unknown space"])
@pytest.mark.readme_claim("a target or space TOML typo: one line naming the file and the field, "
                          "exit 2")
def test_a_target_or_space_with_a_typo(workspace, tiny_model, capsys, option, make, message):
    assert main(["run", "--model", str(tiny_model), option, str(make(workspace)), *QUICK]) == 2
    assert message in _error_line(capsys)


def _write(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize("url, message", [
    ("nosuchdb://x", "cannot open store (Can't load plugin"),
    ("sqlite:////proc/autotune/results.db", "cannot create /proc/autotune"),
    ("sqlite:///{ws}/notes.db", "cannot open store (file is not a database)"),
    ("sqlite:///{ws}", "cannot open store (unable to open database file)"),
])
def test_a_store_that_cannot_be_opened(workspace, tiny_model, capsys, url, message):
    (workspace / "notes.db").write_text("not a database, just notes\n")
    url = url.format(ws=workspace)
    assert main(["run", "--model", str(tiny_model), "--store", url, *QUICK]) == 2
    line = _error_line(capsys)
    assert f"--store {url}: " in line and message in line


@pytest.mark.parametrize("option, value, message", [
    ("--min-repeats", "0", "--min-repeats: must be at least 1; got 0"),
    ("--max-spread", "-0.1", "--max-spread: must not be negative"),
])
def test_a_protocol_that_cannot_measure(workspace, tiny_model, capsys, option, value, message):
    args = [arg for arg in QUICK if arg not in ("--min-repeats", "5")]
    assert main(["run", "--model", str(tiny_model), *args, option, value]) == 2
    assert message in _error_line(capsys)


def test_a_model_onnxruntime_cannot_run_is_bad_input_and_leaves_nothing(workspace, capsys):
    """The fp32 reference comes from onnxruntime: a model it cannot run has no reference."""
    _one_op_model(workspace / "rfft.onnx", "Rfft", "com.microsoft", signal_ndim=1)
    assert main(["run", "--model", "rfft.onnx", *QUICK]) == 2
    line = _error_line(capsys)
    assert "rfft.onnx: onnxruntime cannot run the fp32 model" in line and "Rfft" in line
    runs = workspace / "results" / "runs"
    assert not runs.exists() or not list(runs.iterdir())  # no half-made run left behind


def test_an_op_no_backend_compiles_fails_its_trials_with_the_backend_message(
        workspace, capsys, check_store):
    """Det: onnxruntime runs it (so there is a reference), OpenVINO has no conversion for it."""
    _one_op_model(workspace / "det.onnx", "Det")
    assert main(["run", "--model", "det.onnx", "--space", "smoke", *QUICK]) == 1  # none ok
    run_id = capsys.readouterr().out.split()[1]
    trials = check_store(run_id, finished=True, count=2)  # every trial tried and stored
    for trial in trials:
        assert trial.status == "compile_error"
        assert "No conversion rule found for operations: Det" in trial.error

import pytest

from autotune.config import FP32
from autotune.errors import InputError
from autotune.space import builtin_spaces, load_space
from autotune.target import builtin_targets, load_target


def test_default_space_covers_what_the_spine_promises():
    space = load_space("default")
    configs = space.configs
    assert configs[0] == FP32
    assert any(c.weight_dtype == "bf16" for c in configs)
    quantized = [c for c in configs if c.is_quantized]
    assert {c.activation_dtype for c in quantized} == {"int8", "uint8"}
    assert {c.activation_scheme for c in quantized} == {"symmetric", "asymmetric"}
    assert {c.granularity for c in quantized} == {"per_tensor", "per_channel"}
    assert {c.calibration for c in quantized} >= {"minmax", "percentile"}
    assert len(set(configs)) == len(configs) >= 12


def test_every_builtin_space_and_target_loads():
    assert {s.name for s in builtin_spaces()} >= {"default", "smoke"}
    names = {t.name for t in builtin_targets()}
    assert "host-cpu" in names
    host = load_target("host-cpu")
    assert host.openvino_device == "CPU" and host.tvm_target["kind"] == "llvm"
    assert host.threads >= 1


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, expected", [
    ("[integer]\nweight_dtype = ['int8']\n", "integer.weight_dtype: unknown key"),
    ("[integer]\nweight_dtypes = 'int8'\n", "integer.weight_dtypes: expected a list"),
    ("[float]\ndtypes = ['fp64']\n", "float.dtypes[0]: must be one of"),
    ("[integer]\nweight_dtypes = ['int8']\n", "integer.activation_dtypes: required key"),
    ("descripton = 'typo'\n", "descripton: unknown key"),
    ("[float\n", "not valid TOML"),
])
def test_space_typos_name_file_and_key(tmp_path, text, expected):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(InputError) as error:
        load_space(path)
    assert path in str(error.value) and expected in str(error.value)


@pytest.mark.parametrize("text, expected", [
    ("device = 'cpu'\narch = 'x86_64'\ncores = 'two'\n[openvino]\ndevice = 'CPU'\n",
     "cores: expected an integer"),
    ("device = 'cpu'\narch = 'x86_64'\n[openvino]\ndevcie = 'CPU'\n", "openvino.devcie: unknown"),
    ("device = 'tpu'\narch = 'x86_64'\n[openvino]\ndevice = 'CPU'\n", "device: must be one of"),
    ("device = 'cpu'\narch = 'x86_64'\n", "needs an [openvino] device or a [tvm] target"),
    ("device = 'cpu'\narch = 'x86_64'\n[tvm]\ntarget = {mcpu = 'x'}\n", "needs a 'kind'"),
])
def test_target_errors_name_file_and_key(tmp_path, text, expected):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(InputError) as error:
        load_target(path)
    assert path in str(error.value) and expected in str(error.value)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(InputError, match="unknown target 'mars'.*host-cpu"):
        load_target("mars")
    with pytest.raises(InputError, match="unknown search space 'nope'.*default"):
        load_space("nope")

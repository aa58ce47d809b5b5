import pytest

from autotune.config import FP32
from autotune.errors import InputError
from autotune.space import known_spaces, load_space
from autotune.target import known_targets, load_target


@pytest.mark.readme_claim("the default space: fp32, bf16, int8 x int8/uint8, symmetric or "
                          "asymmetric, per-tensor or per-channel, several calibrations")
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
    assert {s.name for s in known_spaces()} >= {"default", "smoke"}
    names = {t.name for t in known_targets()}
    assert "host-cpu" in names
    host = load_target("host-cpu")
    assert host.backend_table("openvino") == {"device": "CPU"}
    assert host.backend_table("tvm")["target"]["kind"] == "llvm"
    assert host.threads >= 1


@pytest.mark.readme_claim("a space may give a backend only some of its configs ([backends.tvm] "
                          "configs)")
def test_a_backend_can_measure_part_of_a_space(tmp_path):
    from autotune.driver import space_candidates

    path = _write(tmp_path, "part.toml", """
[float]
dtypes = ["bf16"]
[integer]
weight_dtypes = ["int8"]
activation_dtypes = ["uint8"]
activation_schemes = ["asymmetric"]
granularities = ["per_channel", "per_tensor"]
calibrations = ["minmax"]
[backends.tvm]
configs = ["w:int8:sym:per_channel a:uint8:asym cal:minmax"]
""")
    space = load_space(path)
    int8 = next(c for c in space.configs if c.granularity == "per_channel")
    assert len(space.configs) == 4
    candidates, _ = space_candidates(space, [load_target("host-cpu")], ("openvino", "tvm"))
    measured = {(c.backend, c.config) for c in candidates}
    # fp32 is every backend's baseline, so it is always measured.
    assert {config for backend, config in measured if backend == "tvm"} == {FP32, int8}
    assert {config for backend, config in measured if backend == "openvino"} == set(
        space.configs)


@pytest.mark.readme_claim("tuning runs inside the trial, so the default trial timeout grows by 5 s "
                          "per tuning trial")
def test_the_default_trial_timeout_grows_with_the_tuning_budget():
    from autotune.settings import DEFAULT_TUNING_TRIALS, RunSpec

    untuned = RunSpec(tuning_trials=0).timeout_s
    assert RunSpec().timeout_s == untuned + 5 * DEFAULT_TUNING_TRIALS
    assert RunSpec(tuning_trials=200).timeout_s == untuned + 1000
    assert RunSpec(tuning_trials=200, trial_timeout_s=30).timeout_s == 30  # the flag wins


@pytest.mark.readme_claim("autotune run: default model, space and target, OpenVINO and TVM")
def test_the_default_run_measures_both_backends():
    from autotune.cli.run import default_backends
    from autotune.driver import space_candidates

    space = load_space("default")
    candidates, unavailable = space_candidates(space, [load_target("host-cpu")], default_backends())
    backends = [candidate.backend for candidate in candidates]
    backends += [candidate.backend for candidate, _ in unavailable]
    # OpenVINO measures the whole space; TVM, which tunes, one config per kernel family.
    assert backends.count("openvino") == len(space.configs)
    tvm = {c.config for c in candidates if c.backend == "tvm"}
    assert FP32 in tvm and {c.activation_dtype for c in tvm if c.is_quantized} == {"uint8",
                                                                                  "int8"}


def test_a_target_or_backend_named_twice_is_one_set_of_candidates():
    from autotune.driver import space_candidates

    space = load_space("smoke")
    host = load_target("host-cpu")
    once, _ = space_candidates(space, [host], ("openvino",))
    twice, _ = space_candidates(space, [host, load_target("host-cpu")], ("openvino", "openvino"))
    assert list(twice) == list(once) and len(once) == len(space.configs)


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
    ("[backends.tvn]\nconfigs = []\n", "backends.tvn: unknown backend"),
    ("[backends.tvm]\nconfig = []\n", "backends.tvm.config: unknown key"),
    ("[backends.tvm]\nconfigs = ['bf16']\n", "backends.tvm.configs[0]: 'bf16' is not a "
                                                "config of this space"),
    ("[backends.tvm]\nconfigs = ['a:int8']\n", "backends.tvm.configs[0]:"),
])
def test_space_typos_name_file_and_key(tmp_path, text, expected):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(InputError) as error:
        load_space(path)
    assert path in str(error.value) and expected in str(error.value)


@pytest.mark.parametrize("text, expected", [
    ("device = 'cpu'\narch = 'x86_64'\ncores = 'two'\n[openvino]\ndevice = 'CPU'\n",
     "cores: expected a count or CPU numbers"),
    ("device = 'cpu'\narch = 'x86_64'\n[openvino]\ndevcie = 'CPU'\n", "openvino.devcie: unknown"),
    ("device = 'tpu'\narch = 'x86_64'\n[openvino]\ndevice = 'CPU'\n", "device: must be one of"),
    ("device = 'cpu'\narch = 'x86_64'\n", "needs an [openvino] device or a [tvm] target"),
    ("device = 'cpu'\narch = 'x86_64'\n[tvm]\ntarget = {mcpu = 'x'}\n", "needs a 'kind'"),
    ("device = 'cpu'\narch = 'x86_64'\n[tvn]\ntarget = {kind = 'llvm'}\n",
     "tvn: unknown key (did you mean 'tvm'?)"),
    ("device = 'cpu'\narch = 'x86_64'\n[openvino]\ndevice = 'CPU'\n[tensorrt]\nx = 1\n",
     "tensorrt: unknown table: no backend of that name (backends: openvino, tvm"),
    ("device = 'cpu'\narch = 'x86_64'\n[openvino]\n", "needs an [openvino] device"),
    ("device = 'cpu'\narch = 'x86_64'\n[openvino]\ndevice = 'CPU'\n[cost]\n"
     "price_per_hour = '0.34'\n", "cost.price_per_hour: expected"),
    ("device = 'cpu'\narch = 'x86_64'\n[openvino]\ndevice = 'CPU'\n[cost]\n"
     "price_per_hour = 0\n", "cost.price_per_hour: must be above 0"),
    ("device = 'cpu'\narch = 'x86_64'\n[openvino]\ndevice = 'CPU'\n[cost]\nprice = 1\n",
     "cost.price: unknown key (known: price_per_hour)"),
])
def test_target_errors_name_file_and_key(tmp_path, text, expected):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(InputError) as error:
        load_target(path)
    assert path in str(error.value) and expected in str(error.value)


@pytest.mark.readme_claim("cost per million inferences from the target's [cost] price_per_hour")
def test_a_target_price_gives_the_cost_per_million_inferences(tmp_path):
    from autotune.config import FP32
    from autotune.trial import Trial

    path = _write(tmp_path, "priced.toml", "device = 'cpu'\narch = 'x86_64'\n[openvino]\n"
                  "device = 'CPU'\n[cost]\nprice_per_hour = 0.36\n")
    target = load_target(path)
    assert target.price_per_hour == 0.36
    trial = Trial(run_id="r", model="m", model_hash="h", config=FP32, backend="openvino",
                  target=target.name, status="ok", latency_median_ms=2.0,
                  price_per_hour=target.price_per_hour)
    # 0.36 USD/h = 1e-4 USD/s; 1e6 inferences of 2 ms = 2000 s.
    assert trial.cost_per_million_usd == pytest.approx(0.2)
    assert Trial(**{**trial.__dict__, **Trial.facts_from_json(trial.facts_json())}) == trial
    assert load_target("host-cpu").price_per_hour is None


def test_unknown_names_list_the_known_ones():
    with pytest.raises(InputError, match="unknown target 'mars'.*host-cpu"):
        load_target("mars")
    with pytest.raises(InputError, match="unknown search space 'nope'.*default"):
        load_space("nope")

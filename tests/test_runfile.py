"""Run files and campaigns (``autotune run -f``): the file's format and its errors, flags over
the file, each cell's baseline, the campaign in the store and the runs listing; then one
campaign end to end on real OpenVINO.

Everything but the last test reads files and stores only: no model is compiled.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from autotune.cli import build_parser, main
from autotune.cli.run import given_settings
from autotune.config import FP32
from autotune.errors import InputError
from autotune.gate import previous_comparable_run
from autotune.runfile import apply_flags, cells, load_run_file
from autotune.settings import RunSpec
from autotune.store import Run, Store
from autotune.trial import Trial

EXAMPLE = Path(__file__).parents[1] / "examples" / "nightly.toml"


def write(folder: Path, text: str, name: str = "nightly.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.readme_claim("a run file describes the nightly matrix (examples/nightly.toml)")
def test_the_example_run_file_is_valid():
    planned = cells(load_run_file(EXAMPLE))
    assert [cell.spec.runtime for cell in planned] == [(), ("openvino==2025.4.0",)]
    assert {(c.spec.model, c.spec.space, c.spec.backends, c.spec.tuning_trials, c.spec.passes)
            for c in planned} == {("digits-cnn", "default", ("openvino", "tvm"), 64, 3)}
    assert planned[1].label == "model digits-cnn, space default, runtime openvino==2025.4.0"


@pytest.mark.readme_claim("each cell, models x spaces (or configs) x runtimes, is one run")
def test_each_model_space_and_runtime_is_a_cell(tmp_path):
    (tmp_path / "models").mkdir()
    path = write(tmp_path, """
spaces = ["default", "spaces/mine.toml"]
targets = ["host-cpu", "boards/pi.toml"]
runtimes = ["installed", ["openvino==2025.4.0", "onnxruntime==1.22.0"]]
budget = 4
min_time = 1
[[models]]
model = "digits-cnn"
[[models]]
model = "models/mine.onnx"
data = "data/mine.npz"
metric = "cosine"
shape = ["image=1x3x8x8"]
""")
    planned = cells(load_run_file(path))
    assert len(planned) == 2 * 2 * 2 and [c.index for c in planned] == list(range(1, 9))
    mine = planned[-1].spec
    # Paths are taken from the run file's folder; names stay names.
    assert (mine.model, mine.data, mine.metric, mine.shapes) == (
        str(tmp_path / "models/mine.onnx"), str(tmp_path / "data/mine.npz"), "cosine",
        ("image=1x3x8x8",))
    assert mine.space == str(tmp_path / "spaces/mine.toml")
    assert mine.targets == ("host-cpu", str(tmp_path / "boards/pi.toml"))
    assert mine.runtime == ("openvino==2025.4.0", "onnxruntime==1.22.0")
    assert (mine.budget, mine.min_time_s, mine.passes) == (4, 1.0, RunSpec().passes)
    assert [(c.spec.model, c.spec.space, c.spec.runtime) for c in planned[:2]] == [
        ("digits-cnn", "default", ()), ("digits-cnn", "default", mine.runtime)]

    configs = cells(load_run_file(write(tmp_path, 'configs = ["fp16"]\nmodels = ["digits-cnn"]')))
    assert [(c.spec.configs, c.spec.runtime) for c in configs] == [(("fp16",), ())]


@pytest.mark.parametrize(("text", "message"), [
    ("budgett = 4", "budgett: unknown key (did you mean 'budget'?)"),
    ('budget = "4"', "budget: expected an integer, got str '4'"),
    ("passes = 1.5", "passes: expected an integer, got float 1.5"),
    ("max_steal = true", "max_steal: expected an integer or a number, got a boolean"),
    ('targets = "host-cpu"', "targets: expected a list, got str 'host-cpu'"),
    ("backends = [1]", "backends[0]: expected a string, got int 1"),
    ("runtimes = [2025]", "runtimes[0]: expected 'installed', a pip requirement or a list"),
    ('strategy = "best"', "strategy: must be one of exhaustive, random, guided; got 'best'"),
    ("passes = 0", "passes: must be at least 1; got 0"),
    ("max_other_cpu = 2", "max_other_cpu: must be a fraction between 0 and 1; got 2.0"),
    ('spaces = ["default"]\nconfigs = ["fp16"]', "configs: give spaces or configs, not both"),
    ('[[models]]\nmodel = "digits-cnn"\nmetrik = "top1"',
     "models[0].metrik: unknown key (did you mean 'metric'?)"),
    ('[[models]]\ndata = "d.npz"', "models[0].model: required key is missing"),
    ('[[models]]\nmodel = "m.onnx"\nshape = "x=1"', "models[0].shape: expected a list"),
    ('[[models]]\nmodel = "m.onnx"\nshape = ["x"]',
     "models[0].shape: --shape x: expected INPUT=DIMS"),
    ("models = [3]", "models[0]: expected a table or a string, got int 3"),
    ("spaces = []", "spaces: list at least one space (or give configs)"),
    ("budget = ", "not valid TOML"),
])
def test_a_bad_run_file_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as error:
        cells(load_run_file(path))
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


@pytest.mark.readme_claim("a bad run file is an input error naming the file and key (exit 2) "
                          "before anything runs")
def test_a_bad_run_file_exits_2_with_one_line_before_anything_runs(workspace, capsys):
    path = write(workspace, 'models = ["digits-cnn"]\nbudgett = 4')
    assert main(["run", "-f", str(path)]) == 2
    assert capsys.readouterr().err == (f"autotune: error: {path}: budgett: unknown key (did "
                                       f"you mean 'budget'?)\n")
    path = write(workspace, 'models = ["missing.onnx", "digits-cnn"]')
    assert main(["run", "-f", str(path)]) == 2  # a name no cell can find: before the first
    assert "unknown model" in capsys.readouterr().err
    assert not Store("sqlite:///results/autotune.db").runs()


@pytest.mark.readme_claim("any run flag given with -f overrides the file's value for every cell")
def test_flags_the_user_gave_override_the_file(tmp_path):
    path = write(tmp_path, """
passes = 1
min_time = 0.5
budget = 8
runtimes = ["installed", "openvino==2025.4.0"]
spaces = ["default", "full"]
models = ["digits-cnn", "resnet18"]
""")

    def planned(*flags: str):
        args = build_parser().parse_args(["run", "-f", str(path), *flags])
        return cells(apply_flags(load_run_file(args.file), given_settings(args)))

    untouched = planned()
    assert len(untouched) == 8 and {c.spec.passes for c in untouched} == {1}
    # A flag given with its default value still overrides the file; absent flags do not.
    given = planned("--passes", "3", "--budget", "2", "--runtime", "onnxruntime==1.22.0",
                    "--runtime", "numpy==2.2.6", "--backend", "openvino")
    assert len(given) == 4
    assert {(c.spec.passes, c.spec.budget, c.spec.min_time_s, c.spec.runtime, c.spec.backends)
            for c in given} == {(3, 2, 0.5, ("onnxruntime==1.22.0", "numpy==2.2.6"),
                                 ("openvino",))}
    one_model = planned("--model", "minilm", "--space", "int4")
    assert [(c.spec.model, c.spec.space) for c in one_model] == [("minilm", "int4")] * 2
    configs = planned("--config", "fp16")
    assert {(c.spec.configs, c.spec.model) for c in configs} == {
        (("fp16",), "digits-cnn"), (("fp16",), "resnet18")} and len(configs) == 4
    with pytest.raises(InputError, match="--data with a run file .* needs --model"):
        planned("--data", "x.npz")


def test_without_a_file_the_flags_and_defaults_are_the_runs(workspace):
    args = build_parser().parse_args(["run", "--budget", "2", "--target", "host-cpu"])
    assert given_settings(args) == {"budget": 2, "targets": ("host-cpu",)}
    assert main(["run", "-f", "nightly.toml", "--resume", "latest"]) == 2


def stored(store: Store, run_id: str, day: int, campaign: str | None,
           runtime: tuple[str, ...] = (), status: str = "finished") -> None:
    """A finished run on day ``day`` with one fp32 trial of the same model."""
    store.create_run(Run(
        id=run_id, created_at=f"2026-11-{day:02d}T02:00:00+00:00", finished_at=None,
        status=status, model="digits", model_path="/m/digits.onnx", model_hash="d1",
        space="default", metric="fidelity", synthetic_data=True, reference_accuracy=None,
        settings=RunSpec(model="digits", backends=("openvino",), runtime=runtime),
        host={}, versions={}, campaign=campaign))
    latencies = [float(v) for v in np.random.default_rng(day).lognormal(0.0, 0.03, 50)]
    store.add_trial(Trial(run_id=run_id, model="digits", model_hash="d1", config=FP32,
                          backend="openvino", target="host-cpu", status="ok",
                          latencies_ms=latencies, latency_median_ms=float(np.median(latencies)),
                          tuning_trials=64))


OLD = ("openvino==2025.4.0",)


@pytest.mark.readme_claim("--baseline previous judges each cell against the same cell of an "
                          "earlier night")
def test_each_cell_is_judged_against_the_same_cell_of_an_earlier_night(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/results/autotune.db")
    stored(store, "plain", 1, None)
    stored(store, "n1-installed", 2, "nightly-1")
    stored(store, "n1-old", 3, "nightly-1", OLD)
    stored(store, "n2-installed", 4, "nightly-2")
    stored(store, "n2-old", 5, "nightly-2", OLD)

    def baseline(run_id: str) -> str | None:
        run = store.get_run(run_id)
        found = previous_comparable_run(store, run, store.trials(run_id))
        return None if found is None else found.id

    # Never tonight's other runtime; a run of no campaign is a baseline for its cell.
    assert [baseline(run) for run in ("n1-installed", "n1-old", "n2-installed", "n2-old")] == [
        "plain", None, "n1-installed", "n1-old"]
    # A run of its own keeps the plain rule: the latest comparable finished run.
    stored(store, "plain-2", 6, None)
    assert baseline("plain-2") == "n2-old"


@pytest.mark.readme_claim("autotune runs --campaign ID (or latest) lists one campaign's runs")
def test_campaigns_in_the_runs_listing(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/results/autotune.db"
    monkeypatch.setenv("AUTOTUNE_STORE", url)
    assert main(["runs", "--campaign", "latest"]) == 2
    assert "--campaign latest: no campaign in" in capsys.readouterr().err
    store = Store(url)
    stored(store, "n1-installed", 2, "nightly-1")
    stored(store, "n2-installed", 4, "nightly-2")
    stored(store, "n2-old", 5, "nightly-2", OLD)
    stored(store, "plain", 6, None)
    assert store.latest_campaign() == "nightly-2"
    assert main(["runs", "--campaign", "latest", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["campaign"], r["runtime"]) for r in rows] == [
        ("n2-installed", "nightly-2", []), ("n2-old", "nightly-2", list(OLD))]
    assert main(["runs", "--campaign", "nightly-1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-2:] == ["runtime", "campaign"] and len(table) == 3
    assert table[2].split()[-2:] == ["installed", "nightly-1"]


# End to end: three cells, two tiny CNNs (fp32 only, one short pass each on OpenVINO) with a
# model that is not ONNX between them. The gate's minimum effect is wide: which baseline each
# cell gets is tested above; the shared VM's noise is tests/test_gate.py's matter.
CAMPAIGN = """
configs = ["fp32"]
backends = ["openvino"]
passes = 1
min_repeats = 5
min_time = 0.05
max_spread = 0
max_other_cpu = 0
max_steal = 0
models = [{models}]
"""


@pytest.mark.openvino
@pytest.mark.readme_claim("autotune run -f nightly.toml: every cell of a run file, one campaign")
def test_a_campaign_end_to_end(workspace, tiny_model, capsys):
    from autotune.testing.models import tiny_cnn

    tiny_cnn(workspace / "narrow.onnx", channels=4)
    (workspace / "broken.onnx").write_text("not a model")
    path = write(workspace, CAMPAIGN.format(models=f'"{tiny_model}", "broken.onnx", '
                                                   f'"narrow.onnx"'))
    junit = workspace / "junit.xml"
    assert main(["run", "-f", str(path), "--baseline", "previous", "--fail-on", "regression",
                 "--threshold", "5", "--junit", str(junit), "--json", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    campaign = json.loads(out)
    assert "cell 2/3: model" in err and "cell 2: bad input:" in err and "broken.onnx" in err
    # The broken cell cost itself only: the next one ran, and the exit code is the worst.
    good, broken, narrow = campaign["cells"]
    assert (good["exit_code"], broken["exit_code"], narrow["exit_code"]) == (0, 2, 0)
    assert broken["run_id"] is None and "broken.onnx" in broken["error"]
    runs = Store("sqlite:///results/autotune.db").runs(campaign["campaign"])
    assert [run.id for run in runs] == [good["run_id"], narrow["run_id"]]
    assert [run.model for run in runs] == ["tiny", "narrow"]
    assert [cell["gate"]["baseline"] for cell in (good, narrow)] == [None, None]
    summary = Path(campaign["summary"]).read_text()
    assert (workspace / "reports" / "campaigns" / "latest.md").read_text() == summary
    assert all(f"| {cell['run_id']} | 1/1 |" in summary for cell in (good, narrow))
    suites = ET.parse(junit).getroot()
    assert (suites.get("tests"), suites.get("errors"), suites.get("failures")) == ("3", "1", "0")


def readme_nightly_script() -> str:
    """The three-line nightly script, as README shows it under "Nightly"."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Nightly: a run file and campaigns", 1)[1]
    return section.split("```", 2)[1].strip()


@pytest.mark.openvino
@pytest.mark.readme_claim("the nightly script: run -f, publish, reports/campaigns/latest.md")
def test_readmes_nightly_script_runs_two_nights(workspace, tiny_model):
    """README's script, run by bash as a nightly job would: the first night has no baseline
    and passes; the second is gated against it; both publish their reports."""
    import os
    import subprocess
    import sys

    script = readme_nightly_script()
    assert len(script.splitlines()) == 3 and "autotune run -f nightly.toml" in script
    write(workspace, CAMPAIGN.format(models=f'"{tiny_model}"'))
    published, summary = workspace / "published", workspace / "step-summary.md"
    published.mkdir()
    env = dict(os.environ, PUBLISH_DIR=str(published), GITHUB_STEP_SUMMARY=str(summary),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for night in (1, 2):
        # A generous threshold: the gate must run, not judge this VM's noise.
        nightly = script.replace("--fail-on regression", "--fail-on regression --threshold 5")
        done = subprocess.run(["bash", "-c", nightly],
                              cwd=workspace, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (night, done.stdout[-2000:], done.stderr[-2000:])
    junit = ET.parse(workspace / "results" / "junit.xml").getroot()
    assert junit.get("failures") == "0" and junit.get("errors") == "0"
    assert (published / "reports" / "campaigns" / "latest.md").is_file()
    site = (published / "history" / "index.html").read_text()  # `autotune publish`
    assert site.count("<code>" + Store("sqlite:///results/autotune.db").get_run().id) == 1
    runs = Store("sqlite:///results/autotune.db").runs()
    assert len({run.campaign for run in runs}) == 2  # one campaign per night
    assert summary.read_text().count("| 1/1 |") == 2  # each night appended its table

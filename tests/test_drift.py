"""Frontier drift and the change points a run's report and ``--fail-on change`` judge, on
synthetic trials and a store of made-up nightly runs (nothing compiles here)."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from test_report_html import FP16, INT8, INT8_PT, make_run, make_trial, page_text

from autotune.cli import build_parser, main
from autotune.cli.campaign import gate_args
from autotune.cli.junit import Suite, write_suites
from autotune.cli.one_run import change_gate
from autotune.config import FP32
from autotune.drift import DOMINATED, JOINED_FRONT, RECOMMENDED, frontier_drift
from autotune.errors import InputError
from autotune.regress import Thresholds
from autotune.report import gather_from_store, render_markdown
from autotune.report.html import render_html
from autotune.runfile import load_run_file
from autotune.store import Store

OLD = {"openvino": "2025.4.0", "onnxruntime": "1.23.0", "autotune": "abc123"}
NEW = {**OLD, "openvino": "2026.0.0"}


def night(run_id: str, figures: dict, drop: dict | None = None) -> list:
    """One run's trials: config -> (backend, latency ms), memory 10 MiB, accuracy drop from
    ``drop`` (0.004 for the others)."""
    return [make_trial(config, ms, (drop or {}).get(config, 0.004), backend=backend,
                       run_id=run_id)
            for config, (backend, ms) in figures.items()]


# Frontier drift: a pure function over two runs' trials

BEFORE = {FP32: ("openvino", 2.0), INT8: ("openvino", 0.8), INT8_PT: ("tvm", 1.5),
          FP16: ("tvm", 2.5)}
DROPS = {FP32: 0.0, FP16: 0.0001}


@pytest.mark.readme_claim("Frontier drift names the previous recommendation now dominated, and by "
                          "what")
def test_a_runtime_that_slows_the_pick_names_it_and_what_replaced_it():
    after = {**BEFORE, INT8: ("openvino", 1.6), INT8_PT: ("tvm", 1.0), FP16: ("tvm", 1.8)}
    found = frontier_drift(night("a", BEFORE, DROPS), night("b", after, DROPS), 0.01)
    assert [(item.kind, item.after.config, item.after.backend) for item in found] == [
        (DOMINATED, INT8, "openvino"), (RECOMMENDED, INT8_PT, "tvm"), (JOINED_FRONT, FP16, "tvm")]
    assert [(t.config, t.backend) for t in found[0].dominated_by] == [(INT8_PT, "tvm")]
    assert found[0].text == (f"{INT8.label} on openvino/host-cpu, recommended in the previous "
                             f"run, is dominated now by {INT8_PT.label} on tvm/host-cpu "
                             f"(0.8 -> 1.6 ms)")
    assert found[1].text.endswith("dominated in the previous run, is the recommendation now "
                                  "(1.5 -> 1 ms)")
    assert found[2].to_json()["kind"] == "joined_front"


def test_an_unchanged_run_or_a_failed_pick_is_no_drift():
    assert frontier_drift(night("a", BEFORE, DROPS), night("b", BEFORE, DROPS), 0.01) == []
    after = night("b", {**BEFORE, INT8_PT: ("tvm", 1.0)}, DROPS)
    after[1] = make_trial(INT8, None, None, run_id="b", status="runtime_error")
    # The pick failed (compare's finding): INT8_PT, dominated by it before, is the pick now.
    assert [(i.kind, i.after.config) for i in frontier_drift(night("a", BEFORE, DROPS),
                                                             after, 0.01)] == [
        (RECOMMENDED, INT8_PT)]


# Change points of a run's series: the report's section and --fail-on change


def nightly_store(tmp_path, int8_ms: list[float], switch: int | None = None) -> Store:
    """Runs n0, n1, ... a day apart: fp32 at 2 ms, int8 at ``int8_ms[i]``, OpenVINO upgraded
    from run ``switch`` on; 200 samples each, 1% run-to-run noise."""
    store = Store(f"sqlite:///{tmp_path}/store.db")
    rng = np.random.default_rng(7)
    for day, ms in enumerate(int8_ms):
        run_id = f"n{day}"
        versions = NEW if switch is not None and day >= switch else OLD
        store.create_run(make_run(run_id, created_at=f"2026-11-{day + 1:02d}T02:00:00+00:00",
                                  versions=versions))
        for config, median in ((FP32, 2.0), (INT8, ms)):
            samples = median * rng.lognormal(0.0, 0.01) * rng.lognormal(0.0, 0.03, 200)
            store.add_trial(make_trial(config, median, 0.0 if config == FP32 else 0.004,
                                       run_id=run_id, latencies_ms=[float(v) for v in samples],
                                       versions=versions))
    return store


@pytest.fixture(scope="module")
def stepped(tmp_path_factory) -> Store:
    """Eight nights, int8 30% slower from n6 on, when OpenVINO was upgraded."""
    return nightly_store(tmp_path_factory.mktemp("stepped"), [1.0] * 6 + [1.3] * 2, switch=6)


@pytest.mark.readme_claim("Changes since the last comparable runs: change points marked new, "
                          "worse, with their cause")
def test_the_run_that_confirms_a_step_reports_it_new_with_its_cause(stepped):
    facts = gather_from_store(stepped, "n7")
    [found] = facts.changes.changes
    assert (found.change.metric, found.change.run_id, found.new, found.gating) == (
        "latency", "n6", True, True)
    assert found.trial.config == INT8 and found.change.cause == "openvino 2025.4.0 -> 2026.0.0"
    markdown = render_markdown(facts)
    section = markdown[markdown.index("## Changes since the last comparable runs"):]
    assert "1 new and worse" in section and "| run n6 |" in section
    assert "openvino 2025.4.0 -> 2026.0.0 | new, worse |" in section
    text = page_text(render_html(facts))
    assert "Changes since the last comparable runs" in text and "new, worse" in text
    # One run earlier the step has a single run after it: nothing to confirm yet.
    earlier = gather_from_store(stepped, "n6")
    assert earlier.changes.enough_runs and earlier.changes.changes == ()
    assert "None: no change point" in render_markdown(earlier)


@pytest.mark.readme_claim("run --fail-on change exits 1 when this run confirms a new, worse change "
                          "point")
def test_fail_on_change_fails_on_the_confirming_run_only(stepped, tmp_path):
    said = io.StringIO()
    changes, cases = change_gate(stepped, stepped.get_run("n7"), Thresholds(), said)
    assert len(changes.gating) == 1 and changes.to_json()["new_regressions"] == 1
    assert "(new, worse)" in said.getvalue()
    junit = write_suites(tmp_path / "junit.xml", [Suite("changes", cases)])
    [case] = ET.parse(junit).getroot().iter("testcase")
    assert case.get("name").startswith(f"change point latency {INT8.label}")
    assert case.find("failure").get("message").endswith("at run n6: openvino 2025.4.0 -> 2026.0.0")
    changes, cases = change_gate(stepped, stepped.get_run("n5"), Thresholds(), said)
    assert changes.gating == () and [case.failure for case in cases] == [None]


@pytest.mark.readme_claim("the changes section says how many runs there are when fewer than 4")
def test_too_short_a_history_is_said_plainly(tmp_path):
    store = nightly_store(tmp_path, [1.0, 1.0])
    facts = gather_from_store(store, "n1")
    assert not facts.changes.enough_runs
    assert ("Not enough history yet: 2 comparable run(s) so far, this one included; change "
            "points need 4") in render_markdown(facts)


@pytest.mark.readme_claim("--fail-on change needs no --baseline; --fail-on regression does")
def test_fail_on_takes_change_and_regression_and_checks_what_each_needs(tmp_path, capsys):
    args = build_parser().parse_args(["run", "--fail-on", "change", "--fail-on", "regression",
                                      "--baseline", "previous"])
    assert args.fail_on == ["change", "regression"]
    assert main(["run", "--fail-on", "regression", "--store",
                 f"sqlite:///{tmp_path}/s.db"]) == 2
    assert "--fail-on regression needs --baseline" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # argparse's choices: exit 2 with usage
        main(["run", "--fail-on", "sometimes"])
    assert exited.value.code == 2
    # A run file's gate keys mirror the flags; a flag wins.
    path = tmp_path / "nightly.toml"
    path.write_text('baseline = "previous"\nfail_on = ["regression", "change"]\n')
    run_file = load_run_file(path)
    assert (run_file.baseline, run_file.fail_on) == ("previous", ("regression", "change"))
    store = Store(f"sqlite:///{tmp_path}/s.db")
    merged = gate_args(build_parser().parse_args(["run", "-f", str(path)]), run_file, store)
    assert (merged.baseline, merged.fail_on) == ("previous", ["regression", "change"])
    merged = gate_args(build_parser().parse_args(["run", "-f", str(path), "--fail-on",
                                                  "change"]), run_file, store)
    assert merged.fail_on == ["change"]
    path.write_text('fail_on = "often"\n')
    with pytest.raises(InputError, match="fail_on\\[0\\]: must be one of regression, change"):
        load_run_file(path)


@pytest.mark.readme_claim("compare names the frontier drift (text, --json's frontier_drift, "
                          "--format markdown)")
def test_compare_names_the_drift_in_text_json_and_markdown(tmp_path, capsys):
    store = Store(f"sqlite:///{tmp_path}/store.db")
    after = {**BEFORE, INT8: ("openvino", 1.6), INT8_PT: ("tvm", 1.0)}
    for run_id, day, figures in (("a", 1, BEFORE), ("b", 2, after)):
        store.create_run(make_run(run_id, created_at=f"2026-11-0{day}T02:00:00+00:00"))
        for trial in night(run_id, figures, DROPS):
            store.add_trial(trial)
    url = ["--store", store.url]
    main(["compare", "a", "b", "--json", *url])
    drift = json.loads(capsys.readouterr().out)["frontier_drift"]
    assert [(d["kind"], d["config"], d["backend"]) for d in drift] == [
        ("dominated", INT8.label, "openvino"), ("recommended", INT8_PT.label, "tvm")]
    main(["compare", "a", "b", "--format", "markdown", *url])
    assert f"- {INT8.label} on openvino/host-cpu, recommended in the previous run, is " \
           f"dominated now" in capsys.readouterr().out
    main(["compare", "a", "b", *url])
    assert "frontier drift: 2" in capsys.readouterr().out
    facts = gather_from_store(store, "b")
    assert [item.kind for item in facts.drift] == ["dominated", "recommended"]
    assert "## Frontier drift" in render_markdown(facts)
    assert "Frontier drift" in page_text(render_html(facts))

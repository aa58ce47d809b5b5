"""``autotune compare --paired`` on two real runs of a tiny model (OpenVINO)."""

from __future__ import annotations

import json

import pytest

from autotune.cli import main

pytestmark = [pytest.mark.openvino, pytest.mark.slow]
pytest.importorskip("openvino", reason="openvino is not installed")

QUICK = ["--space", "smoke", "--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05",
         "--no-progress",
         "--max-spread", "0"]


@pytest.mark.readme_claim("compare BASELINE CANDIDATE --paired measures the two runs' builds "
                          "again, alternately")
def test_compare_paired_measures_both_runs_again_and_prints_its_verdict(
        workspace, tiny_model, capsys):
    run_ids = []
    for _ in range(2):
        assert main(["run", "--model", str(tiny_model), *QUICK]) == 0
        run_ids.append(capsys.readouterr().out.split()[1])
    code = main(["compare", *run_ids, "--paired", "--rounds", "8", "--json"])
    data = json.loads(capsys.readouterr().out)
    paired = [trial["paired"] for trial in data["trials"] if trial["paired"] is not None]
    assert paired and all(entry["ok"] for entry in paired), paired
    assert all(entry["test"]["rounds"] == 8 for entry in paired)
    assert code == (1 if data["regressions"] else 0)


def test_paired_rounds_must_be_at_least_two(workspace, tiny_model, capsys):
    assert main(["run", "--model", str(tiny_model), *QUICK]) == 0
    run_id = capsys.readouterr().out.split()[1]
    assert main(["compare", run_id, run_id, "--paired", "--rounds", "1"]) == 2
    assert "--rounds" in capsys.readouterr().err

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


def _looks_slower(entry: dict) -> bool:
    """What `--paired suspect` measures again: the samples say slower, or point that way by
    at least the threshold (5%), or a side was measured under contention."""
    kinds = {finding["kind"] for finding in entry["findings"]}
    return bool(kinds & {"slower", "contended"}) or entry["latency"]["ratio"] >= 1.05


@pytest.mark.readme_claim("compare --paired suspect measures only the trials whose samples look "
                          "slower")
def test_compare_paired_suspect_measures_only_what_looks_slower(workspace, tiny_model, capsys,
                                                                monkeypatch):
    assert main(["run", "--model", str(tiny_model), *QUICK]) == 0
    fast = capsys.readouterr().out.split()[1]
    monkeypatch.setenv("AUTOTUNE_INJECT_SLOWDOWN", "0.5")  # every inference 50% slower
    assert main(["run", "--model", str(tiny_model), *QUICK]) == 0
    slow = capsys.readouterr().out.split()[1]
    monkeypatch.delenv("AUTOTUNE_INJECT_SLOWDOWN")
    measured = {}
    for baseline, candidate in ((fast, slow), (slow, fast)):
        main(["compare", baseline, candidate, "--paired", "suspect", "--rounds", "4", "--json"])
        trials = json.loads(capsys.readouterr().out)["trials"]
        assert all((entry["paired"] is not None) == _looks_slower(entry) for entry in trials)
        measured[baseline] = sum(entry["paired"] is not None for entry in trials)
    assert measured[fast] == 2  # both configs got slower: both measured again
    assert measured[slow] < 2  # faster: none, unless a side was contended


def test_paired_rounds_must_be_at_least_two(workspace, tiny_model, capsys):
    assert main(["run", "--model", str(tiny_model), *QUICK]) == 0
    run_id = capsys.readouterr().out.split()[1]
    assert main(["compare", run_id, run_id, "--paired", "--rounds", "1"]) == 2
    assert "--rounds" in capsys.readouterr().err

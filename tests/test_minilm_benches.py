"""The pure parts of benchmarks/accuracy_control.py and benchmarks/minilm_frontier.py: which
stored config is the suite's pick at a budget, what NNCF's log says it reverted, the tables
and result files. The measuring parts run real NNCF and OpenVINO on MiniLM for minutes and
are run by hand (README gives the commands)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from autotune.config import FP32, QuantConfig
from autotune.errors import InputError
from autotune.trial import Trial

_BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str):
    # benchmarks/ is not a package that the tests' sys.path holds; load the script by path.
    spec = importlib.util.spec_from_file_location(f"{name}_bench", _BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


accuracy_control = _load("accuracy_control")
minilm_frontier = _load("minilm_frontier")

PLAIN = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None, "minmax")
KEPT = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None, "minmax",
                   overrides=(("op:Softmax", "fp32"),))
SMOOTHED = QuantConfig("int8", "uint8", "symmetric", "asymmetric", "per_channel", None,
                       "minmax", smoothquant_alpha=0.75)


def _trial(config: QuantConfig, median_ms: float, spearman: float, status: str = "ok") -> Trial:
    trial = Trial("run", "minilm", "hash", config, "openvino", "host-cpu", status)
    if status == "ok":
        trial.latency_median_ms = median_ms
        trial.latency_spread = 0.02
        trial.accuracy = spearman
        trial.accuracy_drop = 0.9 - spearman
    return trial


TRIALS = [_trial(FP32, 20.0, 0.9), _trial(PLAIN, 8.0, 0.7), _trial(KEPT, 12.0, 0.899),
          _trial(SMOOTHED, 10.0, 0.895), _trial(QuantConfig("bf16", "bf16"), 0, 0, "unsupported")]


def test_the_suite_picks_the_fastest_quantized_config_within_the_relative_budget():
    pick = accuracy_control.suite_pick(TRIALS, 0.01)
    # PLAIN is faster but loses 22%; SMOOTHED loses 0.56% and beats KEPT (0.11%) on speed.
    assert pick.best.config == SMOOTHED
    assert (pick.measured, pick.within, pick.baseline.config) == (5, 2, FP32)
    assert accuracy_control.suite_pick(TRIALS, 0.005).best.config == KEPT
    assert accuracy_control.suite_pick(TRIALS, 0.0001).best is None


def test_a_run_without_an_fp32_trial_cannot_say_what_a_drop_is():
    with pytest.raises(InputError, match="fp32"):
        accuracy_control.suite_pick(TRIALS[1:], 0.01)


def test_nncf_log_lines_give_the_reverted_operations_and_the_last_drop():
    lines = ["Accuracy drop: 0.0731 (DropType.RELATIVE)",
             "Accuracy drop with the new quantization scope is 0.0213 (DropType.RELATIVE)",
             "Algorithm completed: achieved required accuracy drop 0.0042 (DropType.RELATIVE)",
             "3 out of 61 were reverted back to the floating-point precision:\n\tMatMul_1"]
    assert accuracy_control.reverted_of(lines) == (3, 61)
    assert accuracy_control.last_drop(lines) == 0.0042
    assert accuracy_control.outcome_of(lines).startswith("Algorithm completed: achieved")
    # A fully quantized model within budget: NNCF reverts nothing and logs no report.
    assert accuracy_control.reverted_of(["Accuracy drop: 0.004 (DropType.RELATIVE)"]) == (0, None)


RESULT = {
    "target": "host-cpu", "max_relative_drop": 0.01, "rounds": 2,
    "fp32": {"spearman": 0.89, "median_ms": 20.0},
    "sides": [{"method": "suite: int8 sq0.75", "configs_measured": 18, "spearman": 0.885,
               "relative_drop": 0.0056, "median_ms": 10.0, "how": "fastest of 4",
               "stored_speedup": 1.9},
              {"method": "NNCF quantize_with_accuracy_control", "configs_measured": 7,
               "spearman": 0.884, "relative_drop": 0.0067, "median_ms": 12.5,
               "how": "7 validation runs", "stored_speedup": None}],
    "suite_at_least_as_fast": True,
}


def test_the_side_by_side_table_gives_each_sides_speedup_over_fp32():
    headers, rows = accuracy_control.table(RESULT)
    assert headers[:3] == ["method", "configs measured", "Spearman"]
    assert [row[5] for row in rows] == ["1.00x", "2.00x", "1.60x"]
    assert rows[1][1:5] == ["18", "0.8850", "0.56%", "10.00"] and rows[1][6] == "1.90x"
    assert rows[2][6] == "-"


def test_show_reprints_a_result_file_and_rejects_anything_else(tmp_path, monkeypatch, capsys):
    good = tmp_path / "result.json"
    good.write_text(json.dumps(RESULT))
    monkeypatch.setattr(sys, "argv", ["accuracy_control.py", "--show", str(good)])
    assert accuracy_control.main() == 0
    out = capsys.readouterr().out
    assert "NNCF quantize_with_accuracy_control" in out and "at least as fast" in out
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"benchmark": "canary"}))
    monkeypatch.setattr(sys, "argv", ["accuracy_control.py", "--show", str(bad)])
    assert accuracy_control.main() == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("argv", [[], ["--store", "sqlite:///x.db", "--max-drop", "1.5"],
                                  ["--store", "sqlite:///x.db", "--rounds", "0"]])
def test_bad_arguments_exit_2(argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["accuracy_control.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        accuracy_control.main()
    assert exit_.value.code == 2


def test_frontier_rows_mark_the_configs_that_meet_the_issues_bar(tmp_path):
    fast = _trial(SMOOTHED, 10.0, 0.895)  # 2.0x, 0.56% drop: meets
    rows = minilm_frontier.table_rows([_trial(FP32, 20.0, 0.9), _trial(KEPT, 12.0, 0.899),
                                       fast, _trial(PLAIN, 0, 0, "compile_error")])
    assert [row["meets"] for row in rows[:3]] == [False, False, True]
    assert rows[2]["speedup"] == 2.0 and rows[2]["on_frontier"]
    assert rows[3]["status"] == "compile_error" and "speedup" not in rows[3]

    class Args:
        out, target, backend, suffix = str(tmp_path), "host-cpu", "openvino", "-test"
        model = "minilm"

    path = minilm_frontier.save(Args, "run", "transformer", 0.9, rows, 3)
    written = json.loads(path.read_text())
    assert written["met_by"] == [SMOOTHED.text] and written["passes"] == 3
    assert path.name.startswith("minilm_frontier-") and path.name.endswith("-test.json")


def _fidelity_trial(config: QuantConfig, median_ms: float, cosine: float) -> Trial:
    trial = Trial("run", "bert-base", "hash", config, "openvino", "host-cpu", "ok")
    trial.latency_median_ms, trial.latency_spread = median_ms, 0.02
    trial.cosine = cosine
    trial.accuracy_drop = 1.0 - cosine  # what the driver stores for a fidelity-only model
    return trial


def test_bert_frontier_rows_score_fidelity_and_write_their_own_file(tmp_path, capsys):
    trials = [_fidelity_trial(FP32, 20.0, 1.0), _fidelity_trial(PLAIN, 8.0, 0.95),
              _fidelity_trial(SMOOTHED, 10.0, 0.995), _fidelity_trial(KEPT, 15.0, 0.999)]
    rows = minilm_frontier.table_rows(trials, fidelity=True)
    # PLAIN is 2.5x but loses 5% of the cosine; SMOOTHED is 2.0x and loses 0.5%: it meets.
    assert [row["meets"] for row in rows] == [False, False, True, False]
    assert rows[2]["fidelity_error"] == pytest.approx(0.005) and "spearman" not in rows[2]
    minilm_frontier.print_rows(rows, fidelity=True)
    printed = capsys.readouterr().out
    assert "1-cosine" in printed and "Spearman" not in printed and "5.00e-03" in printed

    class Args:
        out, target, backend, suffix = str(tmp_path), "host-cpu", "openvino", ""
        model = "bert-base"

    path = minilm_frontier.save(Args, "run", "transformer", None, rows, 1)
    written = json.loads(path.read_text())
    assert path.name.startswith("bert_frontier-") and written["model"] == "bert-base"
    assert written["met_by"] == [SMOOTHED.text] and "fp32_spearman" not in written
    assert written["bar"]["max_fidelity_error"] == minilm_frontier.MAX_FIDELITY_ERROR

"""The flaky-measurement guard: a trial with too wide a spread is measured again, then flagged.

No measurement is faked: the tests set the limit (``--max-spread``) where every real
measurement is noisy (0.01% of the median) or none is (1000%), and check what the run did.
"""

import pytest

from autotune.cli import main
from autotune.config import FP32
from autotune.measure import latency_stats

pytestmark = [pytest.mark.openvino, pytest.mark.reliability]
# One trial (fp32) and one pass keep this cheap; three measurements of it run when it is noisy.
QUICK = ["--backend", "openvino", "--min-repeats", "5", "--min-time", "0.05", "--no-progress",
         "--space", "smoke", "--budget", "1", "--passes", "1"]


@pytest.mark.readme_claim("a trial spread above --max-spread is measured again, twice at most, "
                          "then flagged noisy")
def test_a_noisy_trial_is_measured_again_then_flagged(workspace, tiny_model, capsys,
                                                      check_store):
    assert main(["run", "--model", str(tiny_model), *QUICK, "--max-spread", "0.0001"]) == 0
    run_id = capsys.readouterr().out.split()[1]
    (trial,) = check_store(run_id, finished=True, count=1)
    assert trial.config == FP32 and trial.ok  # still a result: noisy is a flag, not a failure
    spreads = trial.spreads
    assert len(spreads) == 3 and all(spread > 0.0001 for spread in spreads)
    assert len(set(spreads)) == 3  # three separate measurement passes, not one reused
    assert trial.noisy is True
    # The samples kept are the last pass's: its spread is the stored one.
    assert trial.latency_spread == pytest.approx(spreads[-1])
    assert latency_stats(trial.latencies_ms).spread == pytest.approx(spreads[-1])
    summary = (workspace / "reports" / run_id / "summary.md").read_text()
    assert "noisy: latency spread stayed above the limit in 3 measurement(s)" in summary


def test_a_steady_trial_is_measured_once(workspace, tiny_model, capsys, check_store):
    # The contention guard off too: on a shared machine it may measure again for its own
    # reason (tests/test_machine_state.py), which is not what this test is about.
    assert main(["run", "--model", str(tiny_model), *QUICK, "--max-spread", "10",
                 "--max-other-cpu", "0", "--max-steal", "0", "--max-canary-slowdown", "0"]) == 0
    run_id = capsys.readouterr().out.split()[1]
    (trial,) = check_store(run_id, finished=True, count=1)
    assert trial.ok and trial.spreads == [] and trial.noisy is False
    summary = (workspace / "reports" / run_id / "summary.md").read_text()
    assert "noisy" not in summary

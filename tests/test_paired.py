"""Paired interleaved re-measurement: the judging on synthetic rounds, the injected slowdown,
and one real paired measurement with OpenVINO on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from autotune.measure import MeasurementProtocol, Session, measure_session
from autotune.paired import (
    BASELINE,
    CANDIDATE,
    hodges_lehmann,
    judge_rounds,
    round_schedule,
    rounds_as_passes_rule,
    signed_rank_p,
)


def _rounds(medians, rng, samples=50, spread=0.02):
    return [list(m * (1 + rng.normal(0, spread, samples))) for m in medians]


@pytest.mark.readme_claim("--paired measures short rounds in a seeded, balanced order (ABBA)")
def test_the_schedule_is_balanced_seeded_and_shuffled():
    orders = round_schedule(16, seed=3)
    assert orders == round_schedule(16, seed=3)
    assert sum(pair == (BASELINE, CANDIDATE) for pair in orders) == 8
    assert sum(pair == (CANDIDATE, BASELINE) for pair in orders) == 8
    assert len({tuple(round_schedule(16, seed)) for seed in range(5)}) > 1


def test_signed_rank_p_and_interval_match_the_textbook():
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = rng.normal(0.02, 0.05, 16)
        assert signed_rank_p(d) == pytest.approx(wilcoxon(d).pvalue)
    # n = 16 at alpha 0.01: the critical signed-rank value is 19, so the interval is the 20th
    # smallest and the 20th largest of the 136 Walsh averages.
    d = rng.normal(0, 1, 16)
    i, j = np.triu_indices(16)
    walsh = np.sort((d[i] + d[j]) / 2)
    _, low, high = hodges_lehmann(d, 0.01)
    assert (low, high) == (walsh[19], walsh[-20])


def test_a_a_gives_no_regression():
    rng = np.random.default_rng(1)
    flagged = 0
    for _ in range(200):
        medians = 1.0 * (1 + rng.normal(0, 0.03, 16))
        test = judge_rounds(_rounds(medians, rng), _rounds(medians, rng))
        flagged += test.verdict is not None
    assert flagged <= 2  # alpha 0.01 and a 5% minimum effect


def test_a_10_percent_shift_is_found():
    rng = np.random.default_rng(2)
    medians = 1.0 * (1 + rng.normal(0, 0.03, 16))
    test = judge_rounds(_rounds(medians, rng), _rounds(medians * 1.10, rng))
    assert test.verdict == "slower"
    assert test.ratio == pytest.approx(1.10, abs=0.02)
    assert test.ci_low > 1.0 and test.p_value < 0.01
    assert judge_rounds(_rounds(medians * 1.10, rng), _rounds(medians, rng)).verdict == "faster"


def test_a_toggling_machine_cancels_in_the_pairs_but_fools_todays_rule():
    """The machine switches between a fast and a 2.5x slower state for seconds: each round
    pair sees one state on both sides. The candidate is 10% slower: the paired rule finds it;
    today's rule (fastest pass, noise from the passes) drowns it in the toggling's noise."""
    rng = np.random.default_rng(4)
    state = np.where(rng.random(16) < 0.3, 1.0, 2.5)
    state[:4] = (1.0, 2.5, 1.0, 2.5)  # both states seen, whatever the draw
    base, cand = _rounds(state, rng), _rounds(state * 1.10, rng)
    assert judge_rounds(base, cand).verdict == "slower"
    assert rounds_as_passes_rule(base, cand) is None
    # And no false alarm from the toggling when nothing changed.
    assert judge_rounds(base, _rounds(state, rng)).verdict is None


def test_one_wild_pair_does_not_decide():
    rng = np.random.default_rng(5)
    medians = np.ones(16)
    cand = medians.copy()
    cand[3] = 2.6  # the machine switched state between the two halves of one pair
    assert judge_rounds(_rounds(medians, rng), _rounds(cand, rng)).verdict is None


def test_judging_rejects_unpaired_rounds():
    with pytest.raises(ValueError, match="same number"):
        judge_rounds([[1.0]] * 4, [[1.0]] * 3)


class _Sleeper(Session):
    """A session whose inference is a 2 ms busy loop."""

    def set_inputs(self, feeds):
        pass

    def run(self):
        import time

        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass

    def outputs(self):
        return []


@pytest.mark.parametrize("fraction", [0.10, 0.25])
def test_injected_slowdown_slows_each_sample_by_that_fraction(fraction):
    protocol = MeasurementProtocol(warmup_runs=2, min_repeats=40, min_time_s=0.0)
    plain = measure_session(_Sleeper, [{}], protocol)
    slowed = measure_session(_Sleeper, [{}], MeasurementProtocol(
        **{**protocol.to_dict(), "injected_slowdown": fraction}))
    # Each inference is a 2 ms busy loop: every slowed sample spins at least that fraction on
    # top of it (bounds only: a loaded machine can stretch any sample, never shorten one).
    assert min(slowed.latencies_ms) >= 2.0 * (1 + fraction)
    assert min(plain.latencies_ms) < 2.0 * (1 + fraction)


@pytest.mark.readme_claim("AUTOTUNE_INJECT_SLOWDOWN=0.10 busy-waits 10% of each inference in the "
                          "timed region")
def test_injected_slowdown_comes_from_the_environment(monkeypatch):
    from autotune.worker import SLOWDOWN_ENV, _with_injected_slowdown

    protocol = MeasurementProtocol()
    assert _with_injected_slowdown(protocol).injected_slowdown == 0.0
    monkeypatch.setenv(SLOWDOWN_ENV, "0.1")
    assert _with_injected_slowdown(protocol).injected_slowdown == 0.1
    monkeypatch.setenv(SLOWDOWN_ENV, "fast")
    with pytest.raises(ValueError, match=SLOWDOWN_ENV):
        _with_injected_slowdown(protocol)

import time

import numpy as np
import pytest

from autotune.accuracy import SQNR_CEILING_DB, mean_cosine, quality, sqnr_db, top1_accuracy
from autotune.measure import MeasurementProtocol, Session, latency_stats, measure_session


class SleepSession(Session):
    """A session whose run takes a known time and echoes its input (no compiler involved:
    this tests the protocol's bookkeeping, not a backend)."""

    def __init__(self):
        self.seen = []

    def set_inputs(self, feeds):
        self.current = feeds["x"]

    def run(self):
        self.seen.append(float(self.current[0]))
        time.sleep(0.001)

    def outputs(self):
        return [self.current * 2]


@pytest.mark.readme_claim("timed runs until both 50 samples and 1 s (--min-repeats, --min-time)")
def test_protocol_reaches_both_minimum_count_and_time():
    inputs = [{"x": np.array([float(i)])} for i in range(7)]
    session = SleepSession()
    protocol = MeasurementProtocol(warmup_runs=3, min_repeats=20, min_time_s=0.1)
    result = measure_session(lambda: session, inputs, protocol)
    assert len(result.latencies_ms) >= 20
    assert sum(result.latencies_ms) >= 100 * 0.9
    assert all(sample >= 0.9 for sample in result.latencies_ms)
    # One output per evaluation input, in order.
    assert [float(out[0][0]) for out in result.outputs] == [2.0 * i for i in range(7)]
    # Inputs vary between timed iterations: every evaluation input was used.
    assert set(session.seen) == set(range(7))


@pytest.mark.readme_claim("reports show median, p90, p99 and the spread (IQR over median)")
def test_latency_stats():
    stats = latency_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats.median_ms == 3.0 and stats.count == 5 and stats.min_ms == 1.0
    assert stats.p99_ms > stats.p90_ms > stats.median_ms
    assert stats.spread == pytest.approx((4.0 - 2.0) / 3.0)


@pytest.mark.readme_claim("fidelity against the fp32 model: top-1 agreement, SQNR, cosine")
def test_quality_metrics():
    reference = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert top1_accuracy(reference, np.array([0, 1])) == 1.0
    assert sqnr_db(reference, reference) == SQNR_CEILING_DB  # identical: finite, storable
    assert sqnr_db(reference, reference * 1.1) == pytest.approx(20.0)
    assert mean_cosine(reference, reference * 3) == pytest.approx(1.0)
    noisy = reference + np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    scores = quality(noisy, reference, np.array([0, 1]), "top1")
    assert scores.accuracy == 0.5 and scores.top1_agreement == 0.5


@pytest.mark.readme_claim("per-class accuracy: the label whose accuracy fell most against fp32's")
def test_per_class_accuracy_finds_the_class_an_aggregate_hides():
    import numpy as np

    from autotune.accuracy import per_class_accuracy, worst_class
    from autotune.data import Dataset
    from autotune.driver import class_accuracy

    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    reference = np.eye(3)[labels]  # fp32 gets every sample right
    candidate = reference.copy()
    candidate[2] = [1, 0, 0]  # one of class 1's two samples goes wrong: 7/8 overall
    assert per_class_accuracy(candidate, labels) == {"0": 1.0, "1": 0.5, "2": 1.0}
    assert worst_class(per_class_accuracy(candidate, labels),
                       per_class_accuracy(reference, labels)) == ("1", 0.5)
    dataset = Dataset([], [{}] * 8, labels, "top1")
    found = class_accuracy(candidate, reference, dataset)
    assert (found.worst_class, found.worst_drop) == ("1", 0.5)
    assert class_accuracy(candidate, reference, Dataset([], [], None, "fidelity")) is None

"""Paired, interleaved re-measurement: baseline and candidate measured in the same time window.

On a shared machine the speed itself changes (on the 2-core VM this was built on, OpenVINO's
int8 kernels toggle between two speeds 2-3x apart, for seconds to minutes). Two runs measured
hours apart see different machine states, and no test on their samples can tell a runtime's
slowdown from the machine's. Browser performance bisection answers this by measuring the two
builds alternately: here each side's artifact is compiled in its own worker, then measured in
many short rounds, the two sides back to back in each round pair, in a seeded order balanced
between baseline-first and candidate-first (ABBA). A machine state that lasts longer than a
round pair slows both sides of the pair alike, and cancels out of the pair's log ratio.

Judging is pure (``judge_rounds``): per round pair d_i = log(candidate median / baseline
median); the change is the Hodges-Lehmann estimate of the d_i (the median of their pairwise
means), its confidence interval the exact Wilcoxon signed-rank interval at level 1 - alpha,
the p-value the signed-rank test's. A regression is significant (p < alpha and the interval
excludes no change) and at least the latency threshold. Rank-based on purpose: a round pair
that straddles a change of the machine's speed gives one wild d_i, which moves a mean and a
t-interval but not a signed-rank statistic.

The plumbing (``measure_paired``) keeps one long-lived worker per side (``python -m
autotune.worker --serve``), each in its own interpreter and environment, answering one round
per command; each round loads the kept artifact afresh.
"""

from __future__ import annotations

import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil

from autotune.measure import MeasurementProtocol
from autotune.worker import Job, child_env, run_isolated, tree_rss

# One round: a short measurement, so that many rounds fit in the time a state lasts.
ROUND_PROTOCOL = MeasurementProtocol(warmup_runs=5, min_repeats=20, min_time_s=0.1,
                                     max_time_s=5.0)
# Round pairs. The signed-rank test needs 8 or more at alpha 0.01; with 16 the 99% interval
# was about +-8% wide here and found 55% of 10% slowdowns, with 32 it found 90%
# (benchmarks/results/paired_power-2026-12-01-32rounds.json).
DEFAULT_ROUNDS = 32
BASELINE, CANDIDATE = "baseline", "candidate"


@dataclass(frozen=True)
class PairedSide:
    """One side of a paired comparison: the trial's job (``driver._job``, or one with
    ``artifact`` set to re-measure a kept artifact), its interpreter and extra environment."""

    job: Job
    python: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PairedTest:
    """The verdict on the paired round medians of two sides."""

    rounds: int  # round pairs
    ratio: float  # candidate / baseline, exp of the Hodges-Lehmann estimate of the log ratios
    ci_low: float  # exact signed-rank confidence interval of the ratio, level 1 - alpha
    ci_high: float
    p_value: float  # two-sided Wilcoxon signed-rank test of the log ratios
    threshold: float
    alpha: float
    baseline_medians_ms: tuple[float, ...] = ()
    candidate_medians_ms: tuple[float, ...] = ()

    @property
    def change(self) -> float:
        return self.ratio - 1.0

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha and (self.ci_low > 1.0 or self.ci_high < 1.0)

    @property
    def verdict(self) -> str | None:
        """``slower``, ``faster`` or None (no significant change of at least the threshold)."""
        if not self.significant:
            return None
        if self.ratio >= 1.0 + self.threshold and self.ci_low > 1.0:
            return "slower"
        if self.ratio <= 1.0 / (1.0 + self.threshold) and self.ci_high < 1.0:
            return "faster"
        return None

    def to_json(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: Mapping) -> PairedTest:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        for name in ("baseline_medians_ms", "candidate_medians_ms"):
            known[name] = tuple(known.get(name, ()))
        return cls(**known)


@dataclass(frozen=True)
class PairedResult:
    """What a paired measurement gave: the test, or why there is none, and every round."""

    test: PairedTest | None
    error: str = ""
    baseline_rounds_ms: tuple[tuple[float, ...], ...] = ()
    candidate_rounds_ms: tuple[tuple[float, ...], ...] = ()
    order: tuple[str, ...] = ()  # the sides in the order they were measured
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.test is not None


def round_schedule(rounds: int, seed: int = 0) -> list[tuple[str, str]]:
    """The order of each round pair: half baseline-first, half candidate-first (one more
    baseline-first when odd), shuffled with ``seed``. Balanced, so a warm-up or cache effect
    that favours the first (or second) of two measurements favours both sides equally."""
    if rounds < 1:
        raise ValueError("a paired measurement needs at least one round")
    orders = [(BASELINE, CANDIDATE)] * ((rounds + 1) // 2) + [(CANDIDATE, BASELINE)] * (rounds // 2)
    random.Random(seed).shuffle(orders)
    return orders


def judge_rounds(baseline_rounds_ms: Sequence[Sequence[float]],
                 candidate_rounds_ms: Sequence[Sequence[float]], threshold: float = 0.05,
                 alpha: float = 0.01) -> PairedTest:
    """Judge paired rounds: round i of each side were measured back to back.

    Args:
        baseline_rounds_ms: each round's latency samples of the baseline.
        candidate_rounds_ms: the candidate's, paired with the baseline's round by round.
        threshold: smallest relative change that counts (0.05 = 5%).
        alpha: significance level; the interval's level is 1 - alpha.

    Returns:
        The change (ratio), its interval, the p-value; its ``verdict`` says slower or faster.
    """
    if len(baseline_rounds_ms) != len(candidate_rounds_ms):
        raise ValueError("paired rounds: both sides need the same number of rounds")
    if any(not samples for samples in (*baseline_rounds_ms, *candidate_rounds_ms)):
        raise ValueError("paired rounds: a round without samples")
    base = np.array([np.median(samples) for samples in baseline_rounds_ms], dtype=np.float64)
    cand = np.array([np.median(samples) for samples in candidate_rounds_ms], dtype=np.float64)
    if base.size < 2:
        raise ValueError("paired rounds: at least 2 round pairs are needed")
    logs = np.log(cand / base)
    estimate, low, high = hodges_lehmann(logs, alpha)
    return PairedTest(rounds=int(base.size), ratio=math.exp(estimate), ci_low=math.exp(low),
                      ci_high=math.exp(high), p_value=signed_rank_p(logs), threshold=threshold,
                      alpha=alpha, baseline_medians_ms=tuple(float(v) for v in base),
                      candidate_medians_ms=tuple(float(v) for v in cand))


def signed_rank_counts(n: int) -> np.ndarray:
    """How many of the 2**n sign assignments give each signed-rank sum 0..n(n+1)/2."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        shifted = np.zeros_like(counts)
        shifted[rank:] = counts[:-rank]
        counts = counts + shifted
    return counts


def signed_rank_p(differences: np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test (exact without ties; zeros and tied
    magnitudes take mid-ranks and the exact null of their count, which is conservative
    enough for rounds of real timings, where exact ties are rare)."""
    from scipy.stats import rankdata

    values = np.asarray(differences, dtype=np.float64)
    values = values[values != 0]
    n = values.size
    if n == 0:
        return 1.0
    ranks = rankdata(np.abs(values))
    positive = float(ranks[values > 0].sum())
    counts = signed_rank_counts(n)
    cumulative = np.cumsum(counts) / counts.sum()
    smaller = min(positive, n * (n + 1) / 2 - positive)
    return float(min(1.0, 2 * cumulative[int(math.floor(smaller))]))


def hodges_lehmann(differences: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Hodges-Lehmann estimate of the centre of ``differences`` (median of the Walsh
    averages) and its exact signed-rank confidence interval at level 1 - alpha: the c-th
    smallest and largest Walsh averages, c from the signed-rank null distribution. With too
    few pairs for that level the interval is the whole range of the Walsh averages."""
    values = np.asarray(differences, dtype=np.float64)
    n = values.size
    i, j = np.triu_indices(n)
    walsh = np.sort((values[i] + values[j]) / 2)
    counts = signed_rank_counts(n)
    cumulative = np.cumsum(counts) / counts.sum()
    # The largest c with P(T <= c - 1) <= alpha / 2; the interval is [W_(c), W_(M + 1 - c)].
    c = max(1, int(np.searchsorted(cumulative, alpha / 2, side="right")))
    return float(np.median(walsh)), float(walsh[c - 1]), float(walsh[walsh.size - c])


class PairedError(RuntimeError):
    """A side could not be compiled or measured; the message says which and why."""


class _RoundWorker:
    """A long-lived worker measuring one side's kept artifact, one round per command."""

    def __init__(self, side: PairedSide, name: str, scratch: Path, timeout_s: float,
                 memory_limit_bytes: int):
        self.name, self.timeout_s = name, timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        job_path = scratch / f"{name}-job.json"
        job_path.write_text(json.dumps(side.job.__dict__))
        self.log_path = scratch / f"{name}-worker.log"
        with open(self.log_path, "wb") as log:
            self.child = subprocess.Popen(
                [side.python or sys.executable, "-m", "autotune.worker", "--serve",
                 str(job_path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True, env=child_env(side.env))
        self._pending = b""
        try:
            self._process = psutil.Process(self.child.pid)
        except psutil.NoSuchProcess:
            self._process = None

    def measure(self) -> list[float]:
        try:
            self.child.stdin.write(b"measure\n")
            self.child.stdin.flush()
        except BrokenPipeError:
            raise PairedError(self._died("before a round")) from None
        deadline = time.monotonic() + self.timeout_s
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PairedError(f"{self.name}: no round measured after {self.timeout_s:g} s")
            ready, _, _ = select.select([self.child.stdout], [], [], left)
            if ready:
                chunk = os.read(self.child.stdout.fileno(), 65536)
                if not chunk:
                    raise PairedError(self._died("during a round"))
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        self._check_memory()
        reply = json.loads(line)
        if reply["status"] != "ok":
            raise PairedError(f"{self.name}: {reply['status']}: {reply.get('error', '')}")
        return [float(value) for value in reply["latencies_ms"]]

    def _check_memory(self) -> None:
        """Kill a worker (and its children) grown past the memory limit, as a trial's is.
        Checked after each round, not while it runs: reading every process's memory from
        /proc during the timed runs would take a core from them (on a 2-vCPU machine the
        kernel's second thread). A round is short: a worker that keeps growing is caught at
        the end of the round that grew it."""
        if self._process is None or tree_rss(self._process) <= self.memory_limit_bytes:
            return
        self.close(kill=True)
        raise PairedError(f"{self.name}: worker exceeded the memory limit of "
                          f"{self.memory_limit_bytes / 2**20:.0f} MiB; killed")

    def _died(self, when: str) -> str:
        self.child.wait(timeout=5)
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        return (f"{self.name}: worker exited with code {self.child.returncode} {when}"
                + (": " + " | ".join(tail) if tail else ""))

    def close(self, kill: bool = False) -> None:
        try:
            if not kill:
                self.child.stdin.close()
                self.child.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.child.wait()


def compile_side(side: PairedSide, artifact_dir: Path, timeout_s: float = 600.0,
                 memory_limit_bytes: int = 8 << 30) -> PairedSide:
    """``side`` with its artifact compiled (in an isolated worker, into ``artifact_dir``);
    a side whose job already carries an artifact is returned as it is."""
    if side.job.artifact is not None:
        return side
    job = replace(side.job, artifact_dir=str(artifact_dir),
                  protocol=replace(ROUND_PROTOCOL, min_repeats=3, min_time_s=0.0).to_dict())
    result = run_isolated(job, timeout_s, memory_limit_bytes, python=side.python, env=side.env)
    if result.status != "ok" or result.outcome.artifact is None:
        raise PairedError(f"compile: {result.status}: {result.error}")
    return replace(side, job=replace(side.job, artifact=result.outcome.artifact))


def measure_paired(baseline: PairedSide, candidate: PairedSide, rounds: int = DEFAULT_ROUNDS,
                   protocol: MeasurementProtocol = ROUND_PROTOCOL, seed: int = 0,
                   threshold: float = 0.05, alpha: float = 0.01,
                   round_timeout_s: float = 120.0, compile_timeout_s: float = 600.0,
                   memory_limit_bytes: int = 8 << 30) -> PairedResult:
    """Compile each side in its own worker, then measure them alternately and judge the pairs.

    Args:
        baseline: the baseline's job, interpreter and environment.
        candidate: the candidate's.
        rounds: round pairs (each side measures this many rounds).
        protocol: the measurement of one round (short: many rounds fit in one machine state).
        seed: seeds the round order (``round_schedule``).
        threshold: smallest relative latency change that counts.
        alpha: significance level.
        round_timeout_s: a round that takes longer fails the comparison.
        compile_timeout_s: time limit of each side's compile worker.
        memory_limit_bytes: memory limit of each side's workers (compiling and serving).

    Returns:
        The test and every round's samples; ``error`` (and no test) when a side failed.
    """
    started = time.monotonic()
    order: list[str] = []
    samples: dict[str, list[tuple[float, ...]]] = {BASELINE: [], CANDIDATE: []}
    workers: dict[str, _RoundWorker] = {}
    with tempfile.TemporaryDirectory(prefix="autotune-paired-") as scratch:
        scratch_path = Path(scratch)
        try:
            sides = {}
            for name, side in ((BASELINE, baseline), (CANDIDATE, candidate)):
                try:
                    side = compile_side(side, scratch_path / f"{name}-artifact",
                                        compile_timeout_s, memory_limit_bytes)
                except PairedError as error:
                    raise PairedError(f"{name}: {error}") from None
                sides[name] = replace(side, job=replace(side.job, protocol=protocol.to_dict()))
            for name, side in sides.items():
                workers[name] = _RoundWorker(side, name, scratch_path, round_timeout_s,
                                             memory_limit_bytes)
            for pair in round_schedule(rounds, seed):
                for name in pair:
                    samples[name].append(tuple(workers[name].measure()))
                    order.append(name)
        except PairedError as error:
            return PairedResult(None, str(error), tuple(samples[BASELINE]),
                                tuple(samples[CANDIDATE]), tuple(order),
                                time.monotonic() - started)
        finally:
            for worker in workers.values():
                worker.close()
    test = judge_rounds(samples[BASELINE], samples[CANDIDATE], threshold, alpha)
    return PairedResult(test, "", tuple(samples[BASELINE]), tuple(samples[CANDIDATE]),
                        tuple(order), time.monotonic() - started)


def rounds_as_passes_rule(baseline_rounds_ms: Sequence[Sequence[float]],
                          candidate_rounds_ms: Sequence[Sequence[float]],
                          threshold: float = 0.05, alpha: float = 0.01) -> str | None:
    """Today's rule (``regress.compare_trials``: fastest pass, run-to-run noise from the
    passes) on the same rounds, each side's rounds taken as its trial's passes; its latency
    verdict (``slower``, ``faster`` or None). For side-by-side benchmarks and tests."""
    from autotune.config import FP32
    from autotune.outcome import PassRecord
    from autotune.regress import Thresholds, compare_trials
    from autotune.trial import Trial

    def trial(run_id: str, rounds: Sequence[Sequence[float]]) -> Trial:
        passes = [PassRecord(median_ms=float(np.median(r)), samples=len(r)) for r in rounds]
        latencies = [float(v) for r in rounds for v in r]
        return Trial(run_id=run_id, model="m", model_hash="h", config=FP32, backend="b",
                     target="t", status="ok", latencies_ms=latencies,
                     latency_median_ms=float(np.median(latencies)), passes=passes)

    comparison = compare_trials([trial("base", baseline_rounds_ms)],
                                [trial("cand", candidate_rounds_ms)],
                                Thresholds(latency=threshold, alpha=alpha))
    kinds = [f.kind for pair in comparison.matched for f in pair.findings
             if f.kind in ("slower", "faster")]
    return kinds[0] if kinds else None

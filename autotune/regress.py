"""Regression detection between runs: pure functions over trials and latency samples.

A latency regression must be statistically significant (Mann-Whitney U on the stored
samples, and a seeded bootstrap confidence interval of the ratio of medians that excludes 1),
larger than the run-to-run noise, and larger than a minimum effect (``threshold``).

The samples of one measurement pass only know the noise within that second or so. On a
shared machine the speed itself changes: a neighbour's burst makes a whole pass (or a whole
run) 10% to 2-3x slower (on the 2-core VM this was built on, int8 and bf16 kernels toggle
between two speeds for seconds to minutes). Such noise only ever slows things down, so a
trial is judged by its fastest pass (the minimum is the robust estimator when noise is
additive; Chen & Revels, "Robust benchmarking in noisy environments", 2016): runs measure each
trial in several passes spread over the run (``autotune run --passes``), the rank test and the
interval compare the two fastest passes' samples, and the spread of the fastest half of every
trial's pass medians, pooled over the run (or the trial's own, where larger), is the
run-to-run noise a change must exceed. Pooled as a mean on purpose: when the machine toggled
under some trials, every trial of that run is suspect, and its noise says so.
A trial whose judged (fastest) pass was measured under contention (other processes or the
hypervisor took its cores; ``autotune.machine_state``) gets no latency verdict: the pair's
finding says which side was contended, in figures, instead of "slower" or "faster", so a
nightly job is not told of a regression the machine caused (nor an improvement it hid).
Memory, artifact size and accuracy are single figures per trial and are compared against
thresholds alone; a trial that stopped compiling or started failing is always a regression.
Nothing here reads a store or prints: the CLI and the reports consume the results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from autotune.outcome import CONTENDED
from autotune.trial import Trial

# Slower, larger, less accurate or broken: each is a regression. The rest are improvements.
REGRESSION_KINDS = ("slower", "more_memory", "larger", "less_accurate", "stopped_compiling",
                    "started_failing")
IMPROVEMENT_KINDS = ("faster", "less_memory", "smaller", "more_accurate", "fixed")
# Neither: a latency not judged, as a side was measured under contention; a side whose
# backend could not run at all (its runtime missing from the workers' environment, its target
# unreachable), which says nothing about the runtime under comparison.
UNAVAILABLE_KIND = "unavailable"
NOT_JUDGED_KINDS = (CONTENDED, UNAVAILABLE_KIND)
COMPILE_FAILURES = ("compile_error", "unsupported")


@dataclass(frozen=True)
class Thresholds:
    """Minimum effects that count, and the significance level of the latency test."""

    latency: float = 0.05  # relative change of the median latency
    memory: float = 0.10  # relative change of the model's memory ...
    memory_floor_bytes: int = 1 << 20  # ... and at least this many bytes (RSS is noisy)
    size: float = 0.05  # relative change of the compiled artifact size
    accuracy_pp: float = 0.5  # percentage points of accuracy (or fidelity) lost
    alpha: float = 0.01  # significance level; the confidence interval is 1 - alpha

    def __post_init__(self) -> None:
        for name in ("latency", "memory", "size", "accuracy_pp"):
            if getattr(self, name) < 0:
                raise ValueError(f"threshold {name} must not be negative")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be between 0 and 1")


@dataclass(frozen=True)
class LatencyTest:
    """Candidate versus baseline latency samples: effect, interval and p-value."""

    baseline_median_ms: float
    candidate_median_ms: float
    ratio: float  # candidate median / baseline median; 1.10 = 10% slower
    ci_low: float  # confidence interval of the ratio (bootstrap, level 1 - alpha)
    ci_high: float
    p_value: float  # two-sided Mann-Whitney U
    baseline_count: int
    candidate_count: int
    alpha: float
    # Standard deviation of log(ratio) that run-to-run noise alone gives, from the runs'
    # measurement passes, and the critical value a change must exceed in its units. None:
    # unknown (a run measured in one pass), and the verdict rests on the samples alone.
    run_noise: float | None = None
    run_noise_z: float | None = None

    @property
    def noise_floor(self) -> float | None:
        """The smallest change (a fraction) that stands out of the run-to-run noise."""
        if self.run_noise is None or self.run_noise_z is None:
            return None
        return math.expm1(self.run_noise_z * self.run_noise)

    @property
    def significant(self) -> bool:
        """Every test agrees: the rank test rejects, the interval excludes no change, and the
        change is beyond the run-to-run noise (where it is known)."""
        beyond_noise = (self.noise_floor is None
                        or abs(math.log(self.ratio)) > math.log1p(self.noise_floor))
        return (self.p_value < self.alpha and (self.ci_low > 1.0 or self.ci_high < 1.0)
                and beyond_noise)

    @property
    def change(self) -> float:
        return self.ratio - 1.0

    def verdict(self, threshold: float) -> str | None:
        """``slower``, ``faster`` or None (no significant change beyond ``threshold``)."""
        if not self.significant:
            return None
        if self.ratio >= 1.0 + threshold and self.ci_low > 1.0:
            return "slower"
        if self.ratio <= 1.0 / (1.0 + threshold) and self.ci_high < 1.0:
            return "faster"
        return None


def latency_test(baseline_ms: Sequence[float], candidate_ms: Sequence[float],
                 alpha: float = 0.01, resamples: int = 2000, seed: int = 0) -> LatencyTest:
    """Compare two sets of latency samples (each needs at least 3).

    Args:
        baseline_ms: warm latency samples of the baseline trial.
        candidate_ms: warm latency samples of the candidate trial.
        alpha: significance level of the rank test and 1 - level of the interval.
        resamples: bootstrap resamples for the interval of the ratio of medians.
        seed: seeds the bootstrap, so the same samples always give the same answer.

    Returns:
        The effect (ratio of medians), its interval and the rank test's p-value.
    """
    from scipy.stats import mannwhitneyu

    base = np.asarray(baseline_ms, dtype=np.float64)
    cand = np.asarray(candidate_ms, dtype=np.float64)
    if base.size < 3 or cand.size < 3:
        raise ValueError("a latency test needs at least 3 samples on each side")
    base_median, cand_median = float(np.median(base)), float(np.median(cand))
    if np.ptp(np.concatenate([base, cand])) == 0:
        p_value = 1.0  # every sample equal: nothing to rank, and nothing changed
    else:
        p_value = float(mannwhitneyu(cand, base, alternative="two-sided").pvalue)
    ratios = _bootstrap_ratios(base, cand, resamples, seed)
    ci_low, ci_high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return LatencyTest(baseline_median_ms=base_median, candidate_median_ms=cand_median,
                       ratio=cand_median / base_median, ci_low=float(ci_low),
                       ci_high=float(ci_high), p_value=p_value, baseline_count=int(base.size),
                       candidate_count=int(cand.size), alpha=alpha)


def _bootstrap_ratios(base: np.ndarray, cand: np.ndarray, resamples: int,
                      seed: int) -> np.ndarray:
    """Ratios of the medians of independent bootstrap resamples of each side."""
    rng = np.random.default_rng(seed)
    return (_bootstrap_medians(np.sort(cand), resamples, rng)
            / _bootstrap_medians(np.sort(base), resamples, rng))


def _bootstrap_medians(ordered: np.ndarray, resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Medians of ``resamples`` bootstrap resamples of ``ordered`` (sorted), drawn directly.

    A resample's k-th smallest value is ``ordered[ceil(n * U_k) - 1]`` where U_k is the k-th
    order statistic of n uniforms, which is Beta(k, n - k + 1) distributed; the next one is
    U_k + (1 - U_k) * Beta(1, n - k). So the median of a resample is drawn in O(1) instead of
    resampling n values: the same distribution as the textbook bootstrap, at any sample count.
    """
    n = ordered.size
    k = (n + 1) // 2

    def at(u: np.ndarray) -> np.ndarray:
        return ordered[np.clip(np.ceil(u * n).astype(np.int64), 1, n) - 1]

    low = rng.beta(k, n - k + 1, resamples)
    if n % 2:
        return at(low)
    high = low + (1.0 - low) * rng.beta(1, n - k, resamples)
    return (at(low) + at(high)) / 2


# A run's pass noise is trusted from this many degrees of freedom (e.g. 4 trials x 2 passes).
MIN_NOISE_DOF = 4


@dataclass(frozen=True)
class PassNoise:
    """Run-to-run noise of one run on one target: the standard deviation of a pass's log
    median latency around its trial's mean, over the fastest half of every trial's passes
    (at least two), pooled over the run's trials."""

    sigma: float
    dof: int  # sum over trials of (passes kept - 1)


def fastest_pass_ms(trial: Trial) -> list[float]:
    """The samples of the trial's fastest pass (lowest median): what a regression is judged
    on, as slower passes carry the machine's slow spells rather than the runtime's speed."""
    return min(trial.pass_samples_ms(), key=lambda samples: float(np.median(samples))
               if samples else math.inf)


def pass_noise(trials: Iterable[Trial]) -> dict[str, PassNoise]:
    """Pooled between-pass noise per target, from trials measured in two passes or more.

    Only each trial's fastest half of passes (at least two) counts: a slow spell of the
    machine is not the noise of a fastest pass, and would hide every change. Pooled as a
    mean, so trials the machine shook widen every trial's noise in that run: a median (tried)
    let the quiet-looking trials of a toggling run through, 5.6% false positives instead of
    0.7% on real A/A runs (benchmarks/false_positives.py). Targets whose trials give fewer
    than ``MIN_NOISE_DOF`` degrees of freedom are left out (their noise is unknown)."""
    squares: dict[str, float] = {}
    dofs: dict[str, int] = {}
    for trial in trials:
        logs = _fastest_log_medians(trial)
        if not trial.ok or len(logs) < 2:
            continue
        squares[trial.target] = squares.get(trial.target, 0.0) + float(
            np.sum((logs - logs.mean()) ** 2))
        dofs[trial.target] = dofs.get(trial.target, 0) + len(logs) - 1
    return {target: PassNoise(math.sqrt(squares[target] / dof), dof)
            for target, dof in dofs.items() if dof >= MIN_NOISE_DOF}


def with_run_noise(test: LatencyTest, baseline: Trial, candidate: Trial,
                   baseline_noise: PassNoise | None,
                   candidate_noise: PassNoise | None) -> LatencyTest:
    """``test`` with the run-to-run noise of its two trials' fastest passes.

    Each side is one pass (its fastest), so the noise of the log ratio is
    sqrt(sigma_b^2 + sigma_c^2), where a side's sigma is its run's, or the spread of the
    trial's own passes where that is larger: a trial whose passes disagree (the machine
    changed speed under it) has no steady fastest pass to compare. A run measured in one pass
    borrows the other run's sigma (same target, same kind of machine). The critical value is
    Student's t at the test's level with the pooled degrees of freedom, as sigma is itself
    estimated.
    """
    from scipy.stats import t

    known = [noise for noise in (baseline_noise, candidate_noise) if noise is not None]
    if not known:
        return test
    base_sigma = max((baseline_noise or candidate_noise).sigma, _own_spread(baseline))
    cand_sigma = max((candidate_noise or baseline_noise).sigma, _own_spread(candidate))
    noise = math.sqrt(base_sigma ** 2 + cand_sigma ** 2)
    dof = sum(noise.dof for noise in known)
    return replace(test, run_noise=noise, run_noise_z=float(t.ppf(1 - test.alpha / 2, dof)))


def _own_spread(trial: Trial) -> float:
    """Standard deviation of the log medians of one trial's fastest passes (see
    ``pass_noise``); 0 with fewer than two passes."""
    logs = _fastest_log_medians(trial)
    return float(np.std(logs, ddof=1)) if len(logs) >= 2 else 0.0


def _fastest_log_medians(trial: Trial) -> np.ndarray:
    """Log medians of the trial's fastest half of passes, at least two (all if fewer)."""
    medians = sorted(m for m in trial.pass_medians_ms if m > 0)
    return np.log(medians[:max(2, math.ceil(len(medians) / 2))])


@dataclass(frozen=True)
class Finding:
    """One change of one trial: what changed, whether it is a regression, and by how much."""

    kind: str  # one of REGRESSION_KINDS, IMPROVEMENT_KINDS or NOT_JUDGED_KINDS
    detail: str

    @property
    def regression(self) -> bool:
        return self.kind in REGRESSION_KINDS


@dataclass(frozen=True)
class TrialComparison:
    """The same model, config, backend and target measured in two runs."""

    baseline: Trial
    candidate: Trial
    latency: LatencyTest | None
    findings: tuple[Finding, ...]

    @property
    def regressed(self) -> bool:
        return any(finding.regression for finding in self.findings)

    @property
    def memory_change(self) -> float | None:
        return _relative(self.baseline.memory_bytes, self.candidate.memory_bytes)

    @property
    def accuracy_change_pp(self) -> float | None:
        """Accuracy (or fidelity) gained in percentage points; negative is worse."""
        lost = _quality_lost(self.baseline, self.candidate)
        return None if lost is None else 0.0 - lost * 100  # 0.0 - avoids printing -0.00


@dataclass(frozen=True)
class Comparison:
    """Everything that differs between a baseline run's trials and a candidate run's."""

    matched: tuple[TrialComparison, ...]
    only_baseline: tuple[Trial, ...]
    only_candidate: tuple[Trial, ...]

    @property
    def regressions(self) -> list[tuple[TrialComparison, Finding]]:
        return [(pair, finding) for pair in self.matched for finding in pair.findings
                if finding.regression]


def comparable_key(trial: Trial) -> tuple[str, str, str, str, str, str, bool, int]:
    """Trials of two runs are comparable when model (name and hash), data (hash), config,
    backend, target and tuning budget match, and both were measured on the device or both
    under emulation (an emulated latency says nothing about the device's; a kernel tuned with
    64 trials is not the program an untuned one is; an accuracy on other data is not a
    change); runtime versions and machine are what a comparison is about."""
    return (trial.model, trial.model_hash, trial.dataset_hash, trial.config.id, trial.backend,
            trial.target, trial.emulated, trial.tuning_trials)


def compare_trials(baseline: Sequence[Trial], candidate: Sequence[Trial],
                   thresholds: Thresholds = Thresholds(), seed: int = 0) -> Comparison:
    """Pair the two runs' trials by ``comparable_key`` and compare each pair.

    A pair with one side never attempted (``unavailable``: its backend missing from that
    run's workers' environment, its target unreachable) gets the finding ``unavailable``,
    reported and never a regression; a trial attempted in neither run is not listed.
    """
    base = {comparable_key(t): t for t in baseline}
    cand = {comparable_key(t): t for t in candidate}
    base_noise, cand_noise = pass_noise(baseline), pass_noise(candidate)

    def attempted(trials: dict, key: tuple) -> bool:
        return key in trials and trials[key].attempted

    both = [key for key in base if key in cand and (attempted(base, key)
                                                    or attempted(cand, key))]
    return Comparison(
        matched=tuple(compare_pair(base[key], cand[key], thresholds, seed,
                                   (base_noise.get(base[key].target),
                                    cand_noise.get(cand[key].target)))
                      for key in both),
        only_baseline=tuple(t for key, t in base.items()
                            if key not in both and (key not in cand or attempted(base, key))),
        only_candidate=tuple(t for key, t in cand.items()
                             if key not in both and (key not in base or attempted(cand, key))))


def compare_pair(baseline: Trial, candidate: Trial, thresholds: Thresholds = Thresholds(),
                 seed: int = 0,
                 noise: tuple[PassNoise | None, PassNoise | None] = (None, None)
                 ) -> TrialComparison:
    """Compare one trial with its counterpart in another run; ``noise`` is each run's
    run-to-run noise on the trials' target (``pass_noise``), None where unknown."""
    status = _status_finding(baseline, candidate)
    if status is not None or not (baseline.ok and candidate.ok):
        return TrialComparison(baseline, candidate, None, (status,) if status else ())
    latency = None
    findings = []
    base_ms, cand_ms = fastest_pass_ms(baseline), fastest_pass_ms(candidate)
    if len(base_ms) >= 3 and len(cand_ms) >= 3:
        latency = with_run_noise(latency_test(base_ms, cand_ms, thresholds.alpha, seed=seed),
                                 baseline, candidate, *noise)
        verdict = latency.verdict(thresholds.latency)
        contended = _contention_finding(baseline, candidate, latency, verdict)
        if contended is not None:
            findings.append(contended)
        elif verdict:
            findings.append(Finding(verdict, "fastest pass median "
                                             f"{latency.baseline_median_ms:.4g} -> "
                                             f"{latency.candidate_median_ms:.4g} ms "
                                             f"({latency.change:+.1%}, p={latency.p_value:.2g})"))
    findings += _figure_findings(baseline, candidate, thresholds)
    return TrialComparison(baseline, candidate, latency, tuple(findings))


def _contention_finding(baseline: Trial, candidate: Trial, latency: LatencyTest,
                        verdict: str | None) -> Finding | None:
    """The latency finding of a pair with a side judged on a contended pass: no change is
    called, as the neighbours may have made one (or hidden one); None when neither was."""
    sides = [(name, trial) for name, trial in (("baseline", baseline), ("candidate", candidate))
             if trial.contended]
    if not sides:
        return None
    said = ", ".join(f"{name} measured under contention ({trial.fastest_pass.machine.summary()})"
                     for name, trial in sides)
    return Finding(CONTENDED, f"{said}: latency not judged (fastest pass median "
                              f"{latency.baseline_median_ms:.4g} -> "
                              f"{latency.candidate_median_ms:.4g} ms, {latency.change:+.1%}, "
                              f"the samples alone say {verdict or 'unchanged'})")


def _status_finding(baseline: Trial, candidate: Trial) -> Finding | None:
    sides = [(name, trial) for name, trial in (("baseline", baseline), ("candidate", candidate))
             if trial.backend_unavailable]
    if sides:
        return Finding(UNAVAILABLE_KIND, "; ".join(
            f"{trial.backend} could not run in the {name}: {_first_line(trial.error)}"
            for name, trial in sides))
    if baseline.ok and not candidate.ok:
        kind = ("stopped_compiling" if candidate.status in COMPILE_FAILURES
                else "started_failing")
        return Finding(kind, f"ok -> {candidate.status}: {_first_line(candidate.error)}")
    if candidate.ok and not baseline.ok:
        return Finding("fixed", f"{baseline.status} -> ok")
    return None


def _figure_findings(baseline: Trial, candidate: Trial,
                     thresholds: Thresholds) -> list[Finding]:
    findings = []
    memory = _relative(baseline.memory_bytes, candidate.memory_bytes)
    if memory is not None and abs(candidate.memory_bytes - baseline.memory_bytes) >= \
            thresholds.memory_floor_bytes and abs(memory) > thresholds.memory:
        findings.append(Finding("more_memory" if memory > 0 else "less_memory",
                                f"memory {_mib(baseline.memory_bytes)} -> "
                                f"{_mib(candidate.memory_bytes)} MiB ({memory:+.1%})"))
    size = _relative(baseline.artifact_size_bytes, candidate.artifact_size_bytes)
    if size is not None and abs(size) > thresholds.size:
        findings.append(Finding("larger" if size > 0 else "smaller",
                                f"artifact {baseline.artifact_size_bytes} -> "
                                f"{candidate.artifact_size_bytes} bytes ({size:+.1%})"))
    lost = _quality_lost(baseline, candidate)
    if lost is not None and abs(lost) * 100 > thresholds.accuracy_pp:
        what = "accuracy" if _has_accuracy(baseline, candidate) else "fidelity"
        findings.append(Finding("less_accurate" if lost > 0 else "more_accurate",
                                f"{what} {-lost * 100:+.2f} pp"))
    return findings


def _has_accuracy(baseline: Trial, candidate: Trial) -> bool:
    return baseline.accuracy is not None and candidate.accuracy is not None


def _quality_lost(baseline: Trial, candidate: Trial) -> float | None:
    """How much worse the candidate scores (a fraction): task accuracy when both runs have it,
    otherwise the drop against fp32 (fidelity), which is what a run without labels has."""
    if _has_accuracy(baseline, candidate):
        return baseline.accuracy - candidate.accuracy
    if baseline.accuracy_drop is not None and candidate.accuracy_drop is not None:
        return candidate.accuracy_drop - baseline.accuracy_drop
    return None


def _relative(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return after / before - 1.0


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


def version_changes(baseline: dict[str, str],
                    candidate: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """Packages whose version differs between two runs (None where one run lacks it)."""
    names = sorted(set(baseline) | set(candidate))
    return {name: (baseline.get(name), candidate.get(name)) for name in names
            if baseline.get(name) != candidate.get(name)}


def history_changes(series: Sequence[Trial], thresholds: Thresholds = Thresholds(),
                    seed: int = 0) -> list[TrialComparison | None]:
    """For a time-ordered series of one config's trials, each trial against the one before it.

    Returns one entry per trial; the first (nothing to compare with) is None. Trials that
    were never attempted are skipped as predecessors, so a gap does not hide a regression.
    """
    changes: list[TrialComparison | None] = []
    previous: Trial | None = None
    # One config's runs on one target: their passes, pooled, are its run-to-run noise.
    noise = pass_noise(series)
    for trial in series:
        if not trial.attempted:
            changes.append(None)
            continue
        changes.append(None if previous is None
                       else compare_pair(previous, trial, thresholds, seed,
                                      (noise.get(previous.target), noise.get(trial.target))))
        previous = trial
    return changes

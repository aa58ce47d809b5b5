"""Plain-text formatting that every renderer shares, so the Markdown, the page and the
chart tooltips word the same fact the same way."""

from __future__ import annotations

from collections.abc import Sequence

from autotune.changepoints import MIN_SEGMENT, RECENT_RUNS, RunChanges, SeriesChange
from autotune.drift import DriftItem
from autotune.outcome import MachineState
from autotune.predict import LIKELY_TO_FAIL
from autotune.report.facts import Recommendation
from autotune.trial import Trial


def fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def pp_pattern(points: float | None) -> str:
    # Fidelity-only runs drop by thousandths of a point; two decimals would print 0.00.
    return "{:.2f}" if points is None or points == 0 or abs(points) >= 0.1 else "{:.3f}"


def pp(fraction: float | None) -> str:
    """An accuracy drop (a fraction) in percentage points."""
    if fraction is None:
        return "-"
    return pp_pattern(fraction * 100).format(fraction * 100)


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.0f}"


# The column header for ``machine_text``.
MACHINE_HEADER = "others / steal"


def judged_machine(trial: Trial) -> MachineState | None:
    """The machine's state during the pass a trial is judged by (its fastest)."""
    fastest = trial.fastest_pass
    return None if fastest is None else fastest.machine


def machine_text(trial: Trial) -> str:
    """Other processes' and the hypervisor's (steal) shares of the trial's cores during its
    judged pass, e.g. ``3% / 0%``; ``-`` where unknown."""
    machine = judged_machine(trial)
    if machine is None or machine.other_share is None:
        return "-"
    return f"{machine.other_share:.0%} / {fmt(machine.steal_share, '{:.0%}')}"


def limit_text(fraction: float) -> str:
    return f"{fraction * 100:g} pp"


def chosen_figures(recommendation: Recommendation) -> str:
    """The chosen config's headline figures, e.g. ``0.800 ms latency (2.50x vs fp32), ...``."""
    chosen = recommendation.chosen
    if chosen is None:
        return ""
    trial = chosen.trial
    return (f"{trial.latency_ms:.3f} ms latency"
            + (f" ({chosen.speedup:.2f}x vs fp32)" if chosen.speedup else "")
            + f", accuracy drop {pp(trial.accuracy_drop)} pp, memory "
              f"{mib(trial.memory_bytes)} MiB")


def miss_text(miss: float) -> str:
    return f"misses by {miss * 100:.2f} pp"


# Change points and frontier drift: the columns and cells both renderers show.
CHANGE_HEADERS = ("config", "backend", "target", "metric", "change", "where", "before",
                  "after", "cause", "this run")
CHANGES_TITLE = "Changes since the last comparable runs"
DRIFT_TITLE = "Frontier drift"


def change_cells(found: SeriesChange) -> list[str]:
    """One change point of a run's series as ``CHANGE_HEADERS`` cells."""
    change, trial = found.change, found.trial
    figure = (lambda v: f"{v:.4g} ms") if change.metric == "latency" else (
        lambda v: f"{mib(v)} MiB")
    where = (f"run {change.run_id}" if change.kind == "step"
             else f"drift over runs {change.first_run_id}..{change.run_id}")
    verdict = ("new, worse" if found.gating else "new" if found.new
               else "confirmed earlier")
    return [trial.config.label, trial.backend, trial.target, change.metric,
            f"{change.change:+.1%}", where, figure(change.before), figure(change.after),
            change.cause, verdict]


def changes_intro(changes: RunChanges) -> str:
    """The sentence above the table, or all there is to say ("none", too few runs)."""
    if not changes.enough_runs:
        return f"Not enough history yet: {changes.shortage}."
    if not changes.changes:
        return (f"None: no change point (latency or memory) in the last {RECENT_RUNS} runs of "
                f"this run's series ({changes.runs} comparable runs).")
    return (f"{len(changes.changes)} change point(s) whose later side starts in the last "
            f"{RECENT_RUNS} runs of this run's series ({changes.runs} comparable runs); "
            f"{len(changes.gating)} new and worse (what `--fail-on change` fails on). A step "
            f"needs {MIN_SEGMENT} runs on each side, so this run confirms one at the run "
            f"before it.")


def drift_intro(baseline_id: str, items: Sequence[DriftItem]) -> str:
    if not items:
        return (f"None: against run {baseline_id}, the recommended config is still on the "
                f"frontier and no dominated config joined it.")
    return (f"Against the previous comparable run {baseline_id} (recommendation at the "
            f"default accuracy limit, frontier of latency, accuracy drop and memory):")


# Deployment metrics (saturation rate, per-class drop, cost per million inferences).

DEPLOYMENT_TITLE = "Deployment metrics"
DEPLOYMENT_HEADERS = ("config", "backend", "saturation", "most clipped tensor",
                      "worst class (drop pp)", "USD per 1M inferences")
DEPLOYMENT_MEANING = (
    "saturation = share of activation values outside the quantized ranges (the QDQ model's "
    "QuantizeLinear scale and zero point) on up to 32 evaluation inputs, run through the fp32 "
    "model; 0 for float configs, n/a for weight-only ones (activations stay float); target "
    "below 1%. Worst class = the label whose top-1 accuracy fell most vs fp32's on it. Cost = "
    "the target's price per hour / 3600 x latency in s x 1e6: one stream, back to back")


def has_deployment_metrics(trials: Sequence[Trial]) -> bool:
    return any(t.saturation is not None or t.class_accuracy is not None
               or t.cost_per_million_usd is not None for t in trials)


def deployment_cells(trial: Trial) -> list[str]:
    """The deployment metrics of one trial as table cells (after config and backend)."""
    saturation = trial.saturation
    if saturation is None:
        rate = "-"
    elif saturation.rate is None:
        rate = "n/a"
    else:
        rate = f"{saturation.rate:.3%}"
    worst = None if saturation is None else saturation.worst
    clipped = "-" if worst is None else f"{worst[0]} ({worst[1]:.2%})"
    classes = trial.class_accuracy
    if classes is None:
        cohort = "-"
    elif classes.worst_drop <= 0:
        cohort = "none dropped"
    else:
        cohort = f"{classes.worst_class} ({pp(classes.worst_drop)})"
    return [rate, clipped, cohort, fmt(trial.cost_per_million_usd, "{:.4f}")]


PREDICTION_TITLE = "Predicted before measuring"


def prediction_intro(check) -> str:
    """Where a ``PredictionCheck`` came from, in one sentence."""
    source = ("this guided run, before its first measurement" if check.stage == "prior"
              else "`autotune run --predict-only`, before this run started")
    budget = (f"; guided search expected to need {check.expected_budget} of "
              f"{check.candidates} candidates" if check.expected_budget is not None else "")
    # A group whose every config is predicted more likely to fail has its front drawn over
    # all of them (``predict.predict_space``): its front points say so by their probability.
    doomed = sorted({f"{p.target} ({p.backend})" for p in check.front
                     if p.failure_probability is not None
                     and p.failure_probability >= LIKELY_TO_FAIL})
    exception = (f" (on {', '.join(doomed)} every config is predicted more likely to fail, "
                 f"and the front is drawn over all of them)" if doomed else "")
    return (f"Predicted by {source}: the cost model ({check.model_version}) learned from "
            f"{check.trained_on} stored trials of {check.models} model"
            f"{'' if check.models == 1 else 's'} and predicted {check.candidates} "
            f"candidates{budget}. The front below is per target and backend, over predicted "
            f"latency (with the ensemble's range) and output error vs fp32 (guided search's "
            f"objective), among configs predicted more likely to work than to fail{exception}; "
            f"these are predictions, not measurements.")


def prediction_outcome(check) -> str:
    """How far the prediction was from what the run measured, in one sentence."""
    if not check.measured:
        return "The run measured none of the predicted configs yet."
    mape = f"{check.latency_mape:.1%}" if check.latency_mape is not None else "-"
    return (f"Against the measurements: latency MAPE {mape} over {check.measured} measured "
            f"configs, {check.within_interval} of them inside the predicted range; "
            f"{check.front_hits} of the {check.front_measured} predicted-front configs the run "
            f"measured are on the measured front.")


def prediction_cells(point, measured_ms: float | None, on_front: bool | None) -> list[str]:
    """One predicted-front row: config, backend, latency and its range, drop, memory, and
    the measurement where the run made one."""
    low, high = point.latency_low_ms, point.latency_high_ms
    interval = f"{low:.3f}-{high:.3f}" if low is not None and high is not None else "-"
    return [point.config.label, point.backend, f"{point.latency_ms:.3f}", interval,
            pp(point.accuracy_drop), mib(point.memory_bytes),
            fmt(measured_ms), "-" if on_front is None else ("yes" if on_front else "no")]


PREDICTION_HEADERS = ("config", "backend", "predicted latency (ms)", "range (ms)",
                      "predicted drop (pp)", "predicted memory (MiB)", "measured latency (ms)",
                      "on the measured front")

"""The Markdown summary (``summary.md``) of a run's facts."""

from __future__ import annotations

from collections.abc import Sequence

from autotune.report.facts import Recommendation, Regressions, RooflineFacts, RunFacts, TrialFacts
from autotune.report.text import (
    CHANGE_HEADERS,
    CHANGES_TITLE,
    DEPLOYMENT_HEADERS,
    DEPLOYMENT_MEANING,
    DEPLOYMENT_TITLE,
    DRIFT_TITLE,
    MACHINE_HEADER,
    PREDICTION_HEADERS,
    PREDICTION_TITLE,
    change_cells,
    changes_intro,
    chosen_figures,
    deployment_cells,
    drift_intro,
    fmt,
    has_deployment_metrics,
    kib,
    limit_text,
    machine_text,
    mib,
    miss_text,
    pp,
    prediction_cells,
    prediction_intro,
    prediction_outcome,
)
from autotune.throughput import contention_text


def render_markdown(facts: RunFacts, plot_name: str | None = None) -> str:
    run = facts.run
    lines = [f"# autotune run {run.id}", ""]
    if run.synthetic_data:
        lines += ["> **No data was given for this model**: it was calibrated on seeded random "
                  "inputs and scored only for fidelity against fp32 (accuracy drop = 1 - mean "
                  "cosine similarity of the outputs). Give `--data` for a task metric.", ""]
    lines += [
        f"- model: `{run.model}` ({run.model_path}, sha256 {run.model_hash})",
        f"- search space: `{run.space}`{run.search.extent()}; metric: {run.metric}"
        + (f"; fp32 reference accuracy {run.reference_accuracy:.2%}"
           if run.reference_accuracy is not None else ""),
        f"- host: {run.host.get('cpu_model')} ({run.host.get('cores')} cores), "
        f"{run.host.get('system')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(run.versions.items())),
        f"- status: {run.status}; started {run.created_at}, finished {run.finished_at or '-'}",
        f"- trials: {len(facts.trials)} ("
        + ", ".join(f"{n} {s}" for s, n in facts.status_counts) + ")",
        "- backends: " + ", ".join(f"{name} {n} trials" for name, n in facts.backend_counts)
        + (f"; tuning budget {run.settings.tuning_trials} trials per model (backends that "
           f"tune)" if run.settings.tuning_trials else ""),
        f"- {facts.latency_meaning}",
    ]
    if run.search.converged is not None:
        lines.append(f"- search: {run.search.converged.text()}")
    lines.append("")
    lines += _prediction(facts.prediction)
    if plot_name:
        lines += [f"![frontier]({plot_name})", ""]
    for target in facts.targets:
        lines += [f"## Target `{target.name}`", ""]
        lines += _recommendation(target.recommendation)
        if target.front:
            lines += ["### Pareto frontier (latency, accuracy drop, memory)", ""]
            lines += _trial_table(target.front)
        if target.ok:
            lines += ["### All successful trials", ""]
            lines += _trial_table(target.ok)
            lines += _throughput_table(target.ok, target.throughput_front)
            lines += _deployment_table(target.ok)
            lines += _roofline_table(target.roofline)
        if target.failed:
            lines += ["### Failed trials", "", "| config | backend | status | error |",
                      "|---|---|---|---|"]
            for t in (f.trial for f in target.failed):
                error = " ".join(t.error.split())[:300].replace("|", "\\|")
                lines.append(f"| {t.config.label} | {t.backend} | {t.status} | {error} |")
            lines.append("")
    if facts.regressions is not None:
        lines += _regressions(facts.regressions)
    lines += _drift(facts)
    if facts.changes is not None:
        lines += _changes(facts.changes)
    return "\n".join(lines) + "\n"


def _recommendation(rec: Recommendation) -> list[str]:
    limit = limit_text(rec.max_accuracy_drop)
    if rec.chosen is not None:
        chosen = rec.chosen.trial
        return [f"**Recommended** (fastest at <= {limit} accuracy drop): "
                f"`{chosen.config.label}` on {chosen.backend}, {chosen_figures(rec)}. "
                f"Reproduce: `{rec.reproduce}`", ""]
    if rec.nearest:
        return [f"**No config meets <= {limit} accuracy drop.** Nearest: "
                + "; ".join(f"`{f.trial.config.label}` on {f.trial.backend} {miss_text(miss)}"
                            for f, miss in rec.nearest), ""]
    return ["**No successful trial on this target**: nothing to recommend.", ""]


def _prediction(check) -> list[str]:
    """The run's opening section: what was predicted before measuring, and how it fared."""
    if check is None:
        return []
    lines = [f"## {PREDICTION_TITLE}", "", prediction_intro(check), "",
             prediction_outcome(check), ""]
    for target in dict.fromkeys(p.target for p in check.front):
        lines += [f"### Predicted front on `{target}`", "",
                  "| " + " | ".join(PREDICTION_HEADERS) + " |",
                  "|" + "---|" * len(PREDICTION_HEADERS)]
        lines += ["| " + " | ".join(prediction_cells(point, *outcome)) + " |"
                  for point, outcome in zip(check.front, check.outcomes, strict=True)
                  if point.target == target]
        lines.append("")
    return lines


def _trial_table(trials: Sequence[TrialFacts]) -> list[str]:
    lines = ["| config | backend | latency ms | median ms | p90 ms | spread | speedup vs fp32 "
             f"| accuracy | drop pp | memory MiB | size KiB | {MACHINE_HEADER} | notes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for f in trials:
        t = f.trial
        lines.append(
            f"| {t.config.label} | {t.backend} | {fmt(t.latency_ms)} | "
            f"{fmt(t.latency_median_ms)} | {fmt(t.latency_p90_ms)} | "
            f"{fmt(t.latency_spread, '{:.1%}')} | {fmt(f.speedup, '{:.2f}x')} | "
            f"{fmt(t.accuracy, '{:.2%}')} | {pp(t.accuracy_drop)} | {mib(t.memory_bytes)} | "
            f"{kib(t.artifact_size_bytes)} | {machine_text(t)} | {'; '.join(f.flags)} |")
    lines.append("")
    return lines


THROUGHPUT_MEANING = (
    "inferences/s = inferences completed / wall time of a timed window (at least the run's "
    "min time, after warm-up) on the trial's pinned cores, in its first pass; latency mode "
    "= 1000 / latency (one synchronous request at a time, batch 1); OpenVINO runs the "
    "THROUGHPUT hint (its streams, its async requests kept busy), TVM the model built for "
    "each batch")


def _throughput_table(ok: Sequence[TrialFacts], front: Sequence[TrialFacts]) -> list[str]:
    """The throughput mode (--batch) of each trial that has one, next to its latency mode,
    with the throughput and latency ratios vs fp32 side by side."""
    measured = [f for f in ok if f.trial.throughput is not None]
    if not measured:
        return []
    batches = list(dict.fromkeys(point.requested for f in measured
                                 for point in f.trial.throughput.points))
    on_front = {id(f.trial) for f in front}
    lines = ["### Throughput (inferences/s)", "", THROUGHPUT_MEANING + ".", "",
             "| config | backend | latency mode | "
             + " | ".join(f"batch {b}" for b in batches)
             + " | best vs latency mode | throughput vs fp32 | latency speedup vs fp32 "
               "| on throughput front | how |",
             "|---|---|---:|" + "---:|" * len(batches) + "---:|---:|---:|---|---|"]
    for f in measured:
        t = f.trial
        by_batch = {point.requested: point for point in t.throughput.points}
        latency_ips = 1000 / t.latency_ms if t.latency_ms else None
        cells = []
        for b in batches:
            found = by_batch.get(b)
            cells.append("-" if found is None else "failed" if not found.ok
                         else f"{found.inferences_per_s:.1f}"
                         + (f" (at {found.batch})" if found.batch != b else ""))
        best = t.throughput_ips
        how = "; ".join(dict.fromkeys(
            [t.throughput.error] if t.throughput.error else
            [f"batch {p.requested}: {p.error or p.note or p.mode}{contention_text(p)}"
             for p in t.throughput.points]))
        lines.append(
            f"| {t.config.label} | {t.backend} | {fmt(latency_ips, '{:.1f}')} | "
            + " | ".join(cells)
            + f" | {fmt(best / latency_ips if best and latency_ips else None, '{:.2f}x')} | "
              f"{fmt(f.throughput_vs_fp32, '{:.2f}x')} | {fmt(f.speedup, '{:.2f}x')} | "
              f"{'yes' if id(t) in on_front else ''} | {how.replace('|', '/')} |")
    lines.append("")
    return lines


def _deployment_table(ok: Sequence[TrialFacts]) -> list[str]:
    """Saturation rate, the worst class's drop and the cost per million inferences."""
    if not has_deployment_metrics([f.trial for f in ok]):
        return []
    lines = [f"### {DEPLOYMENT_TITLE}", "", DEPLOYMENT_MEANING + ".", "",
             "| " + " | ".join(DEPLOYMENT_HEADERS) + " |",
             "|---|---|---:|---|---|---:|"]
    for t in (f.trial for f in ok):
        cells = [t.config.label, t.backend, *deployment_cells(t)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines.append("")
    return lines


def _roofline_table(roofline: RooflineFacts) -> list[str]:
    """Where each config sits against the roofline its placement was judged on; a bound that
    was beaten shows which peak is wrong instead of a fraction above 100%."""
    placed = [p for p in roofline.points if p.bound_ms]
    if not placed:
        return []
    sources = ", ".join(roofline.sources) or "?"
    levels = ", ".join(f"{name} {gbs:.4g} GB/s" for name, gbs in
                       roofline.level_bandwidth_gbs.items())
    estimated = (f" ({', '.join(roofline.estimated_levels)}: TOML estimates)"
                 if roofline.estimated_levels else "")
    lines = ["### Roofline", "",
             "Bound = max(operations / peak of their precision, each layer's bytes / the "
             "bandwidth of the smallest memory level its working set fits in), peaks from: "
             f"{sources}; levels: {levels or '-'}{estimated}; attained = bound / latency; "
             "level = the level with the most memory time.", "",
             "| config | backend | precision | ops/byte | level | bound by | bound ms | "
             "latency ms | attained |", "|---|---|---|---:|---|---|---:|---:|---:|"]
    for p in placed:
        t = p.trial.trial
        attained = p.beaten or fmt(p.attained, "{:.1%}")
        lines.append(f"| {t.config.label} | {t.backend} | {p.precision} | "
                     f"{p.intensity:.1f} | {p.memory_level or '-'} | {p.bound} | "
                     f"{p.bound_ms:.4f} | {t.latency_ms:.3f} | {attained} |")
    lines.append("")
    return lines


def _regressions(found: Regressions) -> list[str]:
    lines = ["## Regressions vs the previous comparable run", ""]
    if found.baseline is None:
        return lines + ["No earlier run in this store has a comparable trial.", ""]
    changes = ", ".join(f"{name} {old or '-'} -> {new or '-'}"
                        for name, (old, new) in found.version_changes.items())
    lines += [f"Baseline run `{found.baseline.id}`; versions: {changes or 'identical'}. "
              f"{len(found.rows)} regression(s) in {found.compared} trials measured in both "
              "runs.", ""]
    if found.rows:
        lines += ["| config | backend | target | regression | detail |", "|---|---|---|---|---|"]
        lines += [f"| {t.config.label} | {t.backend} | {t.target} | {kind} | "
                  f"{detail.replace('|', '/')} |" for t, kind, detail in found.rows]
        lines.append("")
    return lines


def _drift(facts: RunFacts) -> list[str]:
    baseline = facts.regressions.baseline if facts.regressions is not None else None
    if baseline is None or facts.drift is None:
        return []
    lines = [f"## {DRIFT_TITLE}", "", drift_intro(baseline.id, facts.drift), ""]
    lines += [f"- {item.text}" for item in facts.drift]
    return lines + ([""] if facts.drift else [])


def _changes(changes) -> list[str]:
    lines = [f"## {CHANGES_TITLE}", "", changes_intro(changes), ""]
    if changes.changes:
        lines += ["| " + " | ".join(CHANGE_HEADERS) + " |",
                  "|" + "---|" * len(CHANGE_HEADERS)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in change_cells(found))
                  + " |" for found in changes.changes]
        lines.append("")
    return lines

"""The HTML report: one self-contained ``index.html`` per run, readable with no tool installed.

It renders a run's facts (``facts.RunFacts``) and looks nothing up. Plots are inline SVG
(``charts``), so every point carries its config as a tooltip and a ``data-key`` that links
it to its table rows; the CSS and a little vanilla JS from ``assets/`` are inlined,
and a Content-Security-Policy forbids every fetch, so the file opens from disk, a mail or a
CI artifact with no network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from autotune.report.charts import (
    frontier_legend,
    frontier_svg,
    roofline_legend,
    roofline_svg,
)
from autotune.report.facts import Recommendation, Regressions, RunFacts, TargetFacts, TrialFacts
from autotune.report.svg import anchor, dom_key, e, trial_key
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
    has_deployment_metrics,
    judged_machine,
    limit_text,
    machine_text,
    miss_text,
    pp_pattern,
    prediction_cells,
    prediction_intro,
    prediction_outcome,
)
from autotune.store import now

ASSETS = Path(__file__).parent / "assets"
# Inline styles and scripts only; nothing may be fetched (images are inline SVG or data:).
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")
MAX_ERROR_CHARS = 20_000


def render_html(facts: RunFacts) -> str:
    """The whole page as one string."""
    sections = [_summary(facts)]
    if facts.prediction is not None:
        sections.append(_prediction_section(facts.prediction))
    sections += [_target_section(facts, target) for target in facts.targets]
    if facts.regressions is not None:
        sections.append(_regressions_section(facts.regressions))
    if _drift_baseline(facts) is not None:
        sections.append(_drift_section(facts))
    if facts.changes is not None:
        sections.append(_changes_section(facts.changes))
    return _page(facts, "\n".join(sections))


def write_html(facts: RunFacts, out: Path) -> Path:
    path = Path(out) / "index.html"
    path.write_text(render_html(facts), encoding="utf-8")
    return path


# Page and summary


def _page(facts: RunFacts, body: str) -> str:
    run = facts.run
    toc = ['<a href="#summary">Summary</a>']
    if facts.prediction is not None:
        toc.append(f'<a href="#predicted">{PREDICTION_TITLE}</a>')
    toc += [f'<a href="#{anchor("target-" + t.name)}">Target {e(t.name)}</a>'
            for t in facts.targets]
    if facts.regressions is not None:
        toc.append('<a href="#regressions">Regressions</a>')
    if _drift_baseline(facts) is not None:
        toc.append(f'<a href="#drift">{DRIFT_TITLE}</a>')
    if facts.changes is not None:
        toc.append('<a href="#changes">Changes</a>')
    footer = (f'Written by autotune {e(run.versions.get("autotune", ""))} at {e(now())}.\n'
              "This file is self-contained; <code>summary.md</code> and <code>trials.csv</code> "
              "sit next to\nit.")
    return document(f"autotune run {e(run.id)}: {e(run.model)}", f"autotune run {e(run.id)}",
                    f"{e(run.model)} &middot; search space {e(run.space)} &middot; "
                    f"{e(run.status)}", " ".join(toc), body, footer)


def document(title: str, heading: str, subtitle: str, toc: str, body: str, footer: str,
             extra_css: str = "") -> str:
    """A self-contained page: the report's CSS (then ``extra_css``) and script inlined, and
    a CSP that forbids every fetch. Every argument is HTML, escaped by the caller."""
    css = (ASSETS / "report.css").read_text(encoding="utf-8") + extra_css
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}</style>
</head>
<body>
<header class="page"><div>
<h1>{heading}</h1>
<p>{subtitle}</p>
<nav class="toc">{toc}</nav>
</div></header>
<main>
{body}
<footer>{footer}</footer>
</main>
<script>
{script}</script>
</body>
</html>
"""


def _summary(facts: RunFacts) -> str:
    run, settings = facts.run, facts.run.settings
    parts = ['<section id="summary">', "<h2>Summary</h2>"]
    if run.synthetic_data:
        parts.append('<p class="banner"><strong>No data was given for this model</strong>: it '
                     "was calibrated on seeded random inputs and scored only for fidelity "
                     "against fp32 (accuracy drop = 1 - mean cosine similarity of the "
                     "outputs). Give <code>--data</code> for a task metric.</p>")
    space = (f"{len(settings.configs)} config(s) given with --config" if settings.configs
             else f"space <code>{e(run.space)}</code>") + e(run.search.extent())
    budget = (f"{settings.budget} measured trials" if settings.budget is not None
              else "the whole space")
    chips = [f'<span class="chip">{len(facts.trials)} in all</span>']
    for status, count in facts.status_counts:
        kind = "ok" if status == "ok" else "skip" if status == "unavailable" else "fail"
        chips.append(f'<span class="chip {kind}">{count} {e(status)}</span>')
    rows = [
        ("model", f"<code>{e(run.model)}</code> ({e(run.model_path)}, sha256 "
                  f"<code>{e(run.model_hash[:16])}</code>)"),
        ("metric", e(run.metric) + (f"; fp32 reference accuracy {run.reference_accuracy:.2%}"
                                    if run.reference_accuracy is not None else "")),
        ("targets", "; ".join(f"<code>{e(name)}</code>" for name in facts.target_names)
         or "-"),
        ("backends", e(", ".join(facts.backends))),
        ("search", f"{space}, strategy {e(settings.strategy)}, budget {budget}"
                   + (f"; {e(run.search.converged.text())}" if run.search.converged else "")),
        ("measurement", e(f"at least {settings.min_repeats} timed runs and "
                          f"{settings.min_time_s} s per trial, {settings.passes} pass(es); "
                          f"trial time limit {settings.timeout_s:g} s; tuning trials "
                          f"{settings.tuning_trials}; {facts.latency_meaning}")),
        ("host", e(f"{run.host.get('cpu_model', '?')} ({run.host.get('cores', '?')} cores), "
                   f"{run.host.get('system', '?')}, host {run.host.get('hostname', '?')}, "
                   f"Python {run.host.get('python', '?')}")),
        ("runtime versions", " ".join(f'<span class="chip">{e(k)} {e(v)}</span>'
                                      for k, v in sorted(run.versions.items()))),
        ("run", e(f"{run.status}; started {run.created_at}, finished "
                  f"{run.finished_at or '-'}")),
        ("trials", " ".join(chips)),
    ]
    parts.append('<dl class="facts">' + "".join(f"<dt>{name}</dt><dd>{value}</dd>"
                                                for name, value in rows) + "</dl>")
    parts.append("</section>")
    return "\n".join(parts)


# One target


def _target_section(facts: RunFacts, target: TargetFacts) -> str:
    parts = [f'<section id="{anchor("target-" + target.name)}">',
             f"<h2>Target <code>{e(target.name)}</code></h2>",
             _recommendation(target.recommendation),
             _frontier_block(facts, target)]
    if target.front:
        parts.append("<h3>Pareto frontier (latency, accuracy drop, memory)</h3>"
                     + _trial_table(target.front))
    parts += [_roofline_block(facts, target), _sensitivity_block(target),
              _flags_block(target)]
    if target.ok:
        parts.append("<h3>All successful trials</h3>"
                     '<p class="note">Click a column header to sort.</p>'
                     + _trial_table(target.ok))
    parts += [_deployment_block(target.ok), _failed_block(target.failed), "</section>"]
    return "\n".join(part for part in parts if part)


def _recommendation(rec: Recommendation) -> str:
    limit = limit_text(rec.max_accuracy_drop)
    if rec.chosen is not None:
        chosen = rec.chosen.trial
        return (f'<div class="recommended"><div>Recommended (fastest at &le; {limit} accuracy '
                f'drop)</div><div class="big"><code>{e(chosen.config.label)}</code> on '
                f"{e(chosen.backend)}</div><div>{e(chosen_figures(rec))}</div>"
                f"<div>Reproduce: <code>{e(rec.reproduce)}</code></div></div>")
    if rec.nearest:
        misses = "; ".join(f"<code>{e(f.trial.config.label)}</code> on {e(f.trial.backend)} "
                           f"{miss_text(miss)}" for f, miss in rec.nearest)
        return (f'<div class="recommended missing"><strong>No config meets &le; {limit} '
                f"accuracy drop.</strong> Nearest: {misses}</div>")
    return ('<div class="recommended missing"><strong>No successful trial on this target'
            "</strong>: nothing to recommend.</div>")


def _frontier_block(facts: RunFacts, target: TargetFacts) -> str:
    head = "<h3>Pareto frontier: latency vs accuracy drop, memory as marker size</h3>"
    if not target.plotted:
        return head + '<p class="note">No successful trial to plot.</p>'
    limit = limit_text(facts.max_accuracy_drop)
    caption = (f"Each marker is one successful trial on {e(target.name)} "
               f"({len(target.plotted)} measured, {len(target.predicted)} predicted); hover a "
               "marker for its config, it lights up in the tables below. Lower left is "
               "better. The line joins the configs that no other beats on both latency and "
               "accuracy drop; a dark outline marks every config on the Pareto frontier once "
               "memory counts too (the table below). The green ring marks the recommended "
               f"config, the shaded band exceeds the {limit} default limit. Filled markers are "
               "measured; hollow dashed markers are cost-model predictions for configs this "
               "run did not measure."
               + (" The dashed purple line (one per backend) is the front the cost model "
                  "predicted before the run measured anything." if target.predicted_front
                  else ""))
    return (f"{head}<figure>{frontier_svg(facts, target)}{frontier_legend(facts, target)}"
            f"<figcaption>{caption}</figcaption></figure>")


def _deployment_block(ok: Sequence[TrialFacts]) -> str:
    """Saturation rate, the worst class's drop and the cost per million inferences."""
    if not has_deployment_metrics([f.trial for f in ok]):
        return ""
    head = "".join(f"<th>{e(name)}</th>" for name in DEPLOYMENT_HEADERS)
    rows = "".join(
        f'<tr data-key="{trial_key(f.trial)}">'
        + "".join(f"<td>{e(cell)}</td>" for cell in
                  [f.trial.config.label, f.trial.backend, *deployment_cells(f.trial)])
        + "</tr>" for f in ok)
    return (f"<h3>{DEPLOYMENT_TITLE}</h3><p class=\"note\">{e(DEPLOYMENT_MEANING)}.</p>"
            '<div class="table-wrap"><table class="sortable"><thead><tr>'
            f"{head}</tr></thead><tbody>{rows}</tbody></table></div>")


def _failed_block(failed: Sequence[TrialFacts]) -> str:
    if not failed:
        return ""
    rows = []
    for t in (f.trial for f in failed):
        error = t.error.strip() or "(no error text)"
        if len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + f"\n... ({len(t.error) - MAX_ERROR_CHARS} more "
            error += "characters in the store)"
        first = error.splitlines()[0][:200]
        body = (f"<pre>{e(error)}</pre>" if "\n" not in error and len(error) <= 200
                else f"<details><summary>{e(first)}</summary><pre>{e(error)}</pre></details>")
        rows.append(f'<tr data-key="{trial_key(t)}"><td title="{e(t.config.text)}">'
                    f"{e(t.config.label)}</td><td>{e(t.backend)}</td>"
                    f'<td class="status-bad">{e(t.status)}</td><td>{body}</td></tr>')
    return (f"<h3>Failed trials ({len(failed)})</h3>"
            '<div class="table-wrap"><table class="sortable failed"><thead><tr>'
            "<th>config</th><th>backend</th><th>status</th><th>error</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _flags_block(target: TargetFacts) -> str:
    items = [f'<li data-key="{trial_key(f.trial)}"><code>{e(f.trial.config.label)}</code> on '
             f"{e(f.trial.backend)}: {e('; '.join(f.flags))}</li>" for f in target.flagged]
    head = "<h3>Flags: quantized but slower, int8 that fell back to float</h3>"
    if not items:
        return (head + '<p class="note">Nothing flagged: no quantized config is slower than '
                "fp32 and no requested int8 op ran in float.</p>")
    return head + f'<ul class="flag-list">{"".join(items)}</ul>'


# Tables


_COLUMNS = (("config", "text"), ("backend", "text"), ("latency ms", "num"),
            ("median ms", "num"), ("p90 ms", "num"), ("p99 ms", "num"), ("spread", "num"),
            ("speedup vs fp32", "num"), ("accuracy", "num"), ("drop pp", "num"),
            ("memory MiB", "num"), ("size KiB", "num"), (MACHINE_HEADER, "num"),
            ("notes", "text"))


# After "speedup vs fp32" where any trial has the throughput mode's figures (--batch).
_THROUGHPUT_COLUMNS = (("inferences/s", "num"), ("throughput vs fp32", "num"))


def _trial_table(trials: Sequence[TrialFacts]) -> str:
    throughput = any(f.trial.throughput is not None for f in trials)
    columns = list(_COLUMNS)
    if throughput:
        at = columns.index(("speedup vs fp32", "num")) + 1
        columns[at:at] = _THROUGHPUT_COLUMNS
    head = "".join(f'<th data-type="{kind}"' + (' class="num"' if kind == "num" else "")
                   + f">{e(name)}</th>" for name, kind in columns)
    rows = "".join(_trial_row(f, throughput) for f in trials)
    return (f'<div class="table-wrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _trial_row(f: TrialFacts, throughput: bool = False) -> str:
    t = f.trial
    drop = None if t.accuracy_drop is None else t.accuracy_drop * 100
    memory = None if t.memory_bytes is None else t.memory_bytes / 2**20
    size = None if t.artifact_size_bytes is None else t.artifact_size_bytes / 1024
    cells = [
        f'<td class="config" title="{e(t.config.text)}">{e(t.config.label)}</td>',
        f"<td>{e(t.backend)}</td>",
        _num(t.latency_ms, "{:.3f}"), _num(t.latency_median_ms, "{:.3f}"),
        _num(t.latency_p90_ms, "{:.3f}"), _num(t.latency_p99_ms, "{:.3f}"),
        _num(t.latency_spread, "{:.1%}"), _num(f.speedup, "{:.2f}x"),
        *([_num(t.throughput_ips, "{:.1f}"), _num(f.throughput_vs_fp32, "{:.2f}x")]
          if throughput else []),
        _num(t.accuracy, "{:.2%}"), _num(drop, pp_pattern(drop)),
        _num(memory, "{:.1f}"), _num(size, "{:.0f}"), _machine_cell(t),
        f'<td class="flags">{_flag_chips(f.flags)}</td>',
    ]
    return f'<tr data-key="{trial_key(t)}">{"".join(cells)}</tr>'


def _flag_chips(notes: Sequence[str]) -> str:
    """Short flags for a table cell; the full text is the tooltip and the Flags list."""
    chips = []
    for note in notes:
        short = re.split(r" \(|;|:", note, maxsplit=1)[0]
        chips.append(f'<span class="chip flag" title="{e(note)}">{e(short)}</span>')
    return " ".join(chips)


def _machine_cell(trial) -> str:
    """``machine_text``, sorted by other processes' share."""
    machine = judged_machine(trial)
    share = "" if machine is None or machine.other_share is None else repr(machine.other_share)
    return (f'<td class="num" data-v="{share}" title="other processes\' share of the trial\'s '
            f'cores / steal, during its fastest pass">{e(machine_text(trial))}</td>')


def _num(value: float | None, pattern: str) -> str:
    if value is None:
        return '<td class="num" data-v="">-</td>'
    return f'<td class="num" data-v="{value!r}">{e(pattern.format(value))}</td>'


# Roofline, sensitivity, regressions


def _roofline_block(facts: RunFacts, target: TargetFacts) -> str:
    head = "<h3>Roofline</h3>"
    roofline = target.roofline
    roof = ", ".join(f"{p} {g:g} GOPS" for p, g in roofline.peak_gops.items())
    if roof and roofline.memory_bandwidth_gbs:
        roof += f", memory {roofline.memory_bandwidth_gbs:g} GB/s"
    if roof and roofline.sources:
        roof += f" (from {', '.join(roofline.sources)})"
    if not roofline.points:
        return (head + '<p class="note roofline-missing">No roofline data: no trial carries '
                "operation and byte counts (<code>Trial.roofline</code>).</p>")
    judged = e(roof) if roof else "no trial carries peaks, so no roof"
    caption = ("Each marker is a trial at its arithmetic intensity (operations per byte moved) "
               "and the throughput its latency gives, filled in the colour of the memory level "
               "that takes most of its memory time (each layer's bytes move at the bandwidth "
               "of the smallest level its working set fits in) and outlined in its backend's; "
               "the dashed lines are the level roofs, the flat ones the compute roofs the "
               f"trials were judged against ({judged}). Hover a marker for its config.")
    return (f"{head}<figure>{roofline_svg(facts, roofline)}{roofline_legend(facts, roofline)}"
            f"<figcaption>{caption}</figcaption></figure>{_roofline_table(roofline)}")


def _roofline_table(roofline) -> str:
    """Each placed trial's level, bound and attained fraction; a beaten bound says which
    peak is wrong instead of a fraction above 100%."""
    placed = [p for p in roofline.points if p.bound_ms]
    if not placed:
        return ""
    rows = []
    for p in placed:
        t = p.trial.trial
        attained = (f'<td class="status-bad">{e(p.beaten)}</td>' if p.beaten
                    else _num(p.attained, "{:.1%}"))
        rows.append(f'<tr data-key="{trial_key(t)}"><td class="config">{e(t.config.label)}'
                    f"</td><td>{e(t.backend)}</td><td>{e(p.precision)}</td>"
                    f"<td>{e(p.memory_level or '-')}</td><td>{e(p.bound)}</td>"
                    f"{_num(p.bound_ms, '{:.4f}')}{_num(t.latency_ms, '{:.3f}')}{attained}</tr>")
    return ('<div class="table-wrap"><table class="sortable roofline"><thead><tr>'
            '<th data-type="text">config</th><th data-type="text">backend</th>'
            '<th data-type="text">precision</th><th data-type="text">memory level</th>'
            '<th data-type="text">bound by</th><th data-type="num" class="num">bound ms</th>'
            '<th data-type="num" class="num">latency ms</th>'
            '<th data-type="num" class="num">attained</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _sensitivity_block(target: TargetFacts) -> str:
    head = "<h3>Per-layer sensitivity</h3>"
    if not target.sensitivity:
        return (head + '<p class="note">No per-layer sensitivity scan in this run (trials '
                "carry none in <code>Trial.sensitivity</code>).</p>")
    tables = []
    for trial in (f.trial for f in target.sensitivity):
        layers = sorted(trial.sensitivity.drops.items(), key=lambda pair: -pair[1])
        top = max((abs(v) for _, v in layers), default=0.0) or 1.0
        rows = "".join(
            f"<tr><td><code>{e(layer)}</code></td>{_num(drop * 100, '{:.3f}')}"
            f'<td style="width:50%"><div class="bar" style="width:{abs(drop) / top * 100:.1f}'
            '%"></div></td></tr>' for layer, drop in layers)
        tables.append(
            f"<p>Accuracy drop when only one layer of <code>{e(trial.config.label)}</code> on "
            f"{e(trial.backend)} is quantized, worst first:</p>"
            '<div class="table-wrap"><table class="sortable sensitivity"><thead><tr>'
            '<th data-type="text">layer</th><th data-type="num" class="num">drop pp</th>'
            f'<th data-type="text">relative</th></tr></thead><tbody>{rows}</tbody></table>'
            "</div>")
    return head + "".join(tables)


def _prediction_section(check) -> str:
    """What the cost model predicted before the run measured, and how far it was."""
    parts = [f'<section id="predicted"><h2>{PREDICTION_TITLE}</h2>',
             f"<p>{e(prediction_intro(check))}</p>", f"<p>{e(prediction_outcome(check))}</p>"]
    headers = "".join(f"<th>{e(h)}</th>" for h in ("target", *PREDICTION_HEADERS))
    rows = "".join(
        f'<tr data-key="{dom_key(point.target, point.config.id, point.backend)}">'
        f"<td>{e(point.target)}</td>"
        + "".join(f"<td>{e(cell)}</td>" for cell in prediction_cells(point, *outcome))
        + "</tr>" for point, outcome in zip(check.front, check.outcomes, strict=True))
    parts.append('<div class="table-wrap"><table class="sortable predicted-front">'
                 f"<thead><tr>{headers}</tr></thead><tbody>{rows}</tbody></table></div>")
    parts.append("</section>")
    return "".join(parts)


def _regressions_section(found: Regressions) -> str:
    head = '<section id="regressions"><h2>Regressions vs the previous comparable run</h2>'
    if found.baseline is None:
        return (head + '<p class="note">No earlier run in this store has a comparable trial '
                "(same model, config, backend and target).</p></section>")
    changes = ", ".join(f"{e(name)} {e(old or '-')} &rarr; {e(new or '-')}"
                        for name, (old, new) in found.version_changes.items())
    intro = (f"<p>Baseline run <code>{e(found.baseline.id)}</code> (started "
             f"{e(found.baseline.created_at)}); versions: {changes or 'identical'}. "
             f"{len(found.rows)} regression(s) in {found.compared} trials measured in both runs"
             " (judged by <code>autotune compare</code>'s default thresholds).</p>")
    if not found.rows:
        return head + intro + "</section>"
    rows = "".join(f'<tr data-key="{trial_key(t)}"><td class="config">{e(t.config.label)}</td>'
                   f"<td>{e(t.backend)}</td><td>{e(t.target)}</td>"
                   f'<td class="status-bad">{e(kind)}</td><td>{e(detail)}</td></tr>'
                   for t, kind, detail in found.rows)
    return (head + intro + '<div class="table-wrap"><table class="sortable regressions">'
            "<thead><tr><th>config</th><th>backend</th><th>target</th><th>regression</th>"
            f"<th>detail</th></tr></thead><tbody>{rows}</tbody></table></div></section>")


# Frontier drift and change points


def _drift_baseline(facts: RunFacts):
    baseline = facts.regressions.baseline if facts.regressions is not None else None
    return None if facts.drift is None else baseline


def _drift_section(facts: RunFacts) -> str:
    items = "".join(f'<li data-key="{trial_key(item.after)}">{e(item.text)}</li>'
                    for item in facts.drift)
    return (f'<section id="drift"><h2>{DRIFT_TITLE}</h2>'
            f"<p>{e(drift_intro(_drift_baseline(facts).id, facts.drift))}</p>"
            + (f'<ul class="drift">{items}</ul>' if items else "") + "</section>")


def _changes_section(changes) -> str:
    head = (f'<section id="changes"><h2>{CHANGES_TITLE}</h2>'
            f"<p>{e(changes_intro(changes))}</p>")
    if not changes.changes:
        return head + "</section>"
    headers = "".join(f'<th data-type="text">{e(name)}</th>' for name in CHANGE_HEADERS)
    rows = "".join(
        f'<tr data-key="{trial_key(found.trial)}"'
        + (' class="status-bad"' if found.gating else "") + ">"
        + "".join(f"<td>{e(cell)}</td>" for cell in change_cells(found)) + "</tr>"
        for found in changes.changes)
    return (head + '<div class="table-wrap"><table class="sortable changes">'
            f"<thead><tr>{headers}</tr></thead><tbody>{rows}</tbody></table></div></section>")

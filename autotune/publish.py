"""``autotune publish DIR``: a static history site over a whole store, as asv's ``publish``.

``index.html`` lists every model x target with its latest run; one page per model and target
shows every series (config x backend, one comparable key) across runs: latency (the fastest
pass's median), peak memory and accuracy (or fidelity), each a chart with its change points
(``autotune.changepoints``) marked and the environment diff of each on hover; the latest
run's Pareto frontier next to the previous comparable run's (the report's own charts); and
the config the report recommended in each run, which is what a team picks (``pick`` uses the
same logic). Gathering reads the store (``gather_site``); rendering looks nothing up. Every
page is self-contained like the run report (inline CSS, SVG and script, a CSP that forbids
every fetch), so the folder can be served as it is, or opened from disk.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autotune.changepoints import ChangePoint, SeriesPoint, change_points, points_of, series_in
from autotune.config import QuantConfig
from autotune.errors import InputError
from autotune.gate import previous_comparable_run
from autotune.report.charts import frontier_legend, frontier_svg
from autotune.report.facts import (
    DEFAULT_MAX_DROP,
    Recommendation,
    RunFacts,
    TargetFacts,
    gather,
)
from autotune.report.html import ASSETS, document
from autotune.report.svg import FONT_PX, Frame, Scale, anchor, axes, e, linear_range, svg
from autotune.report.text import chosen_figures, limit_text, miss_text
from autotune.store import Run, Store, now
from autotune.trial import Trial

CHART = Frame(width=440, height=240, left=64, right=14, top=14, bottom=46)
MAX_RUN_TICKS = 10


@dataclass(frozen=True)
class Metric:
    """One figure of a series: how it is read off a trial, and its change-point name."""

    name: str
    title: str
    unit: str
    value: Callable[[Trial], float | None]
    change_metric: str | None  # the ``ChangePoint.metric`` it is segmented as; None: not


def _quality(trial: Trial) -> float | None:
    return trial.accuracy if trial.accuracy is not None else trial.cosine


METRICS = (
    Metric("latency", "latency, ms", "ms",
           lambda t: t.latency_ms, "latency"),
    Metric("memory", "peak memory, MiB", "MiB",
           lambda t: None if t.memory_bytes is None else t.memory_bytes / 2**20, "memory"),
    Metric("accuracy", "accuracy (or cosine)", "", _quality, None),
)


@dataclass(frozen=True)
class SeriesHistory:
    """One comparable key's trials across runs, oldest first, and its change points."""

    label: str
    config: QuantConfig
    points: tuple[SeriesPoint, ...]
    change_points: tuple[ChangePoint, ...]


@dataclass(frozen=True)
class FrontierView:
    facts: RunFacts
    target: TargetFacts


@dataclass(frozen=True)
class Page:
    """What one model x target page shows."""

    model: str
    target: str
    file: str  # its file name in the site folder
    runs: tuple[Run, ...]  # every run with a trial of this model on this target, oldest first
    series: tuple[SeriesHistory, ...]
    picks: tuple[tuple[Run, Recommendation], ...]  # the report's recommendation, per run
    latest: FrontierView
    previous: FrontierView | None  # the previous comparable run's (None: there is none)

    @property
    def change_count(self) -> int:
        return sum(len(s.change_points) for s in self.series)


# Gathering (the only part that reads the store)


def gather_site(store: Store, model: str | None = None, target: str | None = None,
                progress: Callable[[str], None] | None = None) -> list[Page]:
    """Every model x target page's facts.

    Raises:
        InputError: the store holds no runs, or ``model``/``target`` match no stored trial.
    """
    if not store.runs():
        raise InputError(f"no runs in {store.shown_url} yet; nothing to publish (start one "
                         "with `autotune run`)")
    grouped: dict[tuple[str, str], list] = {}
    for pairs in series_in(store, model=model, target=target).values():
        trial = pairs[0][1]
        grouped.setdefault((trial.model, trial.target), []).append(pairs)
    pages = []
    for number, ((name, where), series) in enumerate(sorted(grouped.items()), 1):
        if progress is not None:
            progress(f"page {number}/{len(grouped)}: {name} on {where} ({len(series)} series)")
        pages.append(_page_facts(store, name, where, series))
    return pages


def _page_facts(store: Store, model: str, target: str, grouped: list[list]) -> Page:
    runs = {run.id: run for pairs in grouped for run, _ in pairs}
    ordered = tuple(sorted(runs.values(), key=lambda run: (run.created_at, run.id)))
    per_run: dict[str, list[Trial]] = {}
    for pairs in grouped:
        for run, trial in pairs:
            per_run.setdefault(run.id, []).append(trial)
    picks = tuple((run, gather(run, per_run[run.id]).targets[0].recommendation)
                  for run in ordered)
    latest = ordered[-1]
    previous = previous_comparable_run(store, latest, per_run[latest.id])
    return Page(model=model, target=target, file=page_file(model, target), runs=ordered,
                series=tuple(_series(pairs, grouped) for pairs in
                             sorted(grouped, key=lambda p: (p[0][1].config.label,
                                                            p[0][1].backend))),
                picks=picks, latest=_frontier_view(store, latest, target),
                previous=None if previous is None else _frontier_view(store, previous, target))


def _series(pairs: list, grouped: list[list]) -> SeriesHistory:
    first = pairs[0][1]
    label = f"{first.config.label} on {first.backend}"
    if first.emulated:
        label += ", emulated"
    if first.tuning_trials:
        label += f", {first.tuning_trials} tuning trials"
    if len({p[0][1].model_hash for p in grouped}) > 1:  # the model file changed in between
        label += f", model {first.model_hash[:8]}"
    points = points_of(pairs)
    return SeriesHistory(label, first.config, tuple(points), tuple(change_points(points)))


def _frontier_view(store: Store, run: Run, target: str) -> FrontierView:
    """The run's frontier facts: its trials and predictions only; the report's regressions,
    drift and change points (each a look across the store) are not drawn here."""
    facts = gather(run, store.trials(run.id), predictions=store.predictions(run.id))
    return FrontierView(facts, next(t for t in facts.targets if t.name == target))


def page_file(model: str, target: str) -> str:
    """A file name per model and target: readable, and unique though names differ only in
    characters a file name cannot hold."""
    digest = hashlib.sha1(f"{model}\0{target}".encode()).hexdigest()[:8]
    return f"{anchor(model)}--{anchor(target)}-{digest}.html"


# Writing


def publish(store: Store, out: Path, model: str | None = None, target: str | None = None,
            progress: Callable[[str], None] | None = None) -> Path:
    """Write the site into ``out``; returns its index. Each page is written whole (a file
    renamed into place), the index last, so a crash leaves the previous site readable."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder")
    pages = gather_site(store, model, target, progress)
    out.mkdir(parents=True, exist_ok=True)
    for page in pages:
        _write(out / page.file, render_page(page))
    index = out / "index.html"
    _write(index, render_index(pages, store.shown_url))
    return index


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


# Rendering


def render_index(pages: Sequence[Page], store_url: str) -> str:
    rows = []
    for page in pages:
        run = page.runs[-1]
        regressions = sum(c.regression for s in page.series for c in s.change_points)
        changes = (f"{page.change_count} ({regressions} worse)" if page.change_count else "0")
        rows.append(
            f'<tr><td><a href="{e(page.file)}">{e(page.model)}</a></td><td>{e(page.target)}</td>'
            f'<td class="num" data-v="{len(page.runs)}">{len(page.runs)}</td>'
            f"<td><code>{e(run.id)}</code></td><td>{e(_date(run))}</td>"
            f"<td>{_versions(run.versions)}</td>"
            f'<td class="num" data-v="{len(page.series)}">{len(page.series)}</td>'
            f'<td class="num" data-v="{page.change_count}">{changes}</td>'
            f"<td>{_pick_text(page.picks[-1][1])}</td></tr>")
    body = ('<section id="index"><h2>Models and targets</h2>'
            '<p class="note">One page per model and target: every series across runs with its '
            "change points, the latest Pareto frontier next to the previous comparable run's, "
            "and the config recommended in each run. Click a column header to sort.</p>"
            '<div class="table-wrap"><table class="sortable index"><thead><tr>'
            '<th data-type="text">model</th><th data-type="text">target</th>'
            '<th data-type="num" class="num">runs</th><th data-type="text">latest run</th>'
            '<th data-type="text">date</th><th data-type="text">runtime versions</th>'
            '<th data-type="num" class="num">series</th>'
            '<th data-type="num" class="num">change points</th>'
            '<th data-type="text">recommended in the latest run</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div></section>")
    return _html("autotune history", "autotune history",
                 f"store {e(store_url)} &middot; {len(pages)} model x target page(s)", "", body)


def render_page(page: Page) -> str:
    sections = [_picks_section(page), _frontiers_section(page), _series_section(page),
                _runs_section(page)]
    toc = ('<a href="index.html">all models and targets</a> <a href="#picks">Recommended</a> '
           '<a href="#frontiers">Frontier</a> <a href="#series">Series</a> '
           '<a href="#runs">Runs</a>')
    subtitle = (f"{len(page.runs)} run(s), {len(page.series)} series, "
                f"{page.change_count} change point(s)")
    return _html(f"autotune history: {e(page.model)} on {e(page.target)}",
                 f"{e(page.model)} on {e(page.target)}", subtitle, toc,
                 "\n".join(sections))


def _picks_section(page: Page) -> str:
    rows, before = [], None
    for number, (run, rec) in enumerate(page.picks, 1):
        chosen = rec.chosen.trial if rec.chosen is not None else None
        key = None if chosen is None else (chosen.config.id, chosen.backend)
        changed = number > 1 and key != before
        before = key
        rows.append(f"<tr><td>#{number}</td><td><code>{e(run.id)}</code></td>"
                    f"<td>{e(_date(run))}</td><td>{_versions(run.versions)}</td>"
                    f"<td>{_pick_text(rec)}</td><td>{'changed' if changed else ''}</td></tr>")
    limit = limit_text(page.picks[-1][1].max_accuracy_drop if page.picks else DEFAULT_MAX_DROP)
    return ('<section id="picks"><h2>Recommended config per run</h2>'
            f'<p class="note">The fastest config at &le; {limit} accuracy drop, as each run\'s '
            "report recommends it (<code>autotune pick</code> answers the same).</p>"
            '<div class="table-wrap"><table class="picks"><thead><tr><th>#</th><th>run</th>'
            "<th>date</th><th>runtime versions</th><th>recommended</th><th></th></tr></thead>"
            f"<tbody>{''.join(reversed(rows))}</tbody></table></div></section>")


def _pick_text(rec: Recommendation) -> str:
    if rec.chosen is not None:
        trial = rec.chosen.trial
        return (f'<code title="{e(trial.config.text)}">{e(trial.config.label)}</code> on '
                f"{e(trial.backend)}: {e(chosen_figures(rec))}")
    if rec.nearest:
        return "none qualifies; nearest: " + "; ".join(
            f"<code>{e(f.trial.config.label)}</code> {e(miss_text(miss))}"
            for f, miss in rec.nearest)
    return "no successful trial"


def _frontiers_section(page: Page) -> str:
    figures = [_frontier_figure(page.latest, "latest run")]
    if page.previous is not None:
        figures.append(_frontier_figure(page.previous, "previous comparable run"))
        note = ""
    else:
        note = ('<p class="note">No earlier finished run has a comparable trial (same model, '
                "config, backend, target, tuning budget): nothing to set beside it.</p>")
    return ('<section id="frontiers"><h2>Pareto frontier: latest run and the previous '
            f'comparable run</h2>{note}<div class="figures">{"".join(figures)}</div></section>')


def _frontier_figure(view: FrontierView, what: str) -> str:
    run = view.facts.run
    caption = f"{what}: <code>{e(run.id)}</code>, {e(_date(run))}; {_versions(run.versions)}"
    if not view.target.plotted:
        return ('<figure><p class="note">No successful trial to plot.</p>'
                f"<figcaption>{caption}</figcaption></figure>")
    return (f"<figure>{frontier_svg(view.facts, view.target)}"
            f"{frontier_legend(view.facts, view.target)}<figcaption>{caption}</figcaption>"
            "</figure>")


def _series_section(page: Page) -> str:
    position = {run.id: index for index, run in enumerate(page.runs)}
    parts = ['<section id="series"><h2>Series across runs</h2>'
             '<p class="note">Latency is the median of the fastest measurement pass; accuracy '
             "is the task metric, or the cosine similarity to fp32 for a model run without "
             "data. x: the runs of this page, oldest first (#1 ...; the Runs table below names "
             "them). A dashed line marks a change point between the runs on either "
             "side: hover it for what changed in the environment; hover a point for its run. "
             "Crosses at the bottom are runs where the trial failed.</p>"]
    for series in page.series:
        parts.append(f'<h3 title="{e(series.config.text)}">{e(series.label)}</h3>')
        if series.change_points:
            items = "".join(f'<li class="{"regression" if c.regression else "improvement"}">'
                            f"{e(c.summary)}</li>" for c in series.change_points)
            parts.append(f'<ul class="changes">{items}</ul>')
        else:
            parts.append('<p class="note">change points: none</p>')
        charts = "".join(f"<figure>{series_chart(metric, series, position)}</figure>"
                         for metric in METRICS)
        parts.append(f'<div class="figures">{charts}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def series_chart(metric: Metric, series: SeriesHistory, position: dict[str, int]) -> str:
    """One metric of one series across the page's runs: a line through the successful runs,
    a cross per failed run, a dashed line per change point of this metric."""
    f, count = CHART, len(position)
    measured = [(position[p.run_id], metric.value(p.trial), p) for p in series.points]
    ok = [(x, v, p) for x, v, p in measured if p.trial.ok and v is not None]
    if not ok:
        return f'<p class="note">No {e(metric.name)} figure in any run.</p>'
    x = Scale(-0.5, count - 0.5, f.left, f.width - f.right)
    y = Scale(*linear_range([v for _, v, _ in ok]), f.height - f.bottom, f.top)
    step = math.ceil(count / MAX_RUN_TICKS)
    parts = axes(x, y, "run (oldest first)", metric.title, f,
                 [(i, f"#{i + 1}") for i in range(0, count, step)])
    coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v, _ in ok)
    parts.append(f'<polyline points="{coords}" fill="none" stroke="#2b6cb0" stroke-width="2"/>')
    for change in series.change_points:
        if change.metric == metric.change_metric:
            parts.append(_change_mark(change, position, x))
    for i, value, point in ok:
        title = (f"run #{i + 1} {point.run_id}: {value:.4g} {metric.unit}".rstrip()
                 + "".join(f"\n{name} {version}" for name, version
                           in sorted(point.trial.versions.items())))
        parts.append(f'<circle class="run-point" cx="{x(i):.1f}" cy="{y(value):.1f}" r="4" '
                     f'fill="#2b6cb0" stroke="#ffffff"><title>{e(title)}</title></circle>')
    bottom = f.height - f.bottom - 6
    for i, _, point in measured:
        if not point.trial.ok:
            parts.append(f'<text class="failed-run" x="{x(i):.1f}" y="{bottom}" '
                         f'text-anchor="middle" font-size="{FONT_PX}" fill="#b3261e">&#215;'
                         f"<title>run #{i + 1} {e(point.run_id)}: {e(point.trial.status)}"
                         "</title></text>")
    return svg(parts, f"{metric.name} of {series.label}", f)


def _change_mark(change: ChangePoint, position: dict[str, int], x: Scale) -> str:
    """Dashed lines before the first run after the change (a drift: at its first and last
    step), with the change and the environment diff as their tooltip."""
    before, after = change.before_run_ids[-1], change.run_id
    diff = "\n".join(c.text for c in change.environment) or change.cause
    title = (f"{change.summary}\n{change.before:.4g} -> {change.after:.4g}\n"
             f"what changed between run {before} and run {after}:\n{diff}")
    color = "#b3261e" if change.regression else "#1e7a46"
    lines = []
    for run_id in dict.fromkeys([change.first_run_id, change.run_id]):
        px = x(position[run_id] - 0.5)
        top, bottom = CHART.top, CHART.height - CHART.bottom
        lines.append(f'<line class="mark" x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" '
                     f'stroke="{color}" stroke-width="2" stroke-dasharray="5 3"/>'
                     f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" '
                     'stroke="transparent" stroke-width="12"/>')
    return (f'<g class="change-point" data-metric="{e(change.metric)}">{"".join(lines)}'
            f"<title>{e(title)}</title></g>")


def _runs_section(page: Page) -> str:
    rows = "".join(f"<tr><td>#{number}</td><td><code>{e(run.id)}</code></td>"
                   f"<td>{e(_date(run))}</td><td>{e(run.status)}</td>"
                   f"<td>{e(run.campaign or '-')}</td><td>{_versions(run.versions)}</td>"
                   f"<td>{e(run.host.get('cpu_model', '-'))}, {e(run.host.get('hostname', '-'))}"
                   "</td></tr>" for number, run in enumerate(page.runs, 1))
    return ('<section id="runs"><h2>Runs</h2><div class="table-wrap"><table class="runs">'
            "<thead><tr><th>#</th><th>run</th><th>created</th><th>status</th><th>campaign</th>"
            "<th>versions</th><th>machine</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div></section>")


def _date(run: Run) -> str:
    return run.created_at[:16].replace("T", " ")


def _versions(versions: dict) -> str:
    return " ".join(f'<span class="chip">{e(name)} {e(version)}</span>'
                    for name, version in sorted(versions.items()))


def _html(title: str, heading: str, subtitle: str, toc: str, body: str) -> str:
    """A site page (every argument HTML, already escaped): the report's page, with the site's
    own CSS added."""
    footer = (f"Written by <code>autotune publish</code> at {e(now())}. Every page is "
              "self-contained: no file outside this folder is needed.")
    return document(title, heading, subtitle, toc, body, footer,
                    (ASSETS / "site.css").read_text(encoding="utf-8"))

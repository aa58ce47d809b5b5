"""The HTML report: one self-contained ``index.html`` per run, readable with no tool installed.

Plots are inline SVG written here rather than matplotlib images, so every point can carry
its config as a ``<title>`` tooltip and a ``data-key`` that links it to its table rows; the
CSS and a little vanilla JS from ``report_assets/`` are inlined, and a Content-Security-Policy
forbids every fetch, so the file opens from disk, a mail or a CI artifact with no network.

The page only consumes trials, the pure functions of ``pareto`` and the helpers of
``report``. Parts that later stages fill in render as soon as their data exists:

- ``trial.details["predicted"]`` (truthy): the figures are a cost-model prediction; the
  point is drawn hollow and dashed, and tables say "predicted".
- ``trial.details["roofline"] = {"ops": N, "bytes": N, "precision": "int8"}``: operations
  and bytes moved per inference; the trial is placed on the target's roofline at
  ``ops / bytes`` with the throughput its measured median latency gives. The roofline stage
  adds ``bound_ms``, ``bound`` ("memory" or "compute"), ``attained_fraction`` and the roofs
  it used (``peak_gops`` per precision, ``memory_bandwidth_gbs``), drawn instead of the TOML's.
- ``trial.details["sensitivity"] = {layer: accuracy_drop}``: per-layer accuracy drop (a
  fraction) when only that layer is quantized.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autotune.errors import InputError
from autotune.pareto import Pick, frontier, pareto_front, pick
from autotune.report import DEFAULT_MAX_DROP, baselines, flags, reproduce_command, speedup
from autotune.store import Run, Store, now
from autotune.target import Target, load_target
from autotune.trial import STATUSES, Trial

ASSETS = Path(__file__).parent / "report_assets"
# Inline styles and scripts only; nothing may be fetched (images are inline SVG or data:).
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")
BACKEND_COLORS = {"openvino": "#2b6cb0", "tvm": "#dd6b20"}
OTHER_COLORS = ("#6b46c1", "#2f855a", "#b83280", "#4a5568")
PRECISION_COLORS = {"fp32": "#4a5568", "fp16": "#805ad5", "bf16": "#6b46c1",
                    "int8": "#2c7a7b", "int4": "#975a16"}
MAX_ERROR_CHARS = 20_000


@dataclass
class Regressions:
    """What ``autotune.regress`` found against the previous comparable run, ready to show.

    ``baseline`` is None when the store holds no earlier run with a comparable trial.
    """

    baseline: Run | None
    compared: int = 0  # trials measured in both runs
    version_changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    rows: list[tuple[Trial, str, str]] = field(default_factory=list)  # (trial, kind, detail)


# Entry points


def write_html(store: Store, run: Run, trials: Sequence[Trial], out: Path) -> Path:
    """Write ``out/index.html`` for a run; targets and regressions are looked up here."""
    page = render_html(run, trials, targets=run_targets(run, trials),
                       regressions=find_regressions(store, run, trials))
    path = Path(out) / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def render_html(run: Run, trials: Sequence[Trial], targets: dict[str, Target] | None = None,
                regressions: Regressions | None = None) -> str:
    """The whole page as one string; it looks nothing up, so tests can feed it any trials."""
    targets = targets or {}
    base = baselines(trials)
    groups = _by_target(trials)
    sections = [_summary(run, trials, targets)]
    sections += [_target_section(run, name, group, base, targets.get(name))
                 for name, group in groups.items()]
    if regressions is not None:
        sections.append(_regressions_section(regressions))
    return _page(run, list(groups), regressions is not None, "\n".join(sections))


def run_targets(run: Run, trials: Sequence[Trial]) -> dict[str, Target]:
    """The run's targets as their TOML files say today (for roofline peaks), where loadable."""
    names = list(run.settings.targets) + sorted({t.target for t in trials})
    found: dict[str, Target] = {}
    for name in dict.fromkeys(names):
        try:
            target = load_target(name)
        except (InputError, OSError):
            continue  # a target file renamed or removed since the run: no peaks to draw
        found.setdefault(target.name, target)
    return found


def find_regressions(store: Store, run: Run, trials: Sequence[Trial]) -> Regressions | None:
    """Regressions against the previous comparable run, as ``autotune.regress`` judges them.

    The report detects nothing itself: without the regress module (or with one lacking
    ``compare_trials``) it returns None and the page leaves the section out. The previous
    comparable run is the latest earlier run sharing a ``comparable_key`` with this one.
    """
    try:
        from autotune.regress import comparable_key, compare_trials, version_changes
    except ImportError:
        return None
    keys = {comparable_key(t) for t in trials}
    for earlier in reversed(store.runs()):
        if (earlier.created_at, earlier.id) >= (run.created_at, run.id):
            continue
        if earlier.model_hash != run.model_hash:
            continue  # cheap filter: the model hash is part of every comparable key
        baseline_trials = store.trials(earlier.id)
        if not keys & {comparable_key(t) for t in baseline_trials}:
            continue
        comparison = compare_trials(baseline_trials, trials)
        rows = [(pair.candidate, finding.kind, finding.detail)
                for pair, finding in comparison.regressions]
        return Regressions(earlier, len(comparison.matched),
                           version_changes(earlier.versions, run.versions), rows)
    return Regressions(None)


# Page and summary


def _page(run: Run, target_names: list[str], has_regressions: bool, body: str) -> str:
    toc = ['<a href="#summary">Summary</a>']
    toc += [f'<a href="#{_anchor("target-" + name)}">Target {_e(name)}</a>'
            for name in target_names]
    if has_regressions:
        toc.append('<a href="#regressions">Regressions</a>')
    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>autotune run {_e(run.id)}: {_e(run.model)}</title>
<style>
{css}</style>
</head>
<body>
<header class="page"><div>
<h1>autotune run {_e(run.id)}</h1>
<p>{_e(run.model)} &middot; search space {_e(run.space)} &middot; {_e(run.status)}</p>
<nav class="toc">{" ".join(toc)}</nav>
</div></header>
<main>
{body}
<footer>Written by autotune {_e(run.versions.get("autotune", ""))} at {_e(now())}.
This file is self-contained; <code>summary.md</code> and <code>trials.csv</code> sit next to
it.</footer>
</main>
<script>
{script}</script>
</body>
</html>
"""


def _summary(run: Run, trials: Sequence[Trial], targets: dict[str, Target]) -> str:
    parts = ['<section id="summary">', "<h2>Summary</h2>"]
    if run.synthetic_data:
        parts.append('<p class="banner"><strong>No data was given for this model</strong>: it '
                     "was calibrated on seeded random inputs and scored only for fidelity "
                     "against fp32 (accuracy drop = 1 - mean cosine similarity of the "
                     "outputs). Give <code>--data</code> for a task metric.</p>")
    facts = [
        ("model", f"<code>{_e(run.model)}</code> ({_e(run.model_path)}, sha256 "
                  f"<code>{_e(run.model_hash[:16])}</code>)"),
        ("metric", _e(run.metric) + (f"; fp32 reference accuracy {run.reference_accuracy:.2%}"
                                     if run.reference_accuracy is not None else "")),
        ("targets", _targets_fact(run, trials, targets)),
        ("backends", _e(", ".join(run.settings.backends or sorted({t.backend
                                                                   for t in trials})))),
        ("search", _search_fact(run)),
        ("measurement", _measurement_fact(run)),
        ("host", _e(f"{run.host.get('cpu_model', '?')} ({run.host.get('cores', '?')} cores), "
                    f"{run.host.get('system', '?')}, host {run.host.get('hostname', '?')}, "
                    f"Python {run.host.get('python', '?')}")),
        ("runtime versions", " ".join(f'<span class="chip">{_e(k)} {_e(v)}</span>'
                                      for k, v in sorted(run.versions.items()))),
        ("run", _e(f"{run.status}; started {run.created_at}, finished "
                   f"{run.finished_at or '-'}")),
        ("trials", _status_chips(trials)),
    ]
    parts.append('<dl class="facts">' + "".join(f"<dt>{name}</dt><dd>{value}</dd>"
                                                for name, value in facts) + "</dl>")
    parts.append("</section>")
    return "\n".join(parts)


def _targets_fact(run: Run, trials: Sequence[Trial], targets: dict[str, Target]) -> str:
    names = dict.fromkeys([t.target for t in trials]
                          + [Path(n).stem for n in run.settings.targets])
    items = []
    for name in names:
        target = targets.get(name)
        text = f"<code>{_e(name)}</code>"
        if target is not None and target.description:
            text += f" ({_e(target.description)})"
        items.append(text)
    return "; ".join(items) or "-"


def _search_fact(run: Run) -> str:
    settings = run.settings
    budget = settings.budget
    space = (f"{len(settings.configs)} config(s) given with --config" if settings.configs
             else f"space <code>{_e(run.space)}</code>")
    return (f"{space}, strategy {_e(settings.strategy)}, budget "
            + (f"{budget} measured trials" if budget is not None else "the whole space"))


def _measurement_fact(run: Run) -> str:
    settings = run.settings
    return _e(f"at least {settings.min_repeats} timed runs and {settings.min_time_s} s per "
              f"trial, {settings.passes} pass(es); trial time limit {settings.timeout_s:g} s; "
              f"tuning trials {settings.tuning_trials}")


def _status_chips(trials: Sequence[Trial]) -> str:
    counts = Counter(t.status for t in trials)
    chips = [f'<span class="chip">{len(trials)} in all</span>']
    for status in STATUSES:
        if counts[status]:
            kind = "ok" if status == "ok" else "skip" if status == "unavailable" else "fail"
            chips.append(f'<span class="chip {kind}">{counts[status]} {_e(status)}</span>')
    return " ".join(chips)


# One target


def _target_section(run: Run, name: str, group: list[Trial], base: dict,
                    target: Target | None) -> str:
    choice = pick(group, DEFAULT_MAX_DROP, "latency")
    front = sorted(frontier(group), key=lambda t: t.latency_median_ms)
    parts = [f'<section id="{_anchor("target-" + name)}">',
             f"<h2>Target <code>{_e(name)}</code></h2>"]
    if target is not None and target.description:
        parts.append(f'<p class="muted">{_e(target.description)}</p>')
    parts += [
        _recommendation(run, choice, base),
        _frontier_block(run, name, group, front, choice.chosen),
        _frontier_table(front, base),
        _roofline_block(group, target),
        _sensitivity_block(group),
        _flags_block(group, base),
        _all_trials_block(group, base),
        _failed_block(group),
        "</section>",
    ]
    return "\n".join(part for part in parts if part)


def _recommendation(run: Run, choice: Pick, base: dict) -> str:
    limit = f"{DEFAULT_MAX_DROP * 100:g} pp"
    if choice.chosen is not None:
        chosen = choice.chosen
        ratio = speedup(chosen, base)
        figures = (f"{chosen.latency_median_ms:.3f} ms median"
                   + (f" ({ratio:.2f}x vs fp32)" if ratio else "")
                   + f", accuracy drop {_pp(chosen.accuracy_drop)} pp, memory "
                   f"{_mib(chosen.memory_bytes)} MiB" + _source_suffix(chosen))
        return (f'<div class="recommended"><div>Recommended (fastest at &le; {limit} accuracy '
                f'drop)</div><div class="big"><code>{_e(chosen.config.label)}</code> on '
                f"{_e(chosen.backend)}</div><div>{_e(figures)}</div>"
                f"<div>Reproduce: <code>{_e(reproduce_command(run, chosen))}</code></div></div>")
    if choice.nearest:
        misses = "; ".join(f"<code>{_e(t.config.label)}</code> on {_e(t.backend)} misses by "
                           f"{miss * 100:.2f} pp" for t, miss in choice.nearest)
        return (f'<div class="recommended missing"><strong>No config meets &le; {limit} '
                f"accuracy drop.</strong> Nearest: {misses}</div>")
    return ('<div class="recommended missing"><strong>No successful trial on this target'
            "</strong>: nothing to recommend.</div>")


def _source_suffix(trial: Trial) -> str:
    return " (predicted by the cost model, not measured)" if _predicted(trial) else ""


def _frontier_block(run: Run, name: str, group: list[Trial], front: list[Trial],
                    chosen: Trial | None) -> str:
    points = _plottable(group)
    head = "<h3>Pareto frontier: latency vs accuracy drop, memory as marker size</h3>"
    if not points:
        return head + '<p class="note">No successful trial to plot.</p>'
    svg = _frontier_svg(run, points, front, chosen)
    measured = sum(not _predicted(t) for t in points)
    predicted = len(points) - measured
    caption = (f"Each marker is one successful trial on {_e(name)} ({measured} measured, "
               f"{predicted} predicted); hover a marker for its config, it lights up in the "
               "tables below. Lower left is better. The line joins the configs that no other "
               "beats on both latency and accuracy drop; a dark outline marks every config on "
               "the Pareto frontier once memory counts too (the table below). The green ring "
               "marks the "
               f"recommended config, the shaded band exceeds the {DEFAULT_MAX_DROP * 100:g} pp "
               "default limit. Filled markers are measured; hollow dashed markers are "
               "cost-model predictions, which the cost-model stage will add.")
    return (f"{head}<figure>{svg}{_frontier_legend(points, chosen)}"
            f"<figcaption>{caption}</figcaption></figure>")


def _frontier_table(front: list[Trial], base: dict) -> str:
    if not front:
        return ""
    return ("<h3>Pareto frontier (latency, accuracy drop, memory)</h3>"
            + _trial_table(front, base))


def _all_trials_block(group: list[Trial], base: dict) -> str:
    ok = sorted((t for t in group if t.ok), key=lambda t: t.latency_median_ms or math.inf)
    if not ok:
        return ""
    return ("<h3>All successful trials</h3>"
            '<p class="note">Click a column header to sort.</p>' + _trial_table(ok, base))


def _failed_block(group: list[Trial]) -> str:
    failed = [t for t in group if not t.ok]
    if not failed:
        return ""
    rows = []
    for t in failed:
        error = t.error.strip() or "(no error text)"
        if len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + f"\n... ({len(t.error) - MAX_ERROR_CHARS} more "
            error += "characters in the store)"
        first = error.splitlines()[0][:200]
        body = (f"<pre>{_e(error)}</pre>" if "\n" not in error and len(error) <= 200
                else f"<details><summary>{_e(first)}</summary><pre>{_e(error)}</pre></details>")
        rows.append(f'<tr data-key="{_key(t)}"><td title="{_e(t.config.text)}">'
                    f"{_e(t.config.label)}</td><td>{_e(t.backend)}</td>"
                    f'<td class="status-bad">{_e(t.status)}</td><td>{body}</td></tr>')
    return (f"<h3>Failed trials ({len(failed)})</h3>"
            '<div class="table-wrap"><table class="sortable failed"><thead><tr>'
            "<th>config</th><th>backend</th><th>status</th><th>error</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _flags_block(group: list[Trial], base: dict) -> str:
    items = []
    for t in group:
        notes = flags(t, base)
        if notes:
            items.append(f'<li data-key="{_key(t)}"><code>{_e(t.config.label)}</code> on '
                         f"{_e(t.backend)}: {_e('; '.join(notes))}</li>")
    head = ("<h3>Flags: quantized but slower, int8 that fell back to float</h3>")
    if not items:
        return (head + '<p class="note">Nothing flagged: no quantized config is slower than '
                "fp32 and no requested int8 op ran in float.</p>")
    return head + f'<ul class="flag-list">{"".join(items)}</ul>'


# Tables


_COLUMNS = (("config", "text"), ("backend", "text"), ("median ms", "num"), ("p90 ms", "num"),
            ("p99 ms", "num"), ("spread", "num"), ("speedup vs fp32", "num"),
            ("accuracy", "num"), ("drop pp", "num"), ("memory MiB", "num"),
            ("size KiB", "num"), ("notes", "text"))


def _trial_table(trials: Sequence[Trial], base: dict) -> str:
    head = "".join(f'<th data-type="{kind}"' + (' class="num"' if kind == "num" else "")
                   + f">{_e(name)}</th>" for name, kind in _COLUMNS)
    rows = "".join(_trial_row(t, base) for t in trials)
    return (f'<div class="table-wrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _trial_row(t: Trial, base: dict) -> str:
    ratio = speedup(t, base)
    drop = None if t.accuracy_drop is None else t.accuracy_drop * 100
    memory = None if t.memory_bytes is None else t.memory_bytes / 2**20
    size = None if t.artifact_size_bytes is None else t.artifact_size_bytes / 1024
    badge = ' <span class="chip predicted">predicted</span>' if _predicted(t) else ""
    cells = [
        f'<td class="config" title="{_e(t.config.text)}">{_e(t.config.label)}{badge}</td>',
        f"<td>{_e(t.backend)}</td>",
        _num(t.latency_median_ms, "{:.3f}"), _num(t.latency_p90_ms, "{:.3f}"),
        _num(t.latency_p99_ms, "{:.3f}"), _num(t.latency_spread, "{:.1%}"),
        _num(ratio, "{:.2f}x"), _num(t.accuracy, "{:.2%}"), _num(drop, _pp_pattern(drop)),
        _num(memory, "{:.1f}"), _num(size, "{:.0f}"),
        f'<td class="flags">{_flag_chips(flags(t, base))}</td>',
    ]
    return f'<tr data-key="{_key(t)}">{"".join(cells)}</tr>'


def _flag_chips(notes: list[str]) -> str:
    """Short flags for a table cell; the full text is the tooltip and the Flags list."""
    chips = []
    for note in notes:
        short = re.split(r" \(|;|:", note, maxsplit=1)[0]
        chips.append(f'<span class="chip flag" title="{_e(note)}">{_e(short)}</span>')
    return " ".join(chips)


def _num(value: float | None, pattern: str) -> str:
    if value is None:
        return '<td class="num" data-v="">-</td>'
    return f'<td class="num" data-v="{value!r}">{_e(pattern.format(value))}</td>'


# Roofline and sensitivity


def _roofline_block(group: list[Trial], target: Target | None) -> str:
    head = "<h3>Roofline</h3>"
    placed = [(t, point) for t in group if t.ok for point in [_roofline_point(t)] if point]
    peaks = dict(target.peak_gops) if target is not None else {}
    bandwidth = target.memory_bandwidth_gbs if target is not None else None
    carried = [t.roofline for t, _ in placed if t.roofline.peak_gops]
    if carried:  # the roofs the trials were judged against (measured ones, where stored)
        peaks, bandwidth = dict(carried[-1].peak_gops), carried[-1].memory_bandwidth_gbs
    roof = (", ".join(f"{p} {g:g} GOPS" for p, g in peaks.items())
            + (f", memory {bandwidth:g} GB/s" if bandwidth else "")) if peaks else ""
    if not placed:
        where = (f"the target's peaks are {roof}" if roof
                 else "the target's TOML has no [roofline] peaks either")
        return (head + '<p class="note roofline-missing">No roofline data yet: no trial '
                "carries operation and byte counts (<code>Trial.roofline</code>), which "
                f"the roofline stage will add; {_e(where)}.</p>")
    svg = _roofline_svg(placed, peaks, bandwidth)
    caption = ("Each marker is a trial at its arithmetic intensity (operations per byte moved) "
               "and the throughput its median latency gives; the lines are the target's roofs "
               f"({_e(roof) or 'no peaks in the target TOML'}). Hover a marker for its config.")
    return f"{head}<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _roofline_point(trial: Trial) -> tuple[float, float] | None:
    """(operations per byte, achieved GOPS) from ``Trial.roofline`` and the median latency."""
    data = trial.roofline
    if data is None or not trial.latency_median_ms or data.ops <= 0 or data.bytes <= 0:
        return None
    return data.intensity, data.ops / (trial.latency_median_ms / 1000) / 1e9


def _sensitivity_block(group: list[Trial]) -> str:
    head = "<h3>Per-layer sensitivity</h3>"
    scans = [t for t in group if t.sensitivity is not None and t.sensitivity.drops]
    if not scans:
        return (head + '<p class="note">No per-layer sensitivity scan in this run (trials '
                "carry none in <code>Trial.sensitivity</code>).</p>")
    return head + "".join(_sensitivity_table(t) for t in scans)


def _sensitivity_table(trial: Trial) -> str:
    layers = sorted(trial.sensitivity.drops.items(),
                    key=lambda pair: -pair[1])
    top = max((abs(v) for _, v in layers), default=0.0) or 1.0
    rows = "".join(
        f"<tr><td><code>{_e(layer)}</code></td>{_num(drop * 100, '{:.3f}')}"
        f'<td style="width:50%"><div class="bar" style="width:{abs(drop) / top * 100:.1f}%">'
        "</div></td></tr>" for layer, drop in layers)
    return (f"<p>Accuracy drop when only one layer of <code>{_e(trial.config.label)}</code> on "
            f"{_e(trial.backend)} is quantized, worst first:</p>"
            '<div class="table-wrap"><table class="sortable sensitivity"><thead><tr>'
            '<th data-type="text">layer</th><th data-type="num" class="num">drop pp</th>'
            f'<th data-type="text">relative</th></tr></thead><tbody>{rows}</tbody></table></div>')


def _regressions_section(found: Regressions) -> str:
    head = '<section id="regressions"><h2>Regressions vs the previous comparable run</h2>'
    if found.baseline is None:
        return (head + '<p class="note">No earlier run in this store has a comparable trial '
                "(same model, config, backend and target).</p></section>")
    changes = ", ".join(f"{_e(name)} {_e(old or '-')} &rarr; {_e(new or '-')}"
                        for name, (old, new) in found.version_changes.items())
    intro = (f"<p>Baseline run <code>{_e(found.baseline.id)}</code> (started "
             f"{_e(found.baseline.created_at)}); versions: {changes or 'identical'}. "
             f"{len(found.rows)} regression(s) in {found.compared} trials measured in both runs"
             " (judged by <code>autotune compare</code>'s default thresholds).</p>")
    if not found.rows:
        return head + intro + "</section>"
    rows = "".join(f'<tr data-key="{_key(t)}"><td class="config">{_e(t.config.label)}</td>'
                   f"<td>{_e(t.backend)}</td><td>{_e(t.target)}</td>"
                   f'<td class="status-bad">{_e(kind)}</td><td>{_e(detail)}</td></tr>'
                   for t, kind, detail in found.rows)
    return (head + intro + '<div class="table-wrap"><table class="sortable regressions">'
            "<thead><tr><th>config</th><th>backend</th><th>target</th><th>regression</th>"
            f"<th>detail</th></tr></thead><tbody>{rows}</tbody></table></div></section>")


# SVG plots


WIDTH, HEIGHT = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 18, 54
FONT_PX = 12


@dataclass(frozen=True)
class Scale:
    """Maps data values in [low, high] to pixels in [start, end], linearly or by log10."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        low, high, value = ((math.log10(self.low), math.log10(self.high), math.log10(value))
                            if self.log else (self.low, self.high, value))
        return self.start + (value - low) / (high - low) * (self.end - self.start)

    def ticks(self) -> list[float]:
        return _log_ticks(self.low, self.high) if self.log else _linear_ticks(self.low,
                                                                              self.high)


def _linear_ticks(low: float, high: float, count: int = 6) -> list[float]:
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step)
    return [round(i * step, 12) for i in range(first, math.floor(high / step) + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    # Decades when the range is wide, then 1-2-5, then every digit; linear steps for
    # ranges narrower than a factor of ~2, where no "round" decade value falls inside.
    for mantissas in ((1,), (1, 2, 5), tuple(range(1, 10))):
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1,
                                              math.ceil(math.log10(high)) + 1)
                 for m in mantissas if low <= m * 10.0 ** e <= high]
        if len(ticks) >= 4:
            return ticks
    return [t for t in _linear_ticks(low, high, 5) if t > 0]


def _linear_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    span = high - low or max(abs(high) * 0.2, 0.05)
    return low - span * 0.08, high + span * 0.08


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high / low < 1.5:  # near-equal values: a readable window around them
        middle = math.sqrt(low * high)
        return middle / 1.35, middle * 1.35
    return low / 1.15, high * 1.15


def _tick_label(value: float) -> str:
    return f"{value:.0f}" if 1000 <= abs(value) < 1e7 else f"{value:.3g}"


def _axes(x: Scale, y: Scale, x_title: str, y_title: str) -> list[str]:
    """Grid lines, tick labels and axis titles."""
    parts = []
    for tick in x.ticks():
        px = x(tick)
        parts.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{HEIGHT - BOTTOM}" '
                     'stroke="#e3e6ec"/>')
        parts.append(f'<text x="{px:.1f}" y="{HEIGHT - BOTTOM + 17}" text-anchor="middle" '
                     f'font-size="{FONT_PX}" fill="#4a5263">{_tick_label(tick)}</text>')
    for tick in y.ticks():
        py = y(tick)
        parts.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{WIDTH - RIGHT}" y2="{py:.1f}" '
                     'stroke="#e3e6ec"/>')
        parts.append(f'<text x="{LEFT - 7}" y="{py + 4:.1f}" text-anchor="end" '
                     f'font-size="{FONT_PX}" fill="#4a5263">{_tick_label(tick)}</text>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
                 f'height="{HEIGHT - TOP - BOTTOM}" fill="none" stroke="#9aa3b2"/>')
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 12}" '
                 f'text-anchor="middle" font-size="13" fill="#1d2330">{_e(x_title)}</text>')
    middle = (TOP + HEIGHT - BOTTOM) / 2
    parts.append(f'<text x="18" y="{middle}" text-anchor="middle" font-size="13" '
                 f'fill="#1d2330" transform="rotate(-90 18 {middle})">{_e(y_title)}</text>')
    return parts


def _svg(parts: Sequence[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'role="img" aria-label="{_e(label)}">{"".join(parts)}</svg>')


def _frontier_svg(run: Run, points: list[Trial], front: list[Trial],
                  chosen: Trial | None) -> str:
    x = Scale(*_linear_range([t.accuracy_drop * 100 for t in points]), LEFT, WIDTH - RIGHT)
    y = Scale(*_log_range([t.latency_median_ms for t in points]), HEIGHT - BOTTOM, TOP,
              log=True)
    x_title = ("1 - cosine similarity vs fp32 (x100)" if run.synthetic_data
               else "accuracy drop vs fp32 (percentage points)")
    parts = [_limit_band(x)] + _axes(x, y, x_title, "median latency (ms, log scale)")
    line = sorted(_latency_accuracy_front(points),
                  key=lambda t: (t.accuracy_drop, t.latency_median_ms))
    if len(line) > 1:
        coords = " ".join(f"{x(t.accuracy_drop * 100):.1f},{y(t.latency_median_ms):.1f}"
                          for t in line)
        parts.append(f'<polyline class="frontier" points="{coords}" fill="none" '
                     'stroke="#c53030" stroke-width="2" stroke-linejoin="round"/>')
    radius = _radius_for(points)
    on_front = {id(t) for t in front}
    placed = {id(t): (x(t.accuracy_drop * 100), y(t.latency_median_ms), radius(t))
              for t in points}
    for t in sorted(points, key=lambda t: -radius(t)):  # small markers stay on top
        px, py, r = placed[id(t)]
        parts.append(_marker(t, px, py, r, id(t) in on_front))
    if chosen is not None and id(chosen) in placed:
        px, py, r = placed[id(chosen)]
        parts.append(f'<circle class="recommended-ring" cx="{px:.1f}" cy="{py:.1f}" '
                     f'r="{r + 5:.1f}" fill="none" stroke="#1e7a46" stroke-width="2.5"/>')
    parts += _point_labels(points, line, chosen, placed)
    return _svg(parts, f"Pareto frontier of {run.model}")


def _latency_accuracy_front(points: list[Trial]) -> list[Trial]:
    """The trials no other beats on both plotted axes: the line drawn through the plot.

    The full frontier also counts memory, so it holds points that look dominated in this
    projection; those get a dark outline instead of joining the line.
    """
    objectives = [(t.latency_median_ms, max(t.accuracy_drop, 0.0)) for t in points]
    return [points[index] for index in pareto_front(objectives)]


def _limit_band(x: Scale) -> str:
    limit = DEFAULT_MAX_DROP * 100
    if limit >= x.high:
        return ""
    start = max(x(limit), LEFT)
    return (f'<rect class="limit-band" x="{start:.1f}" y="{TOP}" '
            f'width="{WIDTH - RIGHT - start:.1f}" height="{HEIGHT - TOP - BOTTOM}" '
            'fill="#fbe9e7"/>')


def _radius_for(points: Sequence[Trial]):
    """Marker radius by memory: area proportional to the trial's memory, 4 to 14 px."""
    largest = max((t.memory_bytes or 0) for t in points) or 1

    def radius(trial: Trial) -> float:
        return 4 + 10 * math.sqrt(max(trial.memory_bytes or 0, 0) / largest)

    return radius


def _marker(t: Trial, px: float, py: float, r: float, on_front: bool) -> str:
    color = _backend_color(t.backend)
    outline = "#1a202c" if on_front else "#ffffff"
    if _predicted(t):
        style = (f'fill="#ffffff" fill-opacity="0.6" stroke="{color}" stroke-width="2" '
                 'stroke-dasharray="3 2"')
    else:
        style = f'fill="{color}" fill-opacity="0.8" stroke="{outline}" stroke-width="1.2"'
    kind = "predicted" if _predicted(t) else "measured"
    return (f'<circle class="point {kind}" data-key="{_key(t)}" cx="{px:.1f}" cy="{py:.1f}" '
            f'r="{r:.1f}" {style}><title>{_e(_point_title(t))}</title></circle>')


def _point_title(t: Trial) -> str:
    lines = [f"{t.config.label} on {t.backend}", t.config.text,
             f"median {t.latency_median_ms:.3f} ms (p90 {t.latency_p90_ms or 0:.3f} ms)",
             f"accuracy drop {_pp(t.accuracy_drop)} pp",
             f"memory {_mib(t.memory_bytes)} MiB",
             "predicted by the cost model" if _predicted(t) else "measured"]
    return "\n".join(lines)


def _point_labels(points: list[Trial], front: list[Trial], chosen: Trial | None,
                  placed: dict) -> list[str]:
    """Labels for the points on the line, placed where they hit no marker and no label."""
    several_backends = len({t.backend for t in points}) > 1
    order = ([chosen] if chosen is not None else []) + [t for t in front if t is not chosen]
    markers = [(px - r, py - r, px + r, py + r) for px, py, r in placed.values()]
    taken: list[tuple[float, float, float, float]] = []
    parts = []
    for t in order:
        if id(t) not in placed:
            continue
        text = t.config.label + (f" ({t.backend})" if several_backends else "")
        if t is chosen:
            text += " - recommended"
        spot = _free_spot(placed[id(t)], text, taken, markers)
        if spot is None:
            continue  # the tooltip and the tables still name it
        tx, ty, anchor, box = spot
        taken.append(box)
        weight = ' font-weight="600"' if t is chosen else ""
        parts.append(f'<text class="point-label" x="{tx:.1f}" y="{ty:.1f}" '
                     f'text-anchor="{anchor}" font-size="{FONT_PX}"{weight} fill="#1d2330" '
                     f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{_e(text)}</text>')
    return parts


def _free_spot(point: tuple[float, float, float], text: str, taken: list, markers: list):
    px, py, r = point
    width, height = len(text) * FONT_PX * 0.64, FONT_PX * 1.1  # DejaVu Sans is wide
    gap = r + 5
    slant = gap * 0.7
    # Right, left, above, below, then the four diagonals: the first free one wins.
    candidates = [(px + gap, py + 4, "start"), (px - gap, py + 4, "end"),
                  (px, py - gap - 2, "middle"), (px, py + gap + height - 2, "middle"),
                  (px + slant, py - slant, "start"), (px - slant, py - slant, "end"),
                  (px + slant, py + slant + height - 4, "start"),
                  (px - slant, py + slant + height - 4, "end")]
    boxes = []
    for tx, ty, anchor in candidates:
        left = {"start": tx, "end": tx - width, "middle": tx - width / 2}[anchor]
        box = (left, ty - height + 2, left + width, ty + 3)
        if box[0] < LEFT + 2 or box[2] > WIDTH - RIGHT - 2 or box[1] < TOP + 2 \
                or box[3] > HEIGHT - BOTTOM - 2:
            continue
        boxes.append((tx, ty, anchor, box))
    for avoid in (taken + markers, taken):  # best: clear of everything; else clear of labels
        for tx, ty, anchor, box in boxes:
            others = [m for m in avoid if not _contains(m, (px, py))]
            if not any(_overlaps(box, other) for other in others):
                return tx, ty, anchor, box
    return None


def _contains(box: tuple, point: tuple[float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _frontier_legend(points: list[Trial], chosen: Trial | None) -> str:
    items = [f'<span>{_swatch(_backend_color(b))} {_e(b)}</span>'
             for b in sorted({t.backend for t in points})]
    items.append('<span><svg width="26" height="12"><line x1="1" y1="6" x2="25" y2="6" '
                 'stroke="#c53030" stroke-width="2"/></svg> best latency / accuracy trade-off'
                 '</span><span><svg width="16" height="16"><circle cx="8" cy="8" r="6" '
                 'fill="#718096" stroke="#1a202c" stroke-width="1.5"/></svg> on the Pareto '
                 "frontier (with memory)</span>")
    if chosen is not None:
        items.append('<span><svg width="16" height="16"><circle cx="8" cy="8" r="6" '
                     'fill="none" stroke="#1e7a46" stroke-width="2.5"/></svg> recommended'
                     "</span>")
    items.append('<span><svg width="16" height="16"><circle cx="8" cy="8" r="6" fill="#718096"'
                 '/></svg> measured &middot; <svg width="16" height="16"><circle cx="8" cy="8" '
                 'r="6" fill="#fff" stroke="#718096" stroke-width="2" stroke-dasharray="3 2"/>'
                 "</svg> predicted</span>")
    memory = [t.memory_bytes for t in points if t.memory_bytes is not None]
    if memory:
        items.append(f"<span>marker area &prop; memory: {_mib(min(memory))} to "
                     f"{_mib(max(memory))} MiB</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _swatch(color: str) -> str:
    return f'<svg width="14" height="14"><circle cx="7" cy="7" r="6" fill="{color}"/></svg>'


def _roofline_svg(placed: list[tuple[Trial, tuple[float, float]]], peaks: dict[str, float],
                  bandwidth: float | None) -> str:
    intensities = [p[0] for _, p in placed]
    throughputs = [p[1] for _, p in placed]
    if bandwidth:
        intensities += [peak / bandwidth for peak in peaks.values()]
    x = Scale(*_log_range(intensities), LEFT, WIDTH - RIGHT - 90, log=True)
    x = Scale(x.low, x.high * 4, LEFT, WIDTH - RIGHT, log=True)  # room for roof labels
    y = Scale(*_log_range(throughputs + list(peaks.values())), HEIGHT - BOTTOM, TOP, log=True)
    y = Scale(y.low, y.high * 1.6, HEIGHT - BOTTOM, TOP, log=True)  # room above the top roof
    parts = _axes(x, y, "arithmetic intensity (operations per byte, log scale)",
                  "throughput (GOPS, log scale)")
    for precision, peak in sorted(peaks.items(), key=lambda item: item[1]):
        parts += _roof(x, y, precision, peak, bandwidth)
    for t, (intensity, gops) in placed:
        title = (f"{t.config.label} on {t.backend}\n{t.config.text}\n"
                 f"{intensity:.3g} ops/byte, {gops:.3g} GOPS at {t.latency_median_ms:.3f} ms"
                 + _roof_share(t, intensity, gops, peaks, bandwidth))
        parts.append(f'<circle class="point" data-key="{_key(t)}" cx="{x(intensity):.1f}" '
                     f'cy="{y(gops):.1f}" r="6" fill="{_backend_color(t.backend)}" '
                     f'fill-opacity="0.85" stroke="#fff"><title>{_e(title)}</title></circle>')
    return _svg(parts, "roofline")


def _roof(x: Scale, y: Scale, precision: str, peak: float, bandwidth: float | None) -> list[str]:
    color = PRECISION_COLORS.get(precision, "#4a5568")
    if bandwidth:
        start = max(x.low, y.low / bandwidth)
        ridge = min(max(peak / bandwidth, start), x.high)
        coords = [(start, min(bandwidth * start, peak)), (ridge, min(bandwidth * ridge, peak)),
                  (x.high, peak)]
    else:
        coords = [(x.low, peak), (x.high, peak)]
    points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in coords)
    return [f'<polyline class="roof" points="{points}" fill="none" stroke="{color}" '
            'stroke-width="2"/>',
            f'<text x="{WIDTH - RIGHT - 6}" y="{y(peak) - 6:.1f}" text-anchor="end" '
            f'font-size="{FONT_PX}" fill="{color}">{_e(precision)} {peak:g} GOPS</text>']


def _roof_share(t: Trial, intensity: float, gops: float, peaks: dict[str, float],
                bandwidth: float | None) -> str:
    precision = t.roofline.precision if t.roofline is not None else t.config.weight_dtype
    peak = peaks.get(precision)
    if peak is None:
        return ""
    roof = min(peak, bandwidth * intensity) if bandwidth else peak
    bound = "memory" if bandwidth and bandwidth * intensity < peak else "compute"
    return f"\n{gops / roof:.0%} of the {precision} roof ({bound}-bound)"


# Small helpers


def _by_target(trials: Sequence[Trial]) -> dict[str, list[Trial]]:
    groups: dict[str, list[Trial]] = defaultdict(list)
    for trial in trials:
        groups[trial.target].append(trial)
    return dict(groups)


def _plottable(group: Sequence[Trial]) -> list[Trial]:
    return [t for t in group if t.ok and t.latency_median_ms and t.accuracy_drop is not None]


def _predicted(trial: Trial) -> bool:
    return bool(trial.details.get("predicted"))


def _backend_color(backend: str) -> str:
    if backend in BACKEND_COLORS:
        return BACKEND_COLORS[backend]
    return OTHER_COLORS[sum(map(ord, backend)) % len(OTHER_COLORS)]


def _key(trial: Trial) -> str:
    """An id shared by a trial's plot markers and table rows (safe in a CSS selector)."""
    return _anchor(f"t-{trial.target}-{trial.config.id}-{trial.backend}")


def _anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def _pp_pattern(points: float | None) -> str:
    # Fidelity-only runs drop by thousandths of a point; two decimals would print 0.00.
    return "{:.2f}" if points is None or points == 0 or abs(points) >= 0.1 else "{:.3f}"


def _pp(fraction: float) -> str:
    """An accuracy drop (a fraction) in percentage points."""
    return _pp_pattern(fraction * 100).format(fraction * 100)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)

"""The page's two charts, drawn from a target's facts: the frontier and the roofline."""

from __future__ import annotations

import math
from dataclasses import dataclass

from autotune.report.facts import RooflineFacts, RunFacts, TargetFacts
from autotune.report.svg import (
    BOTTOM,
    FONT_PX,
    HEIGHT,
    LEFT,
    LEVEL_COLORS,
    PRECISION_COLORS,
    RIGHT,
    TOP,
    WIDTH,
    Scale,
    axes,
    color_of,
    dom_key,
    e,
    labels,
    linear_range,
    log_range,
    svg,
    swatch,
    trial_key,
)
from autotune.report.text import mib, pp


@dataclass(frozen=True)
class _Point:
    """One marker of the frontier plot: a measured trial or a cost-model prediction."""

    key: str
    label: str
    backend: str
    drop_pp: float
    latency_ms: float
    memory_bytes: float
    title: str
    predicted: bool = False
    on_front: bool = False


def _points(target: TargetFacts) -> list[_Point]:
    points = []
    for f in target.plotted:
        t = f.trial
        title = "\n".join([f"{t.config.label} on {t.backend}", t.config.text,
                           f"latency {t.latency_ms:.3f} ms (median {t.latency_median_ms or 0:.3f}"
                           f" ms, p90 {t.latency_p90_ms or 0:.3f} ms, all passes)",
                           f"accuracy drop {pp(t.accuracy_drop)} pp",
                           f"memory {mib(t.memory_bytes)} MiB", "measured"])
        points.append(_Point(trial_key(t), t.config.label, t.backend, t.accuracy_drop * 100,
                             t.latency_ms, t.memory_bytes or 0, title, on_front=f.on_front))
    for p in target.predicted:
        title = "\n".join([f"{p.config.label} on {p.backend}", p.config.text,
                           f"latency {p.latency_ms:.3f} ms",
                           f"accuracy drop {pp(p.accuracy_drop)} pp",
                           f"memory {mib(p.memory_bytes)} MiB",
                           f"predicted by the cost model ({p.model_version}), not measured"])
        points.append(_Point(dom_key(p.target, p.config.id, p.backend), p.config.label,
                             p.backend, p.accuracy_drop * 100, p.latency_ms,
                             p.memory_bytes or 0, title, predicted=True))
    return points


PREDICTED_FRONT_COLOR = "#6b46c1"


def frontier_svg(facts: RunFacts, target: TargetFacts) -> str:
    points = _points(target)
    ahead = target.predicted_front  # predicted before the run measured: drawn next to it
    x = Scale(*linear_range([p.drop_pp for p in points]
                            + [max(p.accuracy_drop, 0.0) * 100 for p in ahead]),
              LEFT, WIDTH - RIGHT)
    y = Scale(*log_range([p.latency_ms for p in points] + [p.latency_ms for p in ahead]),
              HEIGHT - BOTTOM, TOP, log=True)
    x_title = ("1 - cosine similarity vs fp32 (x100)" if facts.run.synthetic_data
               else "accuracy drop vs fp32 (percentage points)")
    parts = [_limit_band(x, facts.max_accuracy_drop * 100)]
    parts += axes(x, y, x_title, "latency (ms, fastest pass median, log scale)")
    line = [f.trial for f in target.line]
    if len(line) > 1:
        coords = " ".join(f"{x(t.accuracy_drop * 100):.1f},{y(t.latency_ms):.1f}"
                          for t in line)
        parts.append(f'<polyline class="frontier" points="{coords}" fill="none" '
                     'stroke="#c53030" stroke-width="2" stroke-linejoin="round"/>')
    for backend in dict.fromkeys(p.backend for p in ahead):  # the front is per backend
        coords = " ".join(f"{x(max(p.accuracy_drop, 0.0) * 100):.1f},{y(p.latency_ms):.1f}"
                          for p in ahead if p.backend == backend)
        parts.append(f'<polyline class="predicted-front" points="{coords}" fill="none" '
                     f'stroke="{PREDICTED_FRONT_COLOR}" stroke-width="2" '
                     'stroke-dasharray="6 4" stroke-linejoin="round"/>')
    largest = max(p.memory_bytes for p in points) or 1
    placed = {p.key: (x(p.drop_pp), y(p.latency_ms),
                      4 + 10 * math.sqrt(max(p.memory_bytes, 0) / largest))  # area ~ memory
              for p in points}
    for p in sorted(points, key=lambda p: -placed[p.key][2]):  # small markers stay on top
        parts.append(_marker(p, placed[p.key], color_of(p.backend, facts.backends)))
    chosen = target.recommendation.chosen
    if chosen is not None:
        px, py, r = placed[trial_key(chosen.trial)]
        parts.append(f'<circle class="recommended-ring" cx="{px:.1f}" cy="{py:.1f}" '
                     f'r="{r + 5:.1f}" fill="none" stroke="#1e7a46" stroke-width="2.5"/>')
    several = len({p.backend for p in points}) > 1
    order = ([chosen.trial] if chosen is not None else []) + [
        t for t in line if chosen is None or t is not chosen.trial]
    wanted = [(placed[trial_key(t)],
               t.config.label + (f" ({t.backend})" if several else "")
               + (" - recommended" if chosen is not None and t is chosen.trial else ""),
               chosen is not None and t is chosen.trial) for t in order]
    parts += labels(wanted, list(placed.values()))
    return svg(parts, f"Pareto frontier of {facts.run.model}")


def _limit_band(x: Scale, limit_pp: float) -> str:
    if limit_pp >= x.high:
        return ""
    start = max(x(limit_pp), LEFT)
    return (f'<rect class="limit-band" x="{start:.1f}" y="{TOP}" '
            f'width="{WIDTH - RIGHT - start:.1f}" height="{HEIGHT - TOP - BOTTOM}" '
            'fill="#fbe9e7"/>')


def _marker(p: _Point, where: tuple[float, float, float], color: str) -> str:
    px, py, r = where
    if p.predicted:
        style = (f'fill="#ffffff" fill-opacity="0.6" stroke="{color}" stroke-width="2" '
                 'stroke-dasharray="3 2"')
    else:
        outline = "#1a202c" if p.on_front else "#ffffff"
        style = f'fill="{color}" fill-opacity="0.8" stroke="{outline}" stroke-width="1.2"'
    kind = "predicted" if p.predicted else "measured"
    return (f'<circle class="point {kind}" data-key="{p.key}" cx="{px:.1f}" cy="{py:.1f}" '
            f'r="{r:.1f}" {style}><title>{e(p.title)}</title></circle>')


def frontier_legend(facts: RunFacts, target: TargetFacts) -> str:
    points = _points(target)
    items = [f"<span>{swatch(color_of(b, facts.backends))} {e(b)}</span>"
             for b in sorted({p.backend for p in points})]
    items.append('<span><svg width="26" height="12"><line x1="1" y1="6" x2="25" y2="6" '
                 'stroke="#c53030" stroke-width="2"/></svg> best latency / accuracy trade-off'
                 '</span><span><svg width="16" height="16"><circle cx="8" cy="8" r="6" '
                 'fill="#718096" stroke="#1a202c" stroke-width="1.5"/></svg> on the Pareto '
                 "frontier (with memory)</span>")
    if target.predicted_front:
        items.append(f'<span><svg width="26" height="12"><line x1="1" y1="6" x2="25" y2="6" '
                     f'stroke="{PREDICTED_FRONT_COLOR}" stroke-width="2" '
                     'stroke-dasharray="6 4"/></svg> front predicted before measuring</span>')
    if target.recommendation.chosen is not None:
        items.append('<span><svg width="16" height="16"><circle cx="8" cy="8" r="6" '
                     'fill="none" stroke="#1e7a46" stroke-width="2.5"/></svg> recommended'
                     "</span>")
    items.append('<span><svg width="16" height="16"><circle cx="8" cy="8" r="6" fill="#718096"'
                 '/></svg> measured &middot; <svg width="16" height="16"><circle cx="8" cy="8" '
                 'r="6" fill="#fff" stroke="#718096" stroke-width="2" stroke-dasharray="3 2"/>'
                 "</svg> predicted</span>")
    memory = [p.memory_bytes for p in points if p.memory_bytes]
    if memory:
        items.append(f"<span>marker area &prop; memory: {mib(min(memory))} to "
                     f"{mib(max(memory))} MiB</span>")
    return f'<div class="legend">{"".join(items)}</div>'


def _level_roofs(roofline: RooflineFacts) -> dict[str, float]:
    """The memory roofs to draw: each level's, or DRAM's alone for placements without."""
    if roofline.level_bandwidth_gbs:
        return dict(roofline.level_bandwidth_gbs)
    return {"DRAM": roofline.memory_bandwidth_gbs} if roofline.memory_bandwidth_gbs else {}


def roofline_svg(facts: RunFacts, roofline: RooflineFacts) -> str:
    """The hierarchical roofline: a diagonal roof per memory level, a flat roof per
    precision, each trial coloured by the level that bounds its memory time and outlined in
    its backend's colour."""
    peaks, levels = roofline.peak_gops, _level_roofs(roofline)
    intensities = [p.intensity for p in roofline.points]
    throughputs = [p.gops for p in roofline.points]
    intensities += [peak / gbs for peak in peaks.values() for gbs in levels.values()]
    x = Scale(*log_range(intensities), LEFT, WIDTH - RIGHT - 90, log=True)
    x = Scale(x.low, x.high * 4, LEFT, WIDTH - RIGHT, log=True)  # room for roof labels
    y = Scale(*log_range(throughputs + list(peaks.values())), HEIGHT - BOTTOM, TOP, log=True)
    y = Scale(y.low, y.high * 1.6, HEIGHT - BOTTOM, TOP, log=True)  # room above the top roof
    parts = axes(x, y, "arithmetic intensity (operations per byte, log scale)",
                 "throughput (GOPS, log scale)")
    fastest = max(levels.values(), default=None)
    for precision, peak in sorted(peaks.items(), key=lambda item: item[1]):
        parts += _roof(x, y, precision, peak, fastest)
    top = max(peaks.values(), default=None)
    for name, gbs in levels.items():
        parts += _level_roof(x, y, name, gbs, top)
    for point in roofline.points:
        t = point.trial.trial
        title = (f"{t.config.label} on {t.backend}\n{t.config.text}\n"
                 f"{point.intensity:.3g} ops/byte, {point.gops:.3g} GOPS at "
                 f"{t.latency_ms:.3f} ms")
        if point.memory_level:
            title += f"\nmemory level {point.memory_level}"
        if point.beaten:
            title += f"\n{point.beaten}"
        elif point.roof_share is not None and point.roof_share <= 1:
            title += (f"\n{point.roof_share:.0%} of the {point.precision} roof "
                      f"({point.roof_bound}-bound)")
        fill = LEVEL_COLORS.get(point.memory_level, "#718096")
        parts.append(f'<circle class="point" data-level="{e(point.memory_level)}" '
                     f'data-key="{trial_key(t)}" cx="{x(point.intensity):.1f}" '
                     f'cy="{y(point.gops):.1f}" r="6" fill="{fill}" fill-opacity="0.85" '
                     f'stroke="{color_of(t.backend, facts.backends)}" stroke-width="2">'
                     f"<title>{e(title)}</title></circle>")
    return svg(parts, "roofline")


def roofline_legend(facts: RunFacts, roofline: RooflineFacts) -> str:
    """Marker fill = memory level (matching its roof), outline = backend."""
    items = [f"<span>{swatch(LEVEL_COLORS.get(name, '#718096'))} {e(name)} "
             f"{gbs:.4g} GB/s{' (estimate)' if name in roofline.estimated_levels else ''}"
             "</span>" for name, gbs in _level_roofs(roofline).items()]
    backends = sorted({p.trial.trial.backend for p in roofline.points})
    items += [f'<span><svg width="16" height="16"><circle cx="8" cy="8" r="6" fill="#fff" '
              f'stroke="{color_of(b, facts.backends)}" stroke-width="2"/></svg> {e(b)}</span>'
              for b in backends]
    return f'<div class="legend">{"".join(items)}</div>'


def _roof(x: Scale, y: Scale, precision: str, peak: float, bandwidth: float | None) -> list[str]:
    """A precision's flat roof, from where the fastest level's diagonal meets it."""
    color = PRECISION_COLORS.get(precision, "#4a5568")
    start = min(max(peak / bandwidth, x.low), x.high) if bandwidth else x.low
    points = f"{x(start):.1f},{y(peak):.1f} {x(x.high):.1f},{y(peak):.1f}"
    return [f'<polyline class="roof" points="{points}" fill="none" stroke="{color}" '
            'stroke-width="2"/>',
            f'<text x="{WIDTH - RIGHT - 6}" y="{y(peak) - 6:.1f}" text-anchor="end" '
            f'font-size="{FONT_PX}" fill="{color}">{e(precision)} {peak:g} GOPS</text>']


def _level_roof(x: Scale, y: Scale, name: str, gbs: float, top: float | None) -> list[str]:
    """A memory level's diagonal roof (bandwidth x intensity), up to the highest flat roof."""
    color = LEVEL_COLORS.get(name, "#4a5568")
    start = max(x.low, y.low / gbs)
    end = min(x.high, (top or y.high) / gbs)
    if end <= start:
        return []
    points = f"{x(start):.1f},{y(gbs * start):.1f} {x(end):.1f},{y(gbs * end):.1f}"
    return [f'<polyline class="level-roof" points="{points}" fill="none" stroke="{color}" '
            'stroke-width="1.5" stroke-dasharray="5 3"/>',
            f'<text x="{x(start) + 4:.1f}" y="{y(gbs * start) - 5:.1f}" font-size="{FONT_PX}" '
            f'fill="{color}">{e(name)} {gbs:.4g} GB/s</text>']

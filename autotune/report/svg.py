"""Inline SVG chart parts: scales and ticks, axes, the backend palette, label placement.

Written by hand rather than by matplotlib so that every marker can carry its config as a
``<title>`` tooltip and a ``data-key`` linking it to its table rows.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from autotune.trial import Trial

WIDTH, HEIGHT = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 18, 54
FONT_PX = 12


@dataclass(frozen=True)
class Frame:
    """A chart's size and the margins around its plotting area, in SVG pixels."""

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float


FULL = Frame(WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM)  # the report's charts
# Backends are coloured by their position among the run's sorted backend names: stable for
# a given set of backends, and no backend is named here.
PALETTE = ("#2b6cb0", "#dd6b20", "#6b46c1", "#2f855a", "#b83280", "#4a5568")
# Memory levels, hottest to coldest: a point's fill and its level's roof share the colour.
LEVEL_COLORS = {"L1": "#2f855a", "L2": "#2b6cb0", "L3": "#b7791f", "DRAM": "#c53030"}
PRECISION_COLORS = {"fp32": "#4a5568", "fp16": "#805ad5", "bf16": "#6b46c1",
                    "int8": "#2c7a7b", "int4": "#975a16"}


def color_of(backend: str, backends: Sequence[str]) -> str:
    """The colour of ``backend`` among ``backends`` (sorted names)."""
    names = sorted(backends)
    index = names.index(backend) if backend in names else len(names)
    return PALETTE[index % len(PALETTE)]


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def dom_key(target: str, config_id: str, backend: str) -> str:
    """An id shared by a trial's plot markers and table rows (safe in a CSS selector)."""
    return anchor(f"t-{target}-{config_id}-{backend}")


def trial_key(trial: Trial) -> str:
    return dom_key(trial.target, trial.config.id, trial.backend)


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
        return log_ticks(self.low, self.high) if self.log else linear_ticks(self.low, self.high)


def linear_ticks(low: float, high: float, count: int = 6) -> list[float]:
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step)
    return [round(i * step, 12) for i in range(first, math.floor(high / step) + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    # Decades when the range is wide, then 1-2-5, then every digit; linear steps for
    # ranges narrower than a factor of ~2, where no "round" decade value falls inside.
    for mantissas in ((1,), (1, 2, 5), tuple(range(1, 10))):
        ticks = [m * 10.0 ** exponent
                 for exponent in range(math.floor(math.log10(low)) - 1,
                                       math.ceil(math.log10(high)) + 1)
                 for m in mantissas if low <= m * 10.0 ** exponent <= high]
        if len(ticks) >= 4:
            return ticks
    return [t for t in linear_ticks(low, high, 5) if t > 0]


def linear_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    span = high - low or max(abs(high) * 0.2, 0.05)
    return low - span * 0.08, high + span * 0.08


def log_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high / low < 1.5:  # near-equal values: a readable window around them
        middle = math.sqrt(low * high)
        return middle / 1.35, middle * 1.35
    return low / 1.15, high * 1.15


def tick_label(value: float) -> str:
    return f"{value:.0f}" if 1000 <= abs(value) < 1e7 else f"{value:.3g}"


def axes(x: Scale, y: Scale, x_title: str, y_title: str, frame: Frame = FULL,
         x_ticks: Sequence[tuple[float, str]] | None = None) -> list[str]:
    """Grid lines, tick labels and axis titles; ``x_ticks`` (value, label) replace the
    x scale's own ticks (a run-order axis labels its runs, not fractions)."""
    f = frame
    parts = []
    for tick, text in x_ticks if x_ticks is not None else [(t, tick_label(t))
                                                           for t in x.ticks()]:
        px = x(tick)
        parts.append(f'<line x1="{px:.1f}" y1="{f.top}" x2="{px:.1f}" '
                     f'y2="{f.height - f.bottom}" stroke="#e3e6ec"/>')
        parts.append(f'<text x="{px:.1f}" y="{f.height - f.bottom + 17}" text-anchor="middle" '
                     f'font-size="{FONT_PX}" fill="#4a5263">{e(text)}</text>')
    for tick in y.ticks():
        py = y(tick)
        parts.append(f'<line x1="{f.left}" y1="{py:.1f}" x2="{f.width - f.right}" '
                     f'y2="{py:.1f}" stroke="#e3e6ec"/>')
        parts.append(f'<text x="{f.left - 7}" y="{py + 4:.1f}" text-anchor="end" '
                     f'font-size="{FONT_PX}" fill="#4a5263">{tick_label(tick)}</text>')
    parts.append(f'<rect x="{f.left}" y="{f.top}" width="{f.width - f.left - f.right}" '
                 f'height="{f.height - f.top - f.bottom}" fill="none" stroke="#9aa3b2"/>')
    parts.append(f'<text x="{(f.left + f.width - f.right) / 2}" y="{f.height - 12}" '
                 f'text-anchor="middle" font-size="13" fill="#1d2330">{e(x_title)}</text>')
    middle = (f.top + f.height - f.bottom) / 2
    parts.append(f'<text x="18" y="{middle}" text-anchor="middle" font-size="13" '
                 f'fill="#1d2330" transform="rotate(-90 18 {middle})">{e(y_title)}</text>')
    return parts


def svg(parts: Sequence[str], label: str, frame: Frame = FULL) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {frame.width} '
            f'{frame.height}" '
            f'role="img" aria-label="{e(label)}">{"".join(parts)}</svg>')


def swatch(color: str) -> str:
    return f'<svg width="14" height="14"><circle cx="7" cy="7" r="6" fill="{color}"/></svg>'


Box = tuple[float, float, float, float]


def labels(wanted: Sequence[tuple[tuple[float, float, float], str, bool]],
           markers: Sequence[tuple[float, float, float]]) -> list[str]:
    """``<text>`` labels for markers ``(x, y, radius)``, each placed where it hits no marker
    and no earlier label; ``wanted`` is ``(marker, text, bold)`` in order of importance. A
    label with no free spot is left out (the tooltip and the tables still name it)."""
    boxes = [(px - r, py - r, px + r, py + r) for px, py, r in markers]
    taken: list[Box] = []
    parts = []
    for point, text, bold in wanted:
        spot = _free_spot(point, text, taken, boxes)
        if spot is None:
            continue
        tx, ty, text_anchor, box = spot
        taken.append(box)
        weight = ' font-weight="600"' if bold else ""
        parts.append(f'<text class="point-label" x="{tx:.1f}" y="{ty:.1f}" '
                     f'text-anchor="{text_anchor}" font-size="{FONT_PX}"{weight} '
                     'fill="#1d2330" stroke="#ffffff" stroke-width="3" '
                     f'paint-order="stroke">{e(text)}</text>')
    return parts


def _free_spot(point: tuple[float, float, float], text: str, taken: list[Box],
               markers: list[Box]):
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
    for tx, ty, text_anchor in candidates:
        left = {"start": tx, "end": tx - width, "middle": tx - width / 2}[text_anchor]
        box = (left, ty - height + 2, left + width, ty + 3)
        if box[0] < LEFT + 2 or box[2] > WIDTH - RIGHT - 2 or box[1] < TOP + 2 \
                or box[3] > HEIGHT - BOTTOM - 2:
            continue
        boxes.append((tx, ty, text_anchor, box))
    for avoid in (taken + markers, taken):  # best: clear of everything; else clear of labels
        for tx, ty, text_anchor, box in boxes:
            others = [m for m in avoid if not _contains(m, (px, py))]
            if not any(_overlaps(box, other) for other in others):
                return tx, ty, text_anchor, box
    return None


def _contains(box: Box, point: tuple[float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

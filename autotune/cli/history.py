"""``autotune history``: one config's figures across runs and runtime versions, with a plot.

Each trial is compared with the previous comparable trial (same model, config, backend and
target) by ``autotune.regress``, so a step that a runtime upgrade caused is marked where it
happened; ``autotune.changepoints`` segments each whole series, so a drift or a step among
noisy runs is found too, and names what changed in the environment with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autotune.changepoints import (
    MIN_SEGMENT,
    ChangePoint,
    change_points,
    points_of,
    series_in,
)
from autotune.cli.common import add_store_option, open_store, print_json, print_table
from autotune.cli.compare import add_threshold_options, target_label, thresholds_from
from autotune.regress import TrialComparison, history_changes
from autotune.store import Run
from autotune.trial import Trial

# Versions shown for every point: the series' backend's runtime (its first package) and the
# fp32 reference's; any other package is shown when it varies in the series.
REFERENCE_PACKAGES = ("onnxruntime",)
MAX_PLOTTED_SERIES = 12


@dataclass(frozen=True)
class Point:
    run: Run
    trial: Trial
    change: TrialComparison | None  # against the previous trial of the series


@dataclass(frozen=True)
class Series:
    points: list[Point]
    change_points: list[ChangePoint]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "history", help="one config's figures across runs and runtime versions",
        description="Every stored trial of the selected config(s), oldest first, each compared "
                    "with the previous comparable run, and the change points of each series "
                    "(steps and drifts of latency and memory) with the environment change "
                    "that came with each; writes a plot under REPORT_DIR/history/.")
    parser.add_argument("--model", default=None, help="model name (as in the run)")
    parser.add_argument("--config", default=None, metavar="ID",
                        help="config id, canonical text or label")
    parser.add_argument("--target", default=None, help="target name")
    parser.add_argument("--backend", default=None, help="backend name")
    add_threshold_options(parser)
    parser.add_argument("--report-dir", default=Path("reports"), type=Path,
                        help="where the plot is written (default: reports/)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_store_option(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    thresholds = thresholds_from(args)
    store = open_store(args.store)
    selected = series_in(store, args.model, args.config, args.target, args.backend)
    series = [Series([Point(run, trial, change) for (run, trial), change
                      in zip(pairs, history_changes([t for _, t in pairs], thresholds),
                             strict=True)],
                     change_points(points_of(pairs), thresholds))
              for pairs in selected.values()]
    plot = write_plot(series, args.report_dir / "history" / _plot_name(args))
    if args.json:
        print_json({"plot": str(plot), "series": [_series_json(s) for s in series]})
    else:
        print_series(series)
        print(f"\nplot: {plot}")
    return 0


def _varying_versions(points: Sequence[Point]) -> list[str]:
    names = sorted({name for p in points for name in p.trial.versions})
    varying = [name for name in names
               if len({p.trial.versions.get(name) for p in points}) > 1]
    return list(dict.fromkeys([*shown_versions(points[0].trial.backend), *varying]))


def shown_versions(backend: str) -> list[str]:
    """The packages whose versions every point of a ``backend`` series shows."""
    from autotune.backends import backend_names, get_backend

    runtime = list(get_backend(backend).packages[:1]) if backend in backend_names() else []
    return [*runtime, *REFERENCE_PACKAGES]


def print_series(series: Sequence[Series]) -> None:
    for one in series:
        points = one.points
        first = points[0].trial
        print(f"{first.model} {first.config.label} ({first.config.id}) on "
              f"{first.backend}/{target_label(first)}: {len(points)} run(s)")
        versions = _varying_versions(points)
        print_table(["run", "created", *versions, "status", "latency ms", "p90 ms",
                     "memory MiB", "accuracy/cos", "vs previous", "verdict"],
                    [_row(point, versions) for point in points])
        if not one.change_points:
            print("change points: none" + (" (a step needs two runs on each side)"
                                           if len(points) < 2 * MIN_SEGMENT else ""))
        else:
            print("change points:")
        for found in one.change_points:
            print(f"  {found.summary}")
        print()


def _row(point: Point, versions: Sequence[str]) -> list:
    trial, change = point.trial, point.change
    latency = None if change is None else change.latency
    verdict = "" if change is None else (", ".join(f.kind for f in change.findings)
                                         or "unchanged")
    if change is not None and change.regressed:
        verdict = "REGRESSION: " + verdict
    quality = trial.accuracy if trial.accuracy is not None else trial.cosine
    return [point.run.id, point.run.created_at[:16],
            *[trial.versions.get(name) for name in versions], trial.status,
            None if trial.latency_ms is None else f"{trial.latency_ms:.4f}",
            None if trial.latency_p90_ms is None else f"{trial.latency_p90_ms:.4f}",
            None if trial.memory_bytes is None else f"{trial.memory_bytes / 2**20:.2f}",
            None if quality is None else f"{quality:.4f}",
            None if latency is None else f"{latency.change:+.1%}", verdict]


def _series_json(series: Series) -> dict:
    points = series.points
    first = points[0].trial
    return {
        "model": first.model, "model_hash": first.model_hash, "config_id": first.config.id,
        "config_text": first.config.text, "backend": first.backend, "target": first.target,
        "points": [{
            "run_id": p.run.id, "created_at": p.run.created_at, "versions": p.trial.versions,
            "status": p.trial.status, "latency_ms": p.trial.latency_ms,
            "latency_median_ms": p.trial.latency_median_ms,
            "latency_p90_ms": p.trial.latency_p90_ms, "memory_bytes": p.trial.memory_bytes,
            "accuracy": p.trial.accuracy, "accuracy_drop": p.trial.accuracy_drop,
            "latency_change": None if p.change is None or p.change.latency is None
            else p.change.latency.change,
            "regressed": bool(p.change and p.change.regressed),
            "findings": [] if p.change is None else [
                {"kind": f.kind, "regression": f.regression, "detail": f.detail}
                for f in p.change.findings],
        } for p in points],
        "change_points": [found.to_json() for found in series.change_points],
    }


def _plot_name(args) -> str:
    parts = [args.model or "all-models", args.config or "all-configs",
             args.backend or "all-backends", args.target or "all-targets"]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)) + ".png"


def write_plot(series: Sequence[Series], path: Path) -> Path:
    """Median latency (p90 as the upper whisker) per run, regressions marked in red, latency
    change points as dashed lines between the runs on either side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted({p.run.id: p.run for one in series for p in one.points}.values(),
                  key=lambda run: (run.created_at, run.id))
    position = {run.id: index for index, run in enumerate(runs)}
    figure, axis = plt.subplots(figsize=(max(7.0, 1.1 * len(runs) + 3), 5.5))
    plotted = list(series)[:MAX_PLOTTED_SERIES]
    for one in plotted:
        color = _plot_series(axis, one.points, position)
        _plot_change_points(axis, one.change_points, position, color)
    packages = list(dict.fromkeys(name for one in plotted
                                  for name in shown_versions(one.points[0].trial.backend)))
    axis.set_xticks(range(len(runs)))
    axis.set_xticklabels([_tick(run, packages) for run in runs], fontsize=7, rotation=30,
                         ha="right")
    axis.set_ylabel("latency, ms: median of the fastest pass (whisker: p90)")
    axis.set_title("history" + (f" (first {MAX_PLOTTED_SERIES} of {len(series)} series)"
                                if len(series) > MAX_PLOTTED_SERIES else ""))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _plot_series(axis, points: Sequence[Point], position: dict[str, int]):
    """Draws one series; returns its colour."""
    first = points[0].trial
    ok = [p for p in points if p.trial.ok and p.trial.latency_ms is not None]
    xs = [position[p.run.id] for p in ok]
    medians = [p.trial.latency_ms for p in ok]
    upper = [max(0.0, (p.trial.latency_p90_ms or m) - m) for p, m in zip(ok, medians,
                                                                          strict=True)]
    line = axis.errorbar(xs, medians, yerr=[[0] * len(ok), upper], marker="o", markersize=4,
                         capsize=3, label=f"{first.config.label} {first.backend}/{first.target}")
    color = line[0].get_color()
    floor = min(medians) if medians else 0.0
    for point in points:
        x = position[point.run.id]
        if not point.trial.ok:
            axis.scatter([x], [floor], marker="x", color=color, s=40)
            axis.annotate(point.trial.status, (x, floor), fontsize=6, xytext=(3, -10),
                          textcoords="offset points")
        elif point.change is not None and point.change.regressed:
            axis.scatter([x], [point.trial.latency_ms], s=140, facecolors="none",
                         edgecolors="crimson", linewidths=2, zorder=4)
            kinds = ", ".join(f.kind for f in point.change.findings if f.regression)
            axis.annotate(kinds, (x, point.trial.latency_ms), color="crimson",
                          fontsize=7, xytext=(6, 6), textcoords="offset points")
    return color


def _plot_change_points(axis, found: Sequence[ChangePoint], position: dict[str, int],
                        color) -> None:
    """A dashed line where each latency change point (a drift: its first and last step)
    falls, labelled with its change and most likely cause."""
    for change in found:
        if change.metric != "latency":
            continue
        steps = sorted({position[change.first_run_id], position[change.run_id]})
        for x in steps:
            axis.axvline(x - 0.5, color=color, linestyle="--", linewidth=1.2, alpha=0.8)
        cause = change.environment[0].text if change.environment else "no environment change"
        axis.annotate(f"{change.change:+.1%} {change.kind}: {cause}", (steps[-1] - 0.45, 0.98),
                      xycoords=("data", "axes fraction"), color=color, fontsize=7,
                      rotation=90, va="top", ha="left")


def _tick(run: Run, packages: Sequence[str]) -> str:
    return run.id + "".join(f"\n{name} {run.versions.get(name, '-')}" for name in packages)

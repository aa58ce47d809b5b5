"""``frontier.png``: the frontier of each target as a matplotlib figure (for the Markdown)."""

from __future__ import annotations

from pathlib import Path

from autotune.report.facts import RunFacts
from autotune.report.svg import color_of


def write_plot(facts: RunFacts, path: Path) -> Path | None:
    """Draw every target with a plottable trial; None when no target has one."""
    targets = [t for t in facts.targets if t.plotted]
    if not targets:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(targets), figsize=(7.5 * len(targets), 5.5),
                                squeeze=False)
    for axis, target in zip(axes[0], targets, strict=True):
        group = [f.trial for f in target.plotted]
        scale = max(t.memory_bytes or 0 for t in group) or 1
        for backend in sorted({t.backend for t in group}):
            points = [t for t in group if t.backend == backend]
            axis.scatter([t.accuracy_drop * 100 for t in points],
                         [t.latency_ms for t in points],
                         s=[30 + 170 * (t.memory_bytes or 0) / scale for t in points],
                         c=color_of(backend, facts.backends), alpha=0.55, label=backend,
                         edgecolors="black", linewidths=0.4)
        front = sorted((f.trial for f in target.front), key=lambda t: t.accuracy_drop)
        axis.plot([t.accuracy_drop * 100 for t in front], [t.latency_ms for t in front],
                  color="crimson", linewidth=1.5, marker="D", markersize=5,
                  label="Pareto frontier", zorder=3)
        for t in front:
            axis.annotate(f"{t.config.label} ({t.backend})",
                          (t.accuracy_drop * 100, t.latency_ms), fontsize=7,
                          xytext=(4, 4), textcoords="offset points")
        failed = [f.trial for f in target.failed]
        if failed:
            text = "failed: " + ", ".join(f"{t.config.label}/{t.backend} ({t.status})"
                                          for t in failed[:6])
            if len(failed) > 6:
                text += f" and {len(failed) - 6} more"
            axis.text(0.01, 0.01, text, transform=axis.transAxes, fontsize=7, color="crimson",
                      wrap=True)
        axis.axvline(facts.max_accuracy_drop * 100, color="gray", linestyle=":", linewidth=1)
        axis.set_xlabel("accuracy drop vs fp32 (percentage points)"
                        if not facts.run.synthetic_data else "1 - cosine vs fp32 (x100)")
        axis.set_ylabel("latency (ms, fastest pass median)")
        axis.set_yscale("log")
        axis.set_title(f"{facts.run.model} on {target.name}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

"""Reports: a Markdown summary, a CSV of every trial, a frontier plot and an HTML page per run.

The report only consumes what the store and the pure functions (pareto) give it.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from autotune.config import FP32
from autotune.outcome import CAUSE, FLAG
from autotune.pareto import frontier, pick
from autotune.store import Run, Store
from autotune.trial import Trial

DEFAULT_MAX_DROP = 0.01  # one percentage point

CSV_FIELDS = ("config_id", "config_text", "label", "backend", "target", "status",
              "latency_median_ms", "latency_p90_ms", "latency_p99_ms", "latency_spread",
              "samples", "speedup_vs_fp32", "accuracy", "accuracy_drop_pp", "top1_agreement",
              "sqnr_db", "cosine", "memory_bytes", "peak_memory_bytes", "artifact_size_bytes",
              "compile_s", "load_s", "first_inference_ms", "emulated", "notes",
              "error")


def write_report(store: Store, run_id: str | None, report_dir: Path) -> Path:
    """Render the report of a run (the latest when ``run_id`` is None); returns its folder."""
    run = store.get_run(run_id)
    trials = store.trials(run.id)
    out = Path(report_dir) / run.id
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "trials.csv", trials)
    plot = _plot(out / "frontier.png", run, trials)
    (out / "summary.md").write_text(render_markdown(run, trials, plot.name if plot else None))
    from autotune.report_html import write_html  # it imports this module's helpers

    write_html(store, run, trials, out)
    return out


def baselines(trials: Sequence[Trial]) -> dict[tuple[str, str], Trial]:
    """The successful fp32 trial of each (backend, target)."""
    return {(t.backend, t.target): t for t in trials if t.ok and t.config == FP32}


def speedup(trial: Trial, base: dict[tuple[str, str], Trial]) -> float | None:
    reference = base.get((trial.backend, trial.target))
    if reference is None or not trial.ok:
        return None
    return reference.latency_median_ms / trial.latency_median_ms


def flags(trial: Trial, base: dict[tuple[str, str], Trial]) -> list[str]:
    """What a user should know about a trial at a glance, with the reason where known."""
    notes = [note.text for note in trial.notes_with(FLAG)]
    ratio = speedup(trial, base)
    if trial.config.is_quantized and ratio is not None and ratio <= 1.0:
        reason = "".join(f"; {note.text}" for note in trial.notes_with(CAUSE))
        notes.append(f"quantized but not faster than fp32 ({ratio:.2f}x){reason}")
    if trial.noisy:
        spreads = trial.spreads or [trial.latency_spread or 0.0]
        notes.append(f"noisy: latency spread stayed above the limit in {len(spreads)} "
                     f"measurement(s) ({', '.join(f'{s:.1%}' for s in spreads)}); compare "
                     f"with care")
    if trial.emulated:
        notes.append("emulated: latency is not the device's")
    return notes


def reproduce_command(run: Run, trial: Trial) -> str:
    """The command that measures this one config again (next to its fp32 baseline)."""
    settings = run.settings
    parts = ["autotune run", f"--model {settings.model}"]
    if settings.data:
        parts.append(f"--data {settings.data}")
    parts += [f"--target {trial.target}", f"--backend {trial.backend}"]
    if trial.tuning is not None:  # the backend tuned: the same budget finds the same kernels
        parts.append(f"--tuning-trials {trial.tuning.trials_requested}")
    parts += [f"--runtime {spec}" for spec in settings.runtime]
    if trial.config != FP32:
        parts.append(f"--config '{trial.config.text}'")
    return " ".join(parts)


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _kib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024:.0f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def render_markdown(run: Run, trials: Sequence[Trial], plot_name: str | None) -> str:
    base = baselines(trials)
    counts = Counter(trial.status for trial in trials)
    lines = [f"# autotune run {run.id}", ""]
    if run.synthetic_data:
        lines += ["> **No data was given for this model**: it was calibrated on seeded random "
                  "inputs and scored only for fidelity against fp32 (accuracy drop = 1 - mean "
                  "cosine similarity of the outputs). Give `--data` for a task metric.", ""]
    lines += [
        f"- model: `{run.model}` ({run.model_path}, sha256 {run.model_hash})",
        f"- search space: `{run.space}`; metric: {run.metric}"
        + (f"; fp32 reference accuracy {run.reference_accuracy:.2%}"
           if run.reference_accuracy is not None else ""),
        f"- host: {run.host.get('cpu_model')} ({run.host.get('cores')} cores), "
        f"{run.host.get('system')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(run.versions.items())),
        f"- status: {run.status}; started {run.created_at}, finished {run.finished_at or '-'}",
        f"- trials: {len(trials)} (" + ", ".join(f"{n} {s}" for s, n in counts.most_common())
        + ")",
        "- backends: " + ", ".join(f"{name} {n} trials" for name, n in
                                   Counter(trial.backend for trial in trials).items())
        + (f"; tuning budget {run.settings.tuning_trials} trials per model (backends that "
           f"tune)" if run.settings.tuning_trials else ""),
        "",
    ]
    if plot_name:
        lines += [f"![frontier]({plot_name})", ""]
    by_target: dict[str, list[Trial]] = defaultdict(list)
    for trial in trials:
        by_target[trial.target].append(trial)
    for target, group in by_target.items():
        lines += [f"## Target `{target}`", ""]
        choice = pick(group, DEFAULT_MAX_DROP, "latency")
        if choice.chosen is not None:
            chosen = choice.chosen
            lines += [f"**Recommended** (fastest at <= 1 pp accuracy drop): "
                      f"`{chosen.config.label}` on {chosen.backend}, "
                      f"{chosen.latency_median_ms:.3f} ms median"
                      + (f" ({speedup(chosen, base):.2f}x vs fp32)" if speedup(chosen, base)
                         else "")
                      + f", accuracy drop {chosen.accuracy_drop * 100:.2f} pp. Reproduce: "
                      f"`{reproduce_command(run, chosen)}`", ""]
        elif choice.nearest:
            lines += ["**No config meets <= 1 pp accuracy drop.** Nearest: "
                      + "; ".join(f"`{t.config.label}` on {t.backend} misses by "
                                  f"{miss * 100:.2f} pp" for t, miss in choice.nearest), ""]
        front = sorted(frontier(group), key=lambda t: t.latency_median_ms)
        if front:
            lines += ["### Pareto frontier (latency, accuracy drop, memory)", ""]
            lines += _trial_table(front, base)
        ok = sorted((t for t in group if t.ok), key=lambda t: t.latency_median_ms)
        if ok:
            lines += ["### All successful trials", ""]
            lines += _trial_table(ok, base)
            lines += _roofline_table(ok)
        failed = [t for t in group if not t.ok]
        if failed:
            lines += ["### Failed trials", "", "| config | backend | status | error |",
                      "|---|---|---|---|"]
            for t in failed:
                error = " ".join(t.error.split())[:300].replace("|", "\\|")
                lines.append(f"| {t.config.label} | {t.backend} | {t.status} | {error} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _trial_table(trials: Sequence[Trial], base: dict) -> list[str]:
    lines = ["| config | backend | median ms | p90 ms | spread | speedup vs fp32 | accuracy | "
             "drop pp | memory MiB | size KiB | notes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for t in trials:
        ratio = speedup(t, base)
        lines.append(
            f"| {t.config.label} | {t.backend} | {t.latency_median_ms:.3f} | "
            f"{t.latency_p90_ms:.3f} | {t.latency_spread:.1%} | "
            f"{_fmt(ratio, '{:.2f}x')} | {_fmt(t.accuracy, '{:.2%}')} | "
            f"{_fmt(None if t.accuracy_drop is None else t.accuracy_drop * 100, '{:.2f}')} | "
            f"{_mib(t.memory_bytes)} | "
            f"{_kib(t.artifact_size_bytes)}"
            f" | {'; '.join(flags(t, base))} |")
    lines.append("")
    return lines


def _roofline_table(trials: Sequence[Trial]) -> list[str]:
    """Where each config sits against the target's roofline (``Trial.roofline``)."""
    placed = [t for t in trials if t.roofline is not None and t.roofline.bound_ms]
    if not placed:
        return []
    sources = sorted({t.roofline.peaks_source or "?" for t in placed})
    lines = ["### Roofline", "",
             f"Bound = max(operations / peak of their precision, bytes moved / bandwidth), "
             f"peaks from: {', '.join(sources)}; attained = bound / measured median.", "",
             "| config | backend | precision | ops/byte | bound by | bound ms | median ms | "
             "attained |", "|---|---|---|---:|---|---:|---:|---:|"]
    for t in placed:
        roof = t.roofline
        lines.append(f"| {t.config.label} | {t.backend} | {roof.precision} | "
                     f"{roof.intensity:.1f} | {roof.bound} | "
                     f"{roof.bound_ms:.4f} | {t.latency_median_ms:.3f} | "
                     f"{roof.bound_ms / t.latency_median_ms:.1%} |")
    lines.append("")
    return lines


def _write_csv(path: Path, trials: Sequence[Trial]) -> None:
    base = baselines(trials)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, CSV_FIELDS)
        writer.writeheader()
        for t in trials:
            writer.writerow({
                "config_id": t.config.id, "config_text": t.config.text, "label": t.config.label,
                "backend": t.backend, "target": t.target, "status": t.status,
                "latency_median_ms": t.latency_median_ms, "latency_p90_ms": t.latency_p90_ms,
                "latency_p99_ms": t.latency_p99_ms, "latency_spread": t.latency_spread,
                "samples": len(t.latencies_ms), "speedup_vs_fp32": speedup(t, base),
                "accuracy": t.accuracy,
                "accuracy_drop_pp": None if t.accuracy_drop is None else t.accuracy_drop * 100,
                "top1_agreement": t.top1_agreement, "sqnr_db": t.sqnr_db, "cosine": t.cosine,
                "memory_bytes": t.memory_bytes, "peak_memory_bytes": t.peak_memory_bytes,
                "artifact_size_bytes": t.artifact_size_bytes, "compile_s": t.compile_s,
                "load_s": t.load_s, "first_inference_ms": t.first_inference_ms,
                "emulated": t.emulated,
                "notes": " | ".join(note.text for note in t.notes),
                "error": t.error,
            })


def _plot(path: Path, run: Run, trials: Sequence[Trial]) -> Path | None:
    ok = [t for t in trials if t.ok and t.accuracy_drop is not None]
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({t.target for t in ok})
    figure, axes = plt.subplots(1, len(targets), figsize=(7.5 * len(targets), 5.5),
                                squeeze=False)
    colors = {"openvino": "tab:blue", "tvm": "tab:orange"}
    for axis, target in zip(axes[0], targets, strict=True):
        group = [t for t in ok if t.target == target]
        memory = [t.memory_bytes or 0 for t in group]
        scale = max(memory) or 1
        for backend in sorted({t.backend for t in group}):
            points = [t for t in group if t.backend == backend]
            axis.scatter([t.accuracy_drop * 100 for t in points],
                         [t.latency_median_ms for t in points],
                         s=[30 + 170 * (t.memory_bytes or 0) / scale for t in points],
                         c=colors.get(backend, "tab:gray"), alpha=0.55, label=backend,
                         edgecolors="black", linewidths=0.4)
        front = sorted(frontier(group), key=lambda t: t.accuracy_drop)
        axis.plot([t.accuracy_drop * 100 for t in front], [t.latency_median_ms for t in front],
                  color="crimson", linewidth=1.5, marker="D", markersize=5,
                  label="Pareto frontier", zorder=3)
        for t in front:
            axis.annotate(f"{t.config.label} ({t.backend})",
                          (t.accuracy_drop * 100, t.latency_median_ms), fontsize=7,
                          xytext=(4, 4), textcoords="offset points")
        failed = [t for t in trials if t.target == target and not t.ok]
        if failed:
            text = "failed: " + ", ".join(f"{t.config.label}/{t.backend} ({t.status})"
                                          for t in failed[:6])
            if len(failed) > 6:
                text += f" and {len(failed) - 6} more"
            axis.text(0.01, 0.01, text, transform=axis.transAxes, fontsize=7, color="crimson",
                      wrap=True)
        axis.axvline(1.0, color="gray", linestyle=":", linewidth=1)
        axis.set_xlabel("accuracy drop vs fp32 (percentage points)"
                        if not run.synthetic_data else "1 - cosine vs fp32 (x100)")
        axis.set_ylabel("median latency (ms)")
        axis.set_yscale("log")
        axis.set_title(f"{run.model} on {target}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

"""One row per trial: ``trials.csv`` and the Python API's trials DataFrame read the same
``trial_record``, so the file and the frame cannot disagree about a figure or a judgement."""

from __future__ import annotations

import csv
from pathlib import Path

from autotune.report.facts import RunFacts, TrialFacts
from autotune.report.text import judged_machine

CSV_FIELDS = ("config_id", "config_text", "label", "backend", "target", "status",
              "latency_ms", "latency_median_ms", "latency_p90_ms", "latency_p99_ms",
              "latency_spread", "samples", "speedup_vs_fp32", "accuracy", "accuracy_drop_pp",
              "top1_agreement", "sqnr_db", "cosine", "memory_bytes", "peak_memory_bytes",
              "artifact_size_bytes", "compile_s", "load_s", "first_inference_ms",
              "first_inference_warm", "emulated", "calibration_samples",
              "other_cpu_share", "steal_share", "load_1m", "cpu_mhz", "contended",
              "throughput_ips", "throughput_batch", "throughput_vs_fp32",
              "saturation_rate", "worst_class", "worst_class_drop_pp", "cost_per_million_usd",
              "on_frontier", "flags", "notes", "error")

# Every column of ``trial_record`` (docs/api.md says what each holds): the CSV's, and the
# run, the machine and the roofline placement that the CSV leaves out.
TRIAL_COLUMNS = (
    "run_id", "config_id", "config_text", "label", "backend", "target", "status",
    "latency_ms", "latency_median_ms", "latency_p90_ms", "latency_p99_ms", "latency_spread",
    "samples", "speedup_vs_fp32", "accuracy", "accuracy_drop", "accuracy_drop_pp",
    "top1_agreement", "sqnr_db", "cosine", "memory_bytes", "peak_memory_bytes",
    "artifact_size_bytes", "compile_s", "load_s", "first_inference_ms", "first_inference_warm",
    "emulated", "quantize_s", "calibration_samples", "compile_memory_bytes", "passes", "noisy",
    "tuned", "cpu_model", "cores", "other_cpu_share", "steal_share", "load_1m", "cpu_mhz",
    "contended",
    "roofline_precision", "roofline_ops", "roofline_bytes", "roofline_intensity",
    "roofline_bound_ms", "roofline_compute_ms", "roofline_memory_ms", "roofline_bound",
    "roofline_memory_level", "roofline_attained_fraction",
    "throughput_ips", "throughput_batch", "throughput_vs_fp32",
    "saturation_rate", "worst_class", "worst_class_drop_pp", "cost_per_million_usd",
    "on_frontier", "flags", "notes", "error", "started_at", "finished_at")


def trial_record(facts: TrialFacts) -> dict:
    """One trial and the report's judgements of it, by ``TRIAL_COLUMNS``."""
    t = facts.trial
    return {
        "run_id": t.run_id, "config_id": t.config.id, "config_text": t.config.text,
        "label": t.config.label, "backend": t.backend, "target": t.target, "status": t.status,
        "latency_ms": t.latency_ms,
        "latency_median_ms": t.latency_median_ms, "latency_p90_ms": t.latency_p90_ms,
        "latency_p99_ms": t.latency_p99_ms, "latency_spread": t.latency_spread,
        "samples": len(t.latencies_ms), "speedup_vs_fp32": facts.speedup,
        "accuracy": t.accuracy, "accuracy_drop": t.accuracy_drop,
        "accuracy_drop_pp": None if t.accuracy_drop is None else t.accuracy_drop * 100,
        "top1_agreement": t.top1_agreement, "sqnr_db": t.sqnr_db, "cosine": t.cosine,
        "memory_bytes": t.memory_bytes, "peak_memory_bytes": t.peak_memory_bytes,
        "artifact_size_bytes": t.artifact_size_bytes, "compile_s": t.compile_s,
        "load_s": t.load_s, "first_inference_ms": t.first_inference_ms,
        # The device could time a warm first run only: never read it as a cold start.
        "first_inference_warm": t.first_inference_warm,
        "emulated": t.emulated, "quantize_s": t.quantize_s,
        "calibration_samples": t.calibration_samples,
        "compile_memory_bytes": t.compile_memory_bytes, "passes": len(t.pass_medians_ms),
        "noisy": t.noisy, "tuned": None if t.tuning is None else t.tuning.tuned,
        "cpu_model": t.cpu_model, "cores": t.cores,
        **_machine_fields(t), **_roofline_fields(t), **_throughput_fields(facts),
        **_deployment_fields(t),
        "on_frontier": facts.on_front, "flags": " | ".join(facts.flags),
        "notes": " | ".join(note.text for note in t.notes),
        "error": t.error, "started_at": t.started_at, "finished_at": t.finished_at,
    }


def write_csv(facts: RunFacts, path: Path) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for f in facts.trials:
            writer.writerow(trial_record(f))
    return path


def _machine_fields(trial) -> dict:
    """The machine's state during the pass the trial is judged by (blank where unknown)."""
    machine = judged_machine(trial)
    known = machine is not None
    return {"other_cpu_share": machine.other_share if known else None,
            "steal_share": machine.steal_share if known else None,
            "load_1m": machine.load_1m if known else None,
            "cpu_mhz": machine.freq_mhz if known else None, "contended": trial.contended}


def _throughput_fields(facts: TrialFacts) -> dict:
    """The throughput mode's best batch size (blank where it was not measured, --batch)."""
    throughput = facts.trial.throughput
    best = None if throughput is None else throughput.best
    return {"throughput_ips": None if best is None else best.inferences_per_s,
            "throughput_batch": None if best is None else best.batch,
            "throughput_vs_fp32": facts.throughput_vs_fp32}


def _deployment_fields(trial) -> dict:
    """Saturation, the worst class's drop and the cost per million inferences (blank where
    the trial has no such figure)."""
    classes = trial.class_accuracy
    return {"saturation_rate": trial.saturation_rate,
            "worst_class": None if classes is None else classes.worst_class,
            "worst_class_drop_pp": None if classes is None else classes.worst_drop * 100,
            "cost_per_million_usd": trial.cost_per_million_usd}


def _roofline_fields(trial) -> dict:
    """Where the trial sits against its target's roofline (blank without a placement)."""
    roof = trial.roofline
    if roof is None:
        return {f"roofline_{name}": None for name in (
            "precision", "ops", "bytes", "intensity", "bound_ms", "compute_ms", "memory_ms",
            "bound", "memory_level", "attained_fraction")}
    return {"roofline_precision": roof.precision, "roofline_ops": roof.ops,
            "roofline_bytes": roof.bytes, "roofline_intensity": roof.intensity,
            "roofline_bound_ms": roof.bound_ms, "roofline_compute_ms": roof.compute_ms,
            "roofline_memory_ms": roof.memory_ms, "roofline_bound": roof.bound or None,
            "roofline_memory_level": roof.memory_level or None,
            "roofline_attained_fraction": roof.attained_fraction}

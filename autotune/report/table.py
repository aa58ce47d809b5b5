"""``trials.csv``: every trial of a run, one row each, with the report's judgements."""

from __future__ import annotations

import csv
from pathlib import Path

from autotune.report.facts import RunFacts
from autotune.report.text import judged_machine

CSV_FIELDS = ("config_id", "config_text", "label", "backend", "target", "status",
              "latency_ms", "latency_median_ms", "latency_p90_ms", "latency_p99_ms",
              "latency_spread", "samples", "speedup_vs_fp32", "accuracy", "accuracy_drop_pp",
              "top1_agreement", "sqnr_db", "cosine", "memory_bytes", "peak_memory_bytes",
              "artifact_size_bytes", "compile_s", "load_s", "first_inference_ms",
              "first_inference_warm", "emulated",
              "other_cpu_share", "steal_share", "load_1m", "cpu_mhz", "contended",
              "on_frontier", "flags", "notes", "error")


def write_csv(facts: RunFacts, path: Path) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, CSV_FIELDS)
        writer.writeheader()
        for f in facts.trials:
            t = f.trial
            writer.writerow({
                "config_id": t.config.id, "config_text": t.config.text, "label": t.config.label,
                "backend": t.backend, "target": t.target, "status": t.status,
                "latency_ms": t.latency_ms,
                "latency_median_ms": t.latency_median_ms, "latency_p90_ms": t.latency_p90_ms,
                "latency_p99_ms": t.latency_p99_ms, "latency_spread": t.latency_spread,
                "samples": len(t.latencies_ms), "speedup_vs_fp32": f.speedup,
                "accuracy": t.accuracy,
                "accuracy_drop_pp": None if t.accuracy_drop is None else t.accuracy_drop * 100,
                "top1_agreement": t.top1_agreement, "sqnr_db": t.sqnr_db, "cosine": t.cosine,
                "memory_bytes": t.memory_bytes, "peak_memory_bytes": t.peak_memory_bytes,
                "artifact_size_bytes": t.artifact_size_bytes, "compile_s": t.compile_s,
                "load_s": t.load_s, "first_inference_ms": t.first_inference_ms,
                # The device could time a warm first run only: never read it as a cold start.
                "first_inference_warm": t.first_inference_warm,
                "emulated": t.emulated, **_machine_fields(t), "on_frontier": f.on_front,
                "flags": " | ".join(f.flags),
                "notes": " | ".join(note.text for note in t.notes),
                "error": t.error,
            })
    return path


def _machine_fields(trial) -> dict:
    """The machine's state during the pass the trial is judged by (blank where unknown)."""
    machine = judged_machine(trial)
    known = machine is not None
    return {"other_cpu_share": machine.other_share if known else None,
            "steal_share": machine.steal_share if known else None,
            "load_1m": machine.load_1m if known else None,
            "cpu_mhz": machine.freq_mhz if known else None, "contended": trial.contended}

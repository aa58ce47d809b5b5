"""Export: the artifact a trial measured, with its manifest, ready to ship (``autotune export``).

A run keeps its compiled artifacts only until its last measurement pass, so an export
usually builds the artifact again: the same quantized model (from the cache, or quantized
again with the run's calibration inputs: deterministic) through the same backend, in an
isolated worker, as the run did. What comes out is checked against what the run recorded:
the artifact file's sha256, and its outputs on the recorded inputs. The export says which
held. A quantized config that is not faster than fp32 on its target is refused unless
forced: shipping it is the complaint this suite exists to prevent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autotune.accuracy import first_outputs, mean_cosine
from autotune.backends import get_backend
from autotune.backends.base import Artifact
from autotune.cores import allowed_cpus, target_cpus
from autotune.data import Dataset
from autotune.driver import RunSettings
from autotune.errors import InputError
from autotune.measure import MeasurementProtocol
from autotune.outputs import RECORDED_COUNT, load_outputs, recorded_outputs_path, save_outputs
from autotune.quantize import quantize, sha256_file
from autotune.regress import pass_noise
from autotune.report.facts import baselines, reproduce_command, speedup
from autotune.store import Run, now
from autotune.target import Target, load_target
from autotune.trial import Trial
from autotune.version import __version__
from autotune.worker import Job, run_isolated

FORMAT = "autotune-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
INPUTS_FILE = "inputs.npz"
OUTPUTS_FILE = "outputs.npz"
# Outputs of a backend that is not bit-exact here must agree with the recorded ones at least
# this well (1 - cosine) even when the config's own fidelity error is smaller.
MIN_TOLERANCE = 1e-6
# Enough for an export's worker to produce outputs; its latency is not the one shipped.
_OUTPUTS_ONLY = MeasurementProtocol(warmup_runs=0, min_repeats=1, min_time_s=0.0)


class CheckFailed(Exception):
    """An export or verification whose check failed (exit 1); the message names the figure."""


def find_trial(trials: Sequence[Trial], config: str, backend: str | None,
               target: str | None) -> Trial:
    """The trial of ``config`` (id, canonical text or label) on ``backend``/``target``, which
    may be left out where the run has one choice.

    Raises:
        InputError: no such trial, or more than one and the flags do not say which.
    """
    found = [t for t in trials if config in (t.config.id, t.config.text, t.config.label)
             and backend in (None, t.backend) and target in (None, t.target)]
    if len(found) == 1:
        return found[0]
    if not found:
        have = sorted({f"{t.config.id} ({t.config.label}) on {t.backend}/{t.target}"
                       for t in trials})
        raise InputError(f"--config {config}: no such trial in the run (it has: "
                         f"{'; '.join(have) or 'none'})")
    where = ", ".join(sorted(f"{t.backend}/{t.target}" for t in found))
    raise InputError(f"--config {config}: measured on {where}; say which with --backend and "
                     f"--target")


def refuse_if_not_faster(trial: Trial, trials: Sequence[Trial]) -> float | None:
    """The trial's speedup over fp32 on its backend and target (None for fp32 itself).

    Raises:
        CheckFailed: a quantized trial not faster than fp32 (or with no fp32 to compare),
            with both measured latencies.
    """
    if not trial.config.is_quantized:
        return None
    base = baselines(trials)
    reference = base.get((trial.backend, trial.target))
    ratio = speedup(trial, base)
    where = f"{trial.config.label} ({trial.config.id}) on {trial.backend}/{trial.target}"
    if reference is None or ratio is None:
        raise CheckFailed(f"{where}: no successful fp32 trial on the same backend and target "
                          f"to show it is faster ({trial.latency_ms:.4g} ms); --force exports "
                          f"it anyway")
    if ratio <= 1.0:
        raise CheckFailed(f"{where} is not faster than fp32: {trial.latency_ms:.4g} ms against "
                          f"fp32's {reference.latency_ms:.4g} ms ({ratio:.2f}x, fastest pass "
                          f"medians); --force exports it anyway")
    return ratio


def compare_outputs(recorded: list[list[np.ndarray]], found: list[list[np.ndarray]],
                    exact: bool, tolerance: float) -> str | None:
    """None when ``found`` agrees with ``recorded`` (bit for bit, or within ``tolerance`` of
    1 - cosine on the first output); else what differs, in figures."""
    count = len(recorded)
    if len(found) < count:
        return f"outputs: {len(found)} samples, {count} recorded"
    found = found[:count]
    shapes = [[array.shape for array in sample] for sample in recorded]
    if shapes != [[array.shape for array in sample] for sample in found]:
        return "outputs: shapes differ from the recorded ones"
    if all(np.array_equal(a, b) for old, new in zip(recorded, found, strict=True)
           for a, b in zip(old, new, strict=True)):
        return None
    largest = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                  for old, new in zip(recorded, found, strict=True)
                  for a, b in zip(old, new, strict=True))
    if exact:
        return f"outputs: not bit-exact (largest difference {largest:.3g})"
    error = 1.0 - mean_cosine(first_outputs(recorded), first_outputs(found))
    if error > tolerance:
        return (f"outputs: 1 - cosine {error:.3g} against the recorded outputs, above the "
                f"tolerance {tolerance:.3g} (largest difference {largest:.3g})")
    return None


@dataclass(frozen=True)
class Rebuilt:
    """The artifact an export ships, how it was obtained, and what disagreed with the run."""

    artifact: Artifact
    outputs: list[list[np.ndarray]]
    versions: dict[str, str]
    provenance: str
    problems: tuple[str, ...]
    outputs_exact: bool


def export_trial(run: Run, trial: Trial, trials: Sequence[Trial], workspace: Path,
                 folder: Path, force: bool = False, python: str | None = None,
                 say: Callable[[str], None] = lambda text: None) -> dict:
    """Write ``trial``'s artifact, the quantized ONNX, inputs, recorded outputs, the target
    file and ``manifest.json`` into ``folder`` (new or empty); returns the manifest.

    The files are written to a sibling folder first and moved into place at the end, so a
    crash never leaves a half export that looks complete.

    Raises:
        InputError: the trial failed, ``folder`` is not empty, or the run's data is gone.
        CheckFailed: not faster than fp32, or the rebuilt artifact disagrees with the run
            (unless ``force``: then the manifest lists what disagreed).
    """
    if not trial.ok:
        raise InputError(f"{trial.config.label} on {trial.backend}/{trial.target} is "
                         f"{trial.status}: nothing was measured to export")
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder}: exists and is not an empty folder")
    ratio = None
    try:
        ratio = refuse_if_not_faster(trial, trials)
    except CheckFailed:
        if not force:
            raise
    run_dir = Path(workspace) / "runs" / run.id
    if not (run_dir / "dataset.npz").is_file():
        raise InputError(f"{run_dir / 'dataset.npz'}: the run's inputs are gone (the run "
                         f"was made in another working directory or with another --store)")
    target = _run_target(run, trial.target)
    dataset = Dataset.load(run_dir / "dataset.npz")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        rebuilt = _rebuild(run, trial, target, dataset, run_dir, Path(workspace), staging,
                           python, say)
        if rebuilt.problems and not force:
            raise CheckFailed("; ".join(rebuilt.problems) + " (--force exports it anyway)")
        say("writing the export")
        model = quantize(Path(run.model_path), trial.config, dataset.calibration,
                         Path(workspace) / "cache")
        shutil.copyfile(model.path, staging / MODEL_FILE)
        exported = get_backend(trial.backend).export(rebuilt.artifact, model, target, staging)
        shutil.rmtree(staging / "build", ignore_errors=True)
        samples = dataset.evaluation[:RECORDED_COUNT]
        np.savez(staging / INPUTS_FILE, **{name: np.stack([feeds[name] for feeds in samples])
                                           for name in samples[0]})
        save_outputs(staging / OUTPUTS_FILE, rebuilt.outputs)
        target_file = f"{target.name}.toml"
        shutil.copyfile(target.path, staging / target_file)
        files = [MODEL_FILE, *exported.files, INPUTS_FILE, OUTPUTS_FILE, target_file]
        record = {**rebuilt.artifact.to_json(), "path": exported.measured}
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "created_at": now(),
            "autotune": __version__, "run_id": run.id,
            "model": {"name": run.model, "store_hash": trial.model_hash,
                      "sha256": sha256_file(Path(run.model_path)),
                      "file": MODEL_FILE, "precision_hint": model.precision_hint},
            "config": {"id": trial.config.id, "text": trial.config.text,
                       "label": trial.config.label, "fields": trial.config.to_dict()},
            "backend": trial.backend,
            "target": {"name": target.name, "file": target_file,
                       "toml": target.path.read_text()},
            "versions": dict(trial.versions),
            "settings": run.settings.to_json(),
            "measured": measured_figures(trial, run),
            "fp32_speedup": None if ratio is None else round(ratio, 4),
            "noise": _noise(trials, trial.target),
            "artifact": {"file": exported.measured, "record": record,
                         "loader": exported.loader, "provenance": rebuilt.provenance,
                         "forced_past": list(rebuilt.problems)},
            "inputs": [{"name": name, "dtype": str(array.dtype), "shape": list(array.shape)}
                       for name, array in samples[0].items()],
            "inputs_file": INPUTS_FILE,
            "outputs": {"file": OUTPUTS_FILE, "count": len(rebuilt.outputs),
                        "exact": rebuilt.outputs_exact,
                        "tolerance": output_tolerance(trial)},
            "reproduce": reproduce_command(run, trial),
            "files": {name: sha256_file(staging / name) for name in files},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        if folder.exists():
            folder.rmdir()
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def output_tolerance(trial: Trial) -> float:
    """How far (1 - cosine) a non-bit-exact rerun's outputs may be from the recorded ones:
    the config's own fidelity error against fp32, so the check is never looser than the
    quantization it ships."""
    return max(trial.fidelity_error or 0.0, MIN_TOLERANCE)


def measured_figures(trial: Trial, run: Run) -> dict:
    """The trial's figures as the manifest shows them (and ``autotune verify`` compares)."""
    return {
        "latency_ms": trial.latency_ms, "latency_median_ms": trial.latency_median_ms,
        "latency_p90_ms": trial.latency_p90_ms, "latency_p99_ms": trial.latency_p99_ms,
        "latency_spread": trial.latency_spread, "latencies_ms": list(trial.latencies_ms),
        "passes": [entry.to_json() for entry in trial.passes],
        "first_inference_ms": trial.first_inference_ms, "load_s": trial.load_s,
        "compile_s": trial.compile_s, "memory_bytes": trial.memory_bytes,
        "peak_memory_bytes": trial.peak_memory_bytes,
        "artifact_size_bytes": trial.artifact_size_bytes,
        "artifact_sha256": trial.artifact_sha256 or None,
        "metric": run.metric, "reference_accuracy": run.reference_accuracy,
        "accuracy": trial.accuracy, "accuracy_drop": trial.accuracy_drop,
        "top1_agreement": trial.top1_agreement, "sqnr_db": trial.sqnr_db,
        "cosine": trial.cosine, "fidelity_error": trial.fidelity_error,
        "cpu_model": trial.cpu_model, "cores": trial.cores, "core_set": list(trial.core_set),
        "emulated": trial.emulated, "tuning_trials": trial.tuning_trials,
        "notes": [note.text for note in trial.notes],
    }


def _noise(trials: Sequence[Trial], target: str) -> dict | None:
    noise = pass_noise(trials).get(target)
    return None if noise is None else {"sigma": noise.sigma, "dof": noise.dof}


def _run_target(run: Run, name: str) -> Target:
    """The run's target called ``name`` (the run may have named it by a path)."""
    for given in run.settings.targets:
        target = load_target(given)
        if target.name == name:
            return target
    return load_target(name)


def _rebuild(run: Run, trial: Trial, target: Target, dataset: Dataset, run_dir: Path,
             workspace: Path, staging: Path, python: str | None,
             say: Callable[[str], None]) -> Rebuilt:
    """The trial's artifact (kept by the run, else compiled again in a worker as the run
    did) with its outputs on the recorded inputs, checked against what the run recorded."""
    key = f"{trial.config.id}-{trial.backend}-{trial.target}"
    kept = run_dir / "artifacts" / key / "artifact.json"
    inputs = Dataset(calibration=dataset.calibration,
                     evaluation=dataset.evaluation[:RECORDED_COUNT], labels=None,
                     metric=dataset.metric, synthetic=dataset.synthetic)
    inputs.save(staging / "inputs-job.npz")
    job = Job(model_path=run.model_path, config=trial.config.to_dict(), backend=trial.backend,
              target_path=str(target.path), dataset_path=str(staging / "inputs-job.npz"),
              cache_dir=str(workspace / "cache"), protocol=_OUTPUTS_ONLY.to_dict(),
              tuning_trials=trial.tuning_trials, artifact_dir=str(staging / "build"),
              artifact=json.loads(kept.read_text()) if kept.is_file() else None,
              cpus=list(target_cpus(target, allowed_cpus())) if target.is_local else None)
    say("loading the artifact the run kept" if job.artifact else
        "compiling the artifact again in a worker, as the run did")
    limits = RunSettings.from_spec(run.settings, workspace)
    result = run_isolated(job, limits.trial_timeout_s, limits.memory_limit_bytes, python=python)
    (staging / "inputs-job.npz").unlink()
    if result.status != "ok":
        raise CheckFailed(f"rebuilding the artifact failed: {result.status}: {result.error}")
    artifact = Artifact.from_json(result.outcome.artifact)
    problems = []
    packages = get_backend(trial.backend).packages
    for name in packages:
        was, here = trial.versions.get(name), result.outcome.versions.get(name)
        if was != here:
            problems.append(f"{name} {here} here, {was} when measured")
    found = sha256_file(artifact.path)
    how = "the artifact the run kept" if job.artifact else "compiled again"
    if not trial.artifact_sha256:
        provenance = f"{how}; the run recorded no artifact hash"
    elif found == trial.artifact_sha256:
        provenance = f"{how}; bit-identical to the measured artifact (sha256 {found[:16]})"
    else:
        provenance = (f"{how}; its sha256 {found[:16]} differs from the measured "
                      f"{trial.artifact_sha256[:16]}, so its outputs vouch for it")
    path = recorded_outputs_path(run_dir, trial.config.id, trial.backend, trial.target)
    outputs = result.outputs or []
    exact = False  # unknown until this artifact's outputs meet the recorded ones
    if path.is_file():
        recorded = load_outputs(path)
        exact = compare_outputs(recorded, outputs, True, 0.0) is None
        differs = compare_outputs(recorded, outputs, False, output_tolerance(trial))
        if differs is not None:
            problems.append(differs)
        provenance += ("; outputs bit-exact with the recorded ones" if exact
                       else "; outputs within the config's fidelity of the recorded ones")
        outputs = recorded
    else:
        provenance += ("; the run recorded no outputs (made before autotune kept them): the "
                       "outputs shipped are this artifact's, unchecked")
    return Rebuilt(artifact, outputs, result.outcome.versions, provenance, tuple(problems),
                   exact)

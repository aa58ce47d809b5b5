"""Verify: re-check an export in a fresh process before it ships (``autotune verify DIR``).

Three things must hold: every file still has the sha256 the manifest recorded; the measured
artifact, loaded by the isolated worker on the same target, gives the recorded outputs (bit
for bit where the export found the backend bit-exact, else within the config's fidelity);
and its latency, measured again under the run's protocol and passes, is not slower than the
manifest's beyond the run's own noise, judged by the rule ``autotune compare`` uses
(``autotune.regress.compare_pair``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autotune.backends import backend_names, get_backend
from autotune.config import QuantConfig
from autotune.cores import allowed_cpus, driver_kept_off, target_cpus
from autotune.data import Dataset
from autotune.driver import RunSettings, measure_artifact_pass
from autotune.errors import InputError
from autotune.export import FORMAT, FORMAT_VERSION, MANIFEST, compare_outputs
from autotune.outcome import CONTENDED, PassRecord
from autotune.outputs import load_outputs
from autotune.quantize import sha256_file
from autotune.regress import PassNoise, Thresholds, compare_pair
from autotune.settings import RunSpec
from autotune.target import load_target
from autotune.trial import Trial
from autotune.worker import Job


@dataclass(frozen=True)
class Check:
    """One figure verify compared: its name (a file, ``outputs``, ``latency``), whether it
    held, and the figures."""

    name: str
    ok: bool
    detail: str


def read_manifest(folder: Path) -> dict:
    """The export's manifest.

    Raises:
        InputError: no such folder, no manifest, or one autotune did not write.
    """
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: no such folder")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{folder}: no {MANIFEST}; not an `autotune export` folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not an `autotune export` manifest (no format "
                         f"{FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: format_version {manifest.get('format_version')!r}; this "
                         f"autotune reads {FORMAT_VERSION}")
    missing = [key for key in ("files", "artifact", "backend", "target", "measured",
                               "outputs", "settings", "config", "versions")
               if key not in manifest]
    if missing:
        raise InputError(f"{path}: missing {', '.join(missing)}")
    if manifest["backend"] not in backend_names():
        raise InputError(f"{path}: backend {manifest['backend']!r} is not one of this "
                         f"autotune's ({', '.join(backend_names())})")
    return manifest


def check_files(folder: Path, manifest: dict) -> list[Check]:
    """Each file's sha256 against the manifest's."""
    checks = []
    for name, recorded in manifest["files"].items():
        path = Path(folder) / name
        if not path.is_file():
            checks.append(Check(name, False, "missing"))
            continue
        found = sha256_file(path)
        checks.append(Check(name, found == recorded, "sha256 matches" if found == recorded
                            else f"sha256 {found[:16]}..., recorded {recorded[:16]}..."))
    return checks


DEFAULT_THRESHOLDS = Thresholds()


def verify_export(folder: Path, thresholds: Thresholds = DEFAULT_THRESHOLDS,
                  python: str | None = None,
                  say: Callable[[str], None] = lambda text: None) -> list[Check]:
    """Every check of the export in ``folder``; files first, and nothing is loaded when a
    file differs (it is not the artifact that was measured).

    Raises:
        InputError: ``folder`` is not a readable export (see ``read_manifest``).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    checks = check_files(folder, manifest)
    if not all(check.ok for check in checks):
        return checks
    target = load_target(str(folder / manifest["target"]["file"]))
    availability = get_backend(manifest["backend"]).available(target)
    if not availability.ok:
        return [*checks, Check("target", False, f"{manifest['backend']} cannot run on "
                                                f"{target.name} here: {availability.reason}")]
    baseline = _measured_trial(manifest)
    candidate = _measured_trial(manifest, measured=False)
    passes = max(1, sum(entry.ok for entry in baseline.passes))
    with tempfile.TemporaryDirectory(prefix="autotune-verify-") as scratch:
        settings = RunSettings.from_spec(RunSpec.from_json(manifest["settings"]),
                                         Path(scratch), python=python)
        job = _job(folder, manifest, target, settings, Path(scratch))
        cpus = job.cpus or ()
        outputs, versions = None, {}
        with driver_kept_off(cpus):
            for number in range(1, passes + 1):
                say(f"measuring pass {number}/{passes} in a fresh worker")
                result = measure_artifact_pass(candidate, job, settings)
                if result.status != "ok":
                    return [*checks, Check("load", False, f"{result.status}: {result.error}")]
                if outputs is None:
                    outputs, versions = result.outputs, result.outcome.versions
    checks.append(_versions_check(manifest, versions))
    spec = manifest["outputs"]
    recorded = load_outputs(folder / spec["file"])
    differs = compare_outputs(recorded, outputs or [], bool(spec["exact"]),
                              float(spec["tolerance"]))
    checks.append(Check("outputs", differs is None, differs or (
        f"{len(recorded)} samples {'bit-exact' if spec['exact'] else 'within 1 - cosine '}"
        + ("" if spec["exact"] else f"{float(spec['tolerance']):.3g}")
        + " of the recorded ones")))
    noise = manifest.get("noise")
    pair = compare_pair(baseline, candidate, thresholds,
                        noise=(None if noise is None else PassNoise(noise["sigma"],
                                                                    noise["dof"]), None))
    checks += _latency_checks(pair, baseline, candidate, thresholds)
    return checks


def _latency_checks(pair, baseline: Trial, candidate: Trial,
                    thresholds: Thresholds) -> list[Check]:
    """The latency (and memory) verdicts of ``compare_pair``: a regression or a latency not
    judged (contention) fails; faster or unchanged holds."""
    checks = []
    latency = pair.latency
    said = (f"fastest pass median {baseline.latency_ms:.4g} ms recorded, "
            f"{candidate.latency_ms:.4g} ms now")
    if latency is not None:
        floor = latency.noise_floor
        said += (f" ({latency.change:+.1%}; counts beyond {thresholds.latency:.0%}"
                 + (f" and the run's noise {floor:.1%}" if floor is not None else "") + ")")
    failed = [finding for finding in pair.findings
              if finding.regression or finding.kind == CONTENDED]
    if not any(finding.kind in ("slower", CONTENDED) for finding in failed):
        checks.append(Check("latency", True, said))
    for finding in failed:
        name = "latency" if finding.kind in ("slower", CONTENDED) else finding.kind
        checks.append(Check(name, False, f"{finding.kind}: {finding.detail}"))
    return checks


def _versions_check(manifest: dict, versions: dict[str, str]) -> Check:
    """The backend's runtime versions here against those the artifact was measured with."""
    packages = get_backend(manifest["backend"]).packages
    differ = [f"{name} {versions.get(name)} here, {manifest['versions'].get(name)} measured"
              for name in packages if versions.get(name) != manifest["versions"].get(name)]
    return Check("versions", not differ, "; ".join(differ) or ", ".join(
        f"{name} {versions.get(name)}" for name in packages))


def _measured_trial(manifest: dict, measured: bool = True) -> Trial:
    """The manifest's trial as ``compare_pair`` takes it (``measured``), or an empty one for
    verify's own passes."""
    figures = manifest["measured"]
    trial = Trial(run_id=manifest.get("run_id", ""), model=manifest["model"]["name"],
                  model_hash=manifest["model"]["store_hash"],
                  config=QuantConfig.from_dict(manifest["config"]["fields"]),
                  backend=manifest["backend"], target=manifest["target"]["name"], status="ok",
                  tuning_trials=figures.get("tuning_trials") or 0)
    if measured:
        trial.latencies_ms = [float(value) for value in figures["latencies_ms"]]
        trial.passes = [PassRecord.from_json(entry) for entry in figures["passes"]]
        trial.latency_median_ms = figures["latency_median_ms"]
        trial.memory_bytes = figures.get("memory_bytes")
    return trial


def _job(folder: Path, manifest: dict, target, settings: RunSettings, scratch: Path) -> Job:
    """A measure-only worker job for the exported artifact, on the exported inputs."""
    inputs = np.load(folder / manifest["inputs_file"])
    names = [spec["name"] for spec in manifest["inputs"]]
    samples = [{name: inputs[name][index] for name in names}
               for index in range(len(inputs[names[0]]))]
    # The worker reads a dataset; calibration inputs are not used by a measure-only job.
    Dataset(calibration=samples, evaluation=samples, labels=None,
            metric="fidelity").save(scratch / "inputs.npz")
    record = {**manifest["artifact"]["record"],
              "path": str((folder / manifest["artifact"]["file"]).resolve())}
    return Job(model_path=str(folder / manifest["model"]["file"]),
               config=manifest["config"]["fields"], backend=manifest["backend"],
               target_path=str(folder / manifest["target"]["file"]),
               dataset_path=str(scratch / "inputs.npz"), cache_dir=str(scratch / "cache"),
               protocol=settings.protocol.to_dict(), artifact=record,
               cpus=list(target_cpus(target, allowed_cpus())) if target.is_local else None)

"""Runtime environments: run the trial workers against another runtime version, side by side.

``autotune run --runtime PACKAGE==VERSION`` (a backend's ``worker_packages``, or a common
one) builds (once) a virtual environment under ``envs/<normalized spec>/`` of the user cache
(``autotune.paths.user_cache_dir``) holding
that requirement plus what the worker imports, and the driver starts
``python -m autotune.worker`` with that environment's interpreter (the worker finds this
autotune through PYTHONPATH, ``autotune.paths.import_root``). Packages the spec does not name are
pinned to the versions installed here, so that only the named runtime differs between the
two runs; when the named runtime cannot live with them, pip picks versions within
autotune's declared ranges, and the trial records whatever was really used.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from autotune.backends import backend_names, get_backend
from autotune.errors import InputError
from autotune.host import autotune_commit, installed_versions
from autotune.paths import import_root

log = logging.getLogger("autotune")

# The packages every trial's results depend on, whatever its backend: the models are read,
# quantized and run for the fp32 reference with these.
COMMON_PACKAGES = ("onnxruntime", "onnx", "numpy")
_BACKENDS = [get_backend(name) for name in backend_names()]
# The packages whose versions are part of every trial's identity: every backend's own
# (``Backend.packages``) and the common ones.
RUNTIME_PACKAGES = tuple(dict.fromkeys(
    [*(package for backend in _BACKENDS for package in backend.packages), *COMMON_PACKAGES]))
# What ``python -m autotune.worker`` imports (autotune itself comes from this checkout), so
# what a ``--runtime`` environment installs and may swap: the common packages and each
# backend's ``worker_packages``.
WORKER_PACKAGES = tuple(dict.fromkeys(
    ["numpy", "onnx", "onnxruntime",
     *(package for backend in _BACKENDS for package in backend.worker_packages)]))
MARKER = "autotune-env.json"  # written last: an environment without it is half-built
_OPERATORS = {"==": "", "===": "eq", ">=": "ge", "<=": "le", ">": "gt", "<": "lt", "!=": "ne",
              "~=": "compat"}
_PIP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class RuntimeEnv:
    """A built environment: where it is, its interpreter and the versions it holds."""

    specs: tuple[str, ...]
    path: Path
    python: Path
    versions: dict[str, str]


def package_versions() -> dict[str, str]:
    """The runtime packages installed in this interpreter (the worker reports these)."""
    return installed_versions(RUNTIME_PACKAGES)


def runtime_versions() -> dict[str, str]:
    """The versions a run records: the runtime packages and the autotune commit."""
    return {**package_versions(), "autotune": autotune_commit()}


def versions_for(python: str | None) -> dict[str, str]:
    """The versions a run records: this interpreter's, or those of the workers' interpreter."""
    if python is None:
        return runtime_versions()
    return {**interpreter_versions(Path(python)), "autotune": autotune_commit()}


def interpreter_versions(python: Path) -> dict[str, str]:
    """``package_versions()`` as seen by another interpreter."""
    script = "import json; from autotune.runtimes import package_versions as v; " \
             "print(json.dumps(v()))"
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                            timeout=120, env=_checkout_env())
    if result.returncode != 0:
        raise InputError(f"{python}: cannot report its package versions: "
                         f"{_last_line(result.stderr)}")
    return json.loads(result.stdout)


def parse_specs(texts: Sequence[str]) -> list:
    """``--runtime`` texts as ``packaging`` requirements, one per worker package at most."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    requirements = []
    for text in texts:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise InputError(f"--runtime {text!r}: not a pip requirement ({error})") from None
        name = canonicalize_name(requirement.name)
        if name not in WORKER_PACKAGES:
            raise InputError(f"--runtime {text!r}: only the worker's runtimes can be swapped "
                             f"({', '.join(WORKER_PACKAGES)})")
        if requirement.url or requirement.marker:
            raise InputError(f"--runtime {text!r}: give a name and version specifier, "
                             f"without URL or environment marker")
        if name in {canonicalize_name(r.name) for r in requirements}:
            raise InputError(f"--runtime {text!r}: {name} is given twice")
        requirements.append(requirement)
    if not requirements:
        raise InputError(f"--runtime: give at least one requirement, e.g. "
                         f"{WORKER_PACKAGES[-1]}==VERSION ({', '.join(WORKER_PACKAGES)})")
    return sorted(requirements, key=lambda r: canonicalize_name(r.name))


def env_name(requirements: Sequence) -> str:
    """A folder name that says what the environment holds, e.g. ``onnxruntime-1.20.1``."""
    from packaging.utils import canonicalize_name

    parts = []
    for requirement in requirements:
        specifiers = sorted(requirement.specifier, key=lambda s: (s.operator, s.version))
        text = canonicalize_name(requirement.name)
        if requirement.extras:
            text += "-" + "-".join(sorted(requirement.extras))
        text += "".join(f"-{_OPERATORS[s.operator]}{s.version}" for s in specifiers)
        parts.append(text)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", "+".join(parts))


def ensure_env(texts: Sequence[str], envs_dir: Path) -> RuntimeEnv:
    """The environment for ``texts`` under ``envs_dir``, built on first use.

    Raises:
        InputError: a spec that is not a requirement of a worker runtime, or that pip cannot
            install here.
    """
    requirements = parse_specs(texts)
    path = Path(envs_dir).resolve() / env_name(requirements)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two runs asking for the same environment at once: one builds, the other waits.
    with open(path.parent / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / MARKER).exists():
            _build(path, [str(r) for r in requirements])
    return _load(path)


def _load(path: Path) -> RuntimeEnv:
    marker = json.loads((path / MARKER).read_text())
    return RuntimeEnv(specs=tuple(marker["specs"]), path=path, python=_python(path),
                      versions=marker["versions"])


def _python(path: Path) -> Path:
    return path / "bin" / "python"


def _build(path: Path, specs: list[str]) -> None:
    shutil.rmtree(path, ignore_errors=True)
    print(f"autotune: building runtime environment {path} for {' '.join(specs)} "
          f"(once; later runs reuse it)", file=sys.stderr, flush=True)
    try:
        result = subprocess.run([sys.executable, "-m", "venv", str(path)], capture_output=True,
                                text=True, timeout=600)
        if result.returncode != 0:
            raise InputError(f"--runtime {' '.join(specs)}: cannot create a virtual "
                             f"environment in {path}: {_last_line(result.stderr)}")
        named = {_name(spec) for spec in specs}
        companions = [package for package in WORKER_PACKAGES if package not in named]
        result = _pip_install(path, specs + _pinned(companions))
        if result.returncode != 0 and "ResolutionImpossible" in result.stdout + result.stderr:
            # The named runtime needs other versions of its companions (say, an older numpy).
            result = _pip_install(path, specs + _ranges(companions))
        if result.returncode != 0:
            raise InputError(f"--runtime {' '.join(specs)}: pip cannot install it: "
                             f"{_pip_error(result.stdout + result.stderr)}")
        _check_imports(path, specs)
        versions = interpreter_versions(_python(path))
        _warn_about_companions(specs, companions, versions)
        (path / MARKER).write_text(json.dumps({"specs": specs, "versions": versions},
                                              indent=2))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # never leave a half-built environment
        raise


def _warn_about_companions(specs: list[str], companions: Sequence[str],
                           versions: dict[str, str]) -> None:
    here = package_versions()
    changed = [f"{name} {versions.get(name)} (here {here[name]})" for name in companions
               if name in here and versions.get(name) != here[name]]
    if changed:
        log.warning("%s needs other versions than this interpreter's, so the runs differ in "
                    "these too: %s", " ".join(specs), ", ".join(changed))


def _name(spec: str) -> str:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(spec).name)


def _pinned(packages: Sequence[str]) -> list[str]:
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _ranges(packages: Sequence[str]) -> list[str]:
    """autotune's own declared ranges for ``packages`` (or the bare name without one)."""
    declared = {}
    try:
        for text in requires("autotune") or []:
            if ";" not in text:
                declared[_name(text)] = text
    except PackageNotFoundError:
        pass
    return [declared.get(package, package) for package in packages]


def _pip_install(path: Path, requirements: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(_python(path)), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *requirements],
                          capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)


def _check_imports(path: Path, specs: list[str]) -> None:
    script = "; ".join(f"import {package}" for package in WORKER_PACKAGES) + \
             "; import autotune.worker"
    result = subprocess.run([str(_python(path)), "-c", script], capture_output=True,
                            text=True, timeout=300, env=_checkout_env())
    if result.returncode != 0:
        raise InputError(f"--runtime {' '.join(specs)}: installed, but the worker cannot "
                         f"import its runtimes: {_last_line(result.stderr)}")


def _checkout_env() -> dict[str, str]:
    """The environment of a child that must import this autotune (and only it from here)."""
    pythonpath = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(import_root()) + (os.pathsep + pythonpath
                                                               if pythonpath else "")}


def _pip_error(output: str) -> str:
    errors = [line.removeprefix("ERROR: ").strip() for line in output.splitlines()
              if line.startswith("ERROR:")]
    return "; ".join(errors[:2]) if errors else _last_line(output)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"

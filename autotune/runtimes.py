"""Runtime environments: run the trial workers against another runtime version, side by side.

``autotune run --runtime PACKAGE==VERSION`` builds (once) a virtual environment under
``envs/`` of the user cache (``autotune.paths.user_cache_dir``) holding what the run's
workers import: the common packages and each of the run's backends' ``worker_packages``
(TVM with its FFI and MetaSchedule's helpers, OpenVINO with nncf). The driver starts
``python -m autotune.worker`` with that environment's interpreter (the worker finds this
autotune through PYTHONPATH, ``autotune.paths.import_root``).

Every package the specs do not name is pinned to the version installed here, so that only
the named runtime differs between two runs. When the named runtime cannot live with those
pins (OpenVINO 2025.4.0 wants numpy < 2.3), the common packages are relaxed to autotune's
declared ranges first, then every package; the trial records whatever was really used (the
worker reports its own interpreter's versions).

An environment is named by a digest of everything it was asked to hold (every pin and the
Python version), so a changed pin here (numpy upgraded) gives a new environment instead of
silently reusing a stale one. It is built in a ``.partial`` folder and renamed into place
once complete, under a lock, so two runs never build the same environment at once and a
crash never leaves a half-built one to be reused. uv installs it when there is one (seconds
from its cache), pip otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
COMMON_PACKAGES = ("numpy", "onnx", "onnxruntime")
_BACKENDS = [get_backend(name) for name in backend_names()]
# The packages whose versions are part of every trial's identity: every backend's own
# (``Backend.packages``) and the common ones.
RUNTIME_PACKAGES = tuple(dict.fromkeys(
    [*(package for backend in _BACKENDS for package in backend.packages), *COMMON_PACKAGES]))


def worker_packages(backends: Sequence[str]) -> tuple[str, ...]:
    """What a worker running ``backends`` imports, so what their environment installs."""
    return tuple(dict.fromkeys(
        [*COMMON_PACKAGES,
         *(package for name in backends for package in get_backend(name).worker_packages)]))


# Every package a ``--runtime`` spec may name (swap for another version).
WORKER_PACKAGES = worker_packages(backend_names())
MARKER = "autotune-env.json"  # what the environment holds; written before it is renamed
_OPERATORS = {"==": "", "===": "eq", ">=": "ge", "<=": "le", ">": "gt", "<": "lt", "!=": "ne",
              "~=": "compat"}
_INSTALL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class RuntimeEnv:
    """A built environment: where it is, its interpreter, what it was asked to hold
    (``requirements``: the specs and the pins of the rest) and the versions it holds."""

    specs: tuple[str, ...]
    requirements: tuple[str, ...]
    path: Path
    python: Path
    versions: dict[str, str]


@dataclass(frozen=True)
class EnvPlan:
    """What an environment is to hold, decided before anything is installed: the specs as
    given, what a backend says must change with them (nncf with OpenVINO), every other
    package the workers import pinned to this interpreter's version (a bare name where it
    has none), and the Python that will run it."""

    specs: tuple[str, ...]
    companions: tuple[str, ...]  # Backend.runtime_companions of the specs
    pins: tuple[str, ...]  # the rest, as installed here
    python: str  # e.g. "CPython 3.11.7"

    @property
    def requirements(self) -> tuple[str, ...]:
        return (*self.specs, *self.companions, *self.pins)

    @property
    def name(self) -> str:
        """The folder name: what the specs ask for, readable, then a digest of every
        requirement and the Python version, so any change of a pin is another folder."""
        key = json.dumps({"requirements": sorted(self.requirements), "python": self.python})
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return f"{env_name(parse_specs(self.specs))}-{digest}"


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


def plan_env(texts: Sequence[str], backends: Sequence[str]) -> EnvPlan:
    """The environment that runs ``backends``' workers against the ``--runtime`` specs
    ``texts``: the specs, and every other package the workers import pinned as here.

    Raises:
        InputError: a spec that is not a requirement of a worker runtime.
    """
    requirements = parse_specs(texts)
    swapped = {_name(str(r)): r.specifier for r in requirements}
    companions = [requirement for name in backends
                  for requirement in get_backend(name).runtime_companions(swapped)]
    given = {*swapped, *(_name(requirement) for requirement in companions)}
    rest = [package for package in worker_packages(backends) if package not in given]
    return EnvPlan(specs=tuple(str(r) for r in requirements), companions=tuple(companions),
                   pins=tuple(_pinned(rest)),
                   python=f"{platform.python_implementation()} {platform.python_version()}")


def ensure_env(texts: Sequence[str], envs_dir: Path,
               backends: Sequence[str] = ()) -> RuntimeEnv:
    """The environment for ``texts`` and ``backends`` (none named: every backend) under
    ``envs_dir``, built on first use.

    Raises:
        InputError: a spec that is not a requirement of a worker runtime, or that cannot be
            installed here (with the installer's reason).
    """
    plan = plan_env(texts, backends or backend_names())
    path = Path(envs_dir).resolve() / plan.name
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path):
        if not (path / MARKER).exists():
            _build(path, plan)
    return _load(path)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Two runs asking for the same environment at once: one builds, the other waits."""
    with open(path.parent / f"{path.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"waiting for another autotune to finish building {path.name}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load(path: Path) -> RuntimeEnv:
    marker = json.loads((path / MARKER).read_text())
    return RuntimeEnv(specs=tuple(marker["specs"]),
                      requirements=tuple(marker.get("requirements", marker["specs"])),
                      path=path, python=_python(path), versions=marker["versions"])


def _python(path: Path) -> Path:
    return path / "bin" / "python"


def _build(path: Path, plan: EnvPlan) -> None:
    """Build ``plan`` into ``path``: in ``path.partial`` first, renamed once complete."""
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a crashed build's (we hold the lock)
    shutil.rmtree(path, ignore_errors=True)  # one without a marker was never finished
    uv = uv_path()
    specs = " ".join(plan.specs)
    started = time.monotonic()
    _say(f"building runtime environment {path} for {specs} with "
         f"{'uv' if uv else 'pip'} (once; later runs reuse it)")
    try:
        _create_venv(partial, uv, specs)
        result = None
        for attempt, requirements in enumerate(_attempts(plan)):
            if attempt:
                _say(f"{specs} cannot live with this interpreter's pins; trying again "
                     f"within autotune's declared ranges")
            _say(f"installing {len(requirements)} requirements: {' '.join(requirements)}")
            result = _install(partial, uv, requirements)
            if result.returncode == 0 or not _resolution_impossible(result.stdout):
                break
        if result.returncode != 0:
            raise InputError(f"--runtime {specs}: cannot be installed: "
                             f"{_install_error(result.stdout)}")
        _say("checking that the worker imports its runtimes")
        _check_imports(partial, plan)
        versions = interpreter_versions(_python(partial))
        _warn_about_changed_pins(plan, versions)
        (partial / MARKER).write_text(json.dumps(
            {"specs": plan.specs, "requirements": plan.requirements, "python": plan.python,
             "installed": requirements, "versions": versions}, indent=2))
        os.rename(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # never leave a half-built environment
        raise
    _say(f"runtime environment {path.name} built in {time.monotonic() - started:.0f} s")


def _attempts(plan: EnvPlan) -> list[list[str]]:
    """What to install, most faithful first: every pin as here; the common packages within
    autotune's ranges (a runtime built for an older numpy); every pin within them."""
    given = [*plan.specs, *plan.companions]
    names = [_name(pin) for pin in plan.pins]
    common = [name for name in names if name in COMMON_PACKAGES]
    own = [pin for pin in plan.pins if _name(pin) not in COMMON_PACKAGES]
    attempts = [[*given, *plan.pins], [*given, *_ranges(common), *own],
                [*given, *_ranges(names)]]
    return [attempt for index, attempt in enumerate(attempts) if attempt not in attempts[:index]]


def uv_path() -> str | None:
    """uv, where there is one (beside this interpreter, else on PATH): it installs an
    environment from its cache in seconds, where pip takes minutes."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def _create_venv(path: Path, uv: str | None, specs: str) -> None:
    command = ([uv, "venv", "--quiet", "--python", sys.executable, str(path)] if uv
               else [sys.executable, "-m", "venv", str(path)])
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise InputError(f"--runtime {specs}: cannot create a virtual environment in {path}: "
                         f"{_last_line(result.stderr)}")


def _install(path: Path, uv: str | None,
             requirements: list[str]) -> subprocess.CompletedProcess:
    """Install ``requirements`` into the environment at ``path``, its output shown as it
    comes (downloads take a while) and kept for the error message."""
    command = ([uv, "pip", "install", "--python", str(_python(path)), *requirements] if uv
               else [str(_python(path)), "-m", "pip", "install", "--disable-pip-version-check",
                     "--progress-bar", "off", *requirements])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    timer = threading.Timer(_INSTALL_TIMEOUT_S, process.kill)
    timer.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.strip():
                print(f"  {line.rstrip()}", file=sys.stderr, flush=True)
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:  # interrupted: take the installer down with us
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, returncode, "".join(lines), "")


def _resolution_impossible(output: str) -> bool:
    """The requirements conflict with each other (pip's and uv's words for it), which other
    pins may solve, as opposed to a version that does not exist or a download that failed."""
    return ("ResolutionImpossible" in output or "No solution found" in output) and \
        "there is no version of" not in output


def _warn_about_changed_pins(plan: EnvPlan, versions: dict[str, str]) -> None:
    here = package_versions()
    changed = [f"{name} {versions.get(name)} (here {here[name]})"
               for name in (_name(pin) for pin in plan.pins)
               if name in here and name in versions and versions[name] != here[name]]
    if changed:
        log.warning("%s needs other versions than this interpreter's, so the runs differ in "
                    "these too: %s", " ".join(plan.specs), ", ".join(changed))


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


# Import every top-level module of the environment's requested distributions (``tvm`` of
# apache-tvm, ``xgboost`` of xgboost-cpu), then the worker itself.
_IMPORT_CHECK = """
import importlib, importlib.metadata as metadata, re, sys
wanted = {re.sub(r"[-_.]+", "-", name).lower() for name in sys.argv[1:]}
for module, distributions in sorted(metadata.packages_distributions().items()):
    if module.isidentifier() and not module.startswith("_") and any(
            re.sub(r"[-_.]+", "-", d).lower() in wanted for d in distributions):
        importlib.import_module(module)
import autotune.worker
"""


def _check_imports(path: Path, plan: EnvPlan) -> None:
    names = [_name(requirement) for requirement in plan.requirements]
    result = subprocess.run([str(_python(path)), "-c", _IMPORT_CHECK, *names],
                            capture_output=True, text=True, timeout=600, env=_checkout_env())
    if result.returncode != 0:
        raise InputError(f"--runtime {' '.join(plan.specs)}: installed, but the worker cannot "
                         f"import its runtimes: {_last_line(result.stderr)}")


def _checkout_env() -> dict[str, str]:
    """The environment of a child that must import this autotune (and only it from here)."""
    pythonpath = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(import_root()) + (os.pathsep + pythonpath
                                                               if pythonpath else "")}


def _install_error(output: str) -> str:
    """The installer's reason in a line or two: pip's ``ERROR:`` lines, uv's ``error:`` and
    its explanation (``cause:``, or the ``╰─▶`` line on a terminal)."""
    prefixes = ("ERROR:", "error:", "Error:", "cause:", "×", "╰─▶")
    reasons = []
    for line in output.splitlines():
        text = line.strip()
        prefix = next((p for p in prefixes if text.startswith(p)), None)
        if prefix is not None and text.removeprefix(prefix).strip():
            reasons.append(text.removeprefix(prefix).strip())
    return "; ".join(reasons[:3])[:600] if reasons else _last_line(output)


def _say(text: str) -> None:
    print(f"autotune: {text}", file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"

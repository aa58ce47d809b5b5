"""``autotune doctor``: what this machine has for each backend and target, and the fix for
what is missing.

Gathered once as a list of ``Check`` records, which the command prints as a table or JSON.
What a backend needs on a target is the backend's own ``requirements`` (the same checks its
``available`` answers a run with), so the doctor and a run never disagree.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from autotune.target_spec import Target

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# The instruction set features that decide which kernels the compilers can use, by machine.
ISA_FEATURES = {
    "x86_64": (("AVX2", ("avx2",)), ("AVX-512", ("avx512f",)),
               ("VNNI", ("avx512_vnni", "avx_vnni")), ("AMX", ("amx_int8",))),
    "aarch64": (("NEON", ("asimd",)), ("dot product", ("asimddp",)), ("SVE", ("sve",))),
}


@dataclass(frozen=True)
class Check:
    """One thing a run may need, as found here.

    ``scope``: ``host``, ``tests``, or ``TARGET/BACKEND``. ``needed``: the default run
    (``autotune run`` with no arguments) needs it, which decides the exit code. A check that
    is not ok with no ``fix`` is a fact of the hardware (a CPU feature), nothing to install.
    """

    scope: str
    what: str
    ok: bool
    found: str
    fix: str = ""
    needed: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def find_chromium() -> str | None:
    """The path of a Chromium binary (``$CHROMIUM`` first), or None when there is none."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def host_checks() -> list[Check]:
    """Cores, memory, the CPU's instruction set features, and Chromium for the browser
    tests."""
    import psutil

    from autotune.cpu_peaks import cpu_flags
    from autotune.host import cpu_model, usable_cores

    memory = psutil.virtual_memory()
    checks = [
        Check("host", "cores", True, f"{usable_cores()} usable ({cpu_model()})"),
        Check("host", "memory", True, f"{memory.total / 2**30:.1f} GiB, "
                                      f"{memory.available / 2**30:.1f} GiB available"),
    ]
    flags = cpu_flags()
    for name, any_of in ISA_FEATURES.get(platform.machine(), ()):
        present = sorted(set(any_of) & flags)
        checks.append(Check("host", name, bool(present),
                            ", ".join(present) if present else "not on this CPU"))
    chromium = find_chromium()
    checks.append(Check("tests", "Chromium (HTML report tests)", chromium is not None,
                        chromium or "not found ($CHROMIUM unset; none of "
                                    f"{', '.join(CHROMIUM_NAMES)} on PATH)",
                        "" if chromium else "apt-get install chromium, or set CHROMIUM"))
    return checks


def backend_checks(targets: Sequence[Target], backends: Sequence[str],
                   needed_target: str, needed_backends: Sequence[str]) -> list[Check]:
    """Each backend's requirements on each target that gives that backend a table."""
    from autotune.backends import get_backend

    checks = []
    for target in targets:
        for name in backends:
            if not target.backend_table(name):  # the target is not for this backend
                continue
            needed = target.name == needed_target and name in needed_backends
            checks += [Check(f"{target.name}/{name}", requirement.what, requirement.ok,
                             requirement.found, requirement.fix, needed)
                       for requirement in get_backend(name).requirements(target)]
    return checks


def default_run_ready(checks: Sequence[Check]) -> bool:
    """Whether ``autotune run`` with no arguments can measure on every backend it uses."""
    return all(check.ok for check in checks if check.needed)

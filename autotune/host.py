"""Facts about the machine and software that make a result: CPU, cores, package versions.

Which packages make a result is ``autotune.runtimes``'s (it asks the backends).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from autotune.paths import ROOT
from autotune.version import __version__


def installed_versions(packages) -> dict[str, str]:
    """The versions of those ``packages`` that are installed in this interpreter."""
    versions = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


@functools.lru_cache(maxsize=1)
def checkout_commit() -> str | None:
    """The git commit of the checkout autotune runs from (``+dirty`` for local changes), or
    None for an installed package: git asked about site-packages would name whatever
    repository happens to hold the virtual environment."""
    if not (ROOT / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.strip() + ("+dirty" if dirty.strip() else "")


def autotune_commit() -> str:
    """What a trial records as autotune's version: the checkout's commit, else the
    package version."""
    return checkout_commit() or __version__


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def host_info() -> dict:
    return {"hostname": platform.node(), "cpu_model": cpu_model(), "cores": usable_cores(),
            "machine": platform.machine(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}

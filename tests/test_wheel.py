"""The built wheel, not the checkout: installed into a folder of its own and run from an empty
directory, it finds its built-in targets and spaces, measures, and writes nothing next to its
own files (README: "Your own targets, search spaces and the cache")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autotune import paths
from autotune.version import __version__


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout (pip's isolated build, as `pip install .` does),
    unpacked with --no-deps into a folder of its own (the dependencies are this venv's)."""
    folder = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder / "dist"),
         str(paths.ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (folder / "dist").glob("autotune-*.whl")
    site = folder / "site"
    unpacked = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)], capture_output=True, text=True, timeout=600)
    assert unpacked.returncode == 0, unpacked.stderr[-2000:]
    return site


def _python(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("AUTOTUNE_") or key == "AUTOTUNE_LOCK_DIR"}
    env.update(PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1",
               AUTOTUNE_CACHE_DIR=str(cwd.parent / "cache"))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def _autotune(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return _python(site, cwd, "-m", "autotune", *args)


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if "__pycache__" not in path.parts}


@pytest.mark.openvino
@pytest.mark.readme_claim("an installed wheel (pip install ., not only -e) works from any "
                          "directory")
def test_the_wheel_runs_from_an_empty_directory(installed, tmp_path):
    empty = tmp_path / "work"
    empty.mkdir()
    before = _files(installed)

    which = _python(installed, empty, "-c", "import autotune; print(autotune.__file__)")
    assert which.stdout.strip() == str(installed / "autotune" / "__init__.py"), which
    version = _autotune(installed, empty, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"autotune {__version__}", (
        "outside a git checkout the version is the package's alone: " + version.stdout)

    targets = _autotune(installed, empty, "targets", "--json")
    assert targets.returncode == 0, targets.stderr
    rows = json.loads(targets.stdout)
    assert {"host-cpu", "arm-cortex-a76"} <= {row["target"] for row in rows}
    assert all(row["from"] == "built-in" and row["path"].startswith(str(installed))
               for row in rows), rows
    spaces = _autotune(installed, empty, "spaces", "--json")
    assert spaces.returncode == 0, spaces.stderr
    assert {"default", "smoke"} <= {row["name"] for row in json.loads(spaces.stdout)}

    run = _autotune(installed, empty, "run", "--space", "smoke", "--backend", "openvino",
                    "--budget", "2", "--tuning-trials", "0", "--no-progress")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert list((empty / "reports").glob("*/summary.md")), sorted(_files(empty))
    assert (empty / "results").is_dir()
    assert _files(installed) == before, "the run wrote into the installed package's folder"

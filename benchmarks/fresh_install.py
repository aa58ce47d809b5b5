"""A new user's install, timed: the built wheel in a fresh virtual environment, run from an
empty directory, and the environment's size against an older revision's.

    python benchmarks/fresh_install.py --python python3.12 [--before-rev REV]

Builds this checkout's wheel (pip's isolated build, as ``pip install .`` does), makes a fresh
venv with the named Python, ``pip install``s the wheel with its dependencies as pip resolves
them (no lock file: what a new user gets), then from an empty directory runs ``autotune
--version``, ``targets``, ``spaces``, ``doctor`` and ``run --budget 4 --tuning-trials 0`` (the
default model, space and target, both backends). With ``--before-rev`` the same is installed
for that git revision (on ``--before-python``, since old revisions may not accept the new
Python) and ``du -sh`` of both environments is printed. Writes
``benchmarks/results/fresh_install-DATE-pyX.Y.json`` and the log next to it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.cli.common import print_table  # noqa: E402
from autotune.host import autotune_commit, host_info  # noqa: E402

COMMANDS = (("--version",), ("targets",), ("spaces",), ("doctor",),
            ("run", "--budget", "4", "--tuning-trials", "0", "--no-progress"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3.12", help="the new venv's interpreter")
    parser.add_argument("--before-rev", default=None,
                        help="a git revision whose install size to compare with")
    parser.add_argument("--before-python", default="python3.11")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per command")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    log_lines: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        log_lines.append(text)

    with tempfile.TemporaryDirectory(prefix="autotune-fresh-") as scratch:
        scratch = Path(scratch)
        after = _install(ROOT, args.python, scratch / "after", log)
        steps = []
        empty = scratch / "after" / "empty"
        empty.mkdir()
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("AUTOTUNE_", "PYTHON", "VIRTUAL_ENV"))}
        env["AUTOTUNE_CACHE_DIR"] = str(scratch / "after" / "cache")
        env["PATH"] = f"{after['venv']}/bin:{env['PATH']}"
        for command in COMMANDS:
            started = time.monotonic()
            done = subprocess.run(["autotune", *command], cwd=empty, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=args.timeout)
            seconds = time.monotonic() - started
            log(f"$ autotune {' '.join(command)}   (exit {done.returncode}, {seconds:.0f} s)")
            log(done.stdout.rstrip()[-4000:])
            steps.append({"command": ["autotune", *command], "exit": done.returncode,
                          "seconds": round(seconds, 1), "output_tail": done.stdout[-4000:]})
        summaries = sorted(empty.glob("reports/*/summary.md"))
        before = (_install(_checkout(args.before_rev, scratch / "src-before"),
                           args.before_python, scratch / "before", log)
                  if args.before_rev else None)

    rows = [[" ".join(step["command"][1:]), str(step["exit"]), f"{step['seconds']:.0f}"]
            for step in steps]
    print()
    print_table(["autotune ...", "exit", "seconds"], rows)
    sizes = [["this checkout", after["python"], f"{after['mib']:.0f} MiB",
              f"{after['install_s']:.0f}"]]
    if before:
        sizes.append([args.before_rev, before["python"], f"{before['mib']:.0f} MiB",
                      f"{before['install_s']:.0f}"])
    print()
    print_table(["install", "python", "du -sh", "pip install s"], sizes)
    if before:
        print(f"\nsmaller by {before['mib'] - after['mib']:.0f} MiB")
    worked = all(step["exit"] == 0 for step in steps) and bool(summaries)
    print(f"every command exited 0 and the run wrote a report: {'yes' if worked else 'NO'}")

    date = datetime.date.today().isoformat()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"fresh_install-{date}-py{after['python'].rsplit('.', 1)[0]}"
    host = host_info()
    (out / f"{stem}.json").write_text(json.dumps({
        "benchmark": "fresh_install", "date": date, "autotune_commit": autotune_commit(),
        "host": {"cpu_model": host["cpu_model"], "cores": host["cores"],
                 "machine": host["machine"]},
        "after": {key: value for key, value in after.items() if key != "venv"},
        "before": ({key: value for key, value in before.items() if key != "venv"}
                   | {"rev": args.before_rev}) if before else None,
        "steps": steps, "worked": worked}, indent=2) + "\n")
    (out / f"{stem}.log").write_text("\n".join(log_lines) + "\n")
    print(f"wrote {out / stem}.json")
    return 0 if worked else 1


def _checkout(rev: str, into: Path) -> Path:
    """The tree of ``rev`` exported into a folder (no .git: builds as a plain source tree)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _install(source: Path, python: str, into: Path, log) -> dict:
    """A fresh venv with the wheel built from ``source`` installed as pip resolves it."""
    into.mkdir(parents=True, exist_ok=True)
    venv = into / "venv"
    started = time.monotonic()
    subprocess.run([shutil.which(python) or python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    dist = into / "dist"
    subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], check=True)
    (wheel,) = dist.glob("autotune-*.whl")
    subprocess.run([*pip, "install", "-q", str(wheel)], check=True)
    seconds = time.monotonic() - started
    du = subprocess.run(["du", "-sm", str(venv)], check=True, capture_output=True, text=True)
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import platform; print(platform.python_version())"],
                             check=True, capture_output=True, text=True).stdout.strip()
    mib = float(du.stdout.split()[0])
    log(f"installed {wheel.name} into a Python {version} venv: {mib:.0f} MiB, {seconds:.0f} s")
    return {"venv": str(venv), "python": version, "wheel": wheel.name, "mib": mib,
            "install_s": round(seconds, 1)}


if __name__ == "__main__":
    sys.exit(main())

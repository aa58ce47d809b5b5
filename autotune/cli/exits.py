"""Exit codes and crash logs, shared by every command (``autotune.cli.main``) and by a
campaign's cells, each of which ends as a command would."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from autotune.paths import user_cache_dir

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def write_crash_log(args: argparse.Namespace, argv: list[str] | None) -> Path:
    """Write the traceback being handled to a new log file; returns its path.

    The log goes next to the command's SQLite store (``results/logs/``, kept with the results
    a CI job uploads), else to the user's cache (``$XDG_CACHE_HOME/autotune/logs``), else to
    the temporary folder."""
    from autotune.version import __version__

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    text = (f"autotune {__version__}, {stamp} UTC, pid {os.getpid()}\n"
            f"argv: {sys.argv[:1] + list(sys.argv[1:] if argv is None else argv)}\n\n"
            + traceback.format_exc())
    for folder in _log_folders(getattr(args, "store", None)):
        path = folder / f"crash-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError:
            continue
        return path.resolve()
    return Path("(no writable log folder)")


def _log_folders(store_url: str | None) -> list[Path]:
    from autotune.cli.common import workspace_for

    folders = []
    if store_url and store_url.startswith("sqlite:///") and store_url != "sqlite:///:memory:":
        folders.append(workspace_for(store_url) / "logs")
    folders += [user_cache_dir() / "logs", Path(tempfile.gettempdir()) / "autotune-logs"]
    return folders

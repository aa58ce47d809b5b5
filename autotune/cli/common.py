"""Pieces the commands share: the store option and JSON/table printing."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from autotune.store import DEFAULT_STORE_URL, Store

# A CI job sets its store once for every command; --store still wins.
STORE_ENV = "AUTOTUNE_STORE"


def add_store_option(parser) -> None:
    parser.add_argument("--store", default=os.environ.get(STORE_ENV) or DEFAULT_STORE_URL,
                        metavar="URL",
                        help=f"result store URL (default: ${STORE_ENV}, else "
                             f"{DEFAULT_STORE_URL})")


def open_store(url: str) -> Store:
    return Store(url)


def workspace_for(url: str) -> Path:
    """The folder next to a SQLite store that holds run data and caches (``results/``)."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///")).parent
    return Path("results")


def runtime_python(specs: Sequence[str], backends: Sequence[str] = ()) -> str | None:
    """The workers' interpreter for ``--runtime`` SPECS, with what the workers of
    ``backends`` (none named: every backend) import (built once, in the user cache's envs/);
    None: this one."""
    if not specs:
        return None
    from autotune.paths import user_cache_dir
    from autotune.runtimes import ensure_env

    env = ensure_env(list(specs), user_cache_dir() / "envs", backends)
    print(f"runtime {' '.join(env.specs)}: "
          + ", ".join(f"{name} {value}" for name, value in env.versions.items()),
          file=sys.stderr)
    return str(env.python)


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row]
                                           for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
              .rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The same table as ``print_table``, as GitHub-flavoured Markdown (a PR comment, a CI
    job summary)."""
    def cell(value: object) -> str:
        return "-" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

"""``autotune report [RUN_ID]``: re-render a run's report."""

from __future__ import annotations

from pathlib import Path

from autotune.cli.common import add_store_option, open_store


def add_parser(commands) -> None:
    parser = commands.add_parser("report", help="re-render the report of a run",
                                 description="Re-render the report of a run (default: the "
                                             "latest).")
    parser.add_argument("run_id", nargs="?", default=None, metavar="RUN_ID")
    add_store_option(parser)
    parser.add_argument("--report-dir", default=Path("reports"), type=Path)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from autotune.report import write_report

    out = write_report(open_store(args.store), args.run_id, args.report_dir)
    print(out / "summary.md")
    return 0

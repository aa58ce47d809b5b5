"""The command line: ``autotune COMMAND``. Names are resolved here and nowhere else.

Exit codes: 0 success; 1 a regression found or a run with no successful trial (or a pick
with no qualifying config); 2 bad input, reported as one line with no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from autotune.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    from autotune.cli import (
        compare,
        doctor,
        history,
        listing,
        pick,
        report,
        roofline,
        run,
        sensitivity,
        worker,
    )

    parser = argparse.ArgumentParser(
        prog="autotune",
        description="Quantization autotuning benchmarks: search quantization configs, compile "
                    "them with OpenVINO and TVM, measure, and report Pareto frontiers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, report, pick, compare, history, listing, roofline, sensitivity,
                   worker, doctor):
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="autotune: %(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except InputError as error:
        print(f"autotune: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

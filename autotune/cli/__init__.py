"""The command line: ``autotune COMMAND``. Names are resolved here and nowhere else.

Exit codes, decided here for every command: 0 success; 1 a regression found (``compare``, a
gated ``run``), a run with no successful trial, a ``pick`` with no qualifying config, or an
``export``/``verify`` whose check fails; 2 bad
input, one line and no traceback; 3 an internal error, one line naming a log file that holds
the traceback; 130 interrupted. So a CI job can tell a crash from a regression.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from autotune.cli.exits import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    write_crash_log,
)
from autotune.errors import InputError
from autotune.paths import user_folders


def build_parser() -> argparse.ArgumentParser:
    from autotune.cli import (
        compare,
        doctor,
        export,
        history,
        listing,
        pick,
        publish,
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
    parser.add_argument("--version", action=_PrintVersion, nargs=0,
                        help="print the version (and the commit of a git checkout) and exit")
    _add_folder_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, report, pick, export, compare, history, publish, listing, roofline,
                   sensitivity, worker, doctor):
        module.add_parser(commands)
    for command in commands.choices.values():
        _add_folder_options(command)
        loudness = command.add_mutually_exclusive_group()
        loudness.add_argument("-v", "--verbose", action="store_true",
                              help="say more: why trials are measured again, and the like")
        loudness.add_argument("-q", "--quiet", action="store_true",
                              help="errors only, and no progress")
    return parser


def _add_folder_options(parser: argparse.ArgumentParser) -> None:
    """The user's own folders of target and space files, before and after the command
    (``autotune --targets-dir D run`` or ``autotune run --targets-dir D``)."""
    parser.add_argument("--targets-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="your target files (NAME.toml); found before AUTOTUNE_HOME's, "
                             "./targets and the built-in ones (sets AUTOTUNE_TARGETS_DIR)")
    parser.add_argument("--spaces-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="your search space files; found before AUTOTUNE_HOME's, "
                             "./search_spaces and the built-in ones (sets AUTOTUNE_SPACES_DIR)")


class _PrintVersion(argparse.Action):
    """``--version``, asking git only when it is given."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def version_text() -> str:
    """The package version, and the commit when running from a git checkout."""
    from autotune.host import checkout_commit
    from autotune.version import __version__

    commit = checkout_commit()
    return f"autotune {__version__}" + (f" (commit {commit})" if commit else "")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="autotune: %(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.getLogger("autotune").setLevel(
        logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING)
    try:
        with user_folders(getattr(args, "targets_dir", None), getattr(args, "spaces_dir", None)):
            return args.handler(args)
    except InputError as error:
        print(f"autotune: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("autotune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `autotune runs | head`: the reader left; not a bug
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as error:  # noqa: BLE001 - a bug: one line here, the traceback in a log
        log = write_crash_log(args, argv)
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"autotune: internal error: {type(error).__name__}"
              + (f": {first}" if first else "") + f" (traceback in {log})", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

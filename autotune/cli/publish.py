"""``autotune publish DIR``: write the static history site of a store (``autotune.publish``)."""

from __future__ import annotations

import sys
from pathlib import Path

from autotune.cli.common import add_store_option, open_store


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "publish", help="write a static history site over the whole store",
        description="Write a self-contained static site into DIR (index.html and one page per "
                    "model and target): every series across runs with its change points and "
                    "the environment change behind each, the latest Pareto frontier next to "
                    "the previous comparable run's, and the config recommended in each run. "
                    "Needs no network to view; serve or copy the folder as it is.")
    parser.add_argument("dir", type=Path, metavar="DIR", help="the site's folder (made if new)")
    parser.add_argument("--model", default=None, help="only this model's pages")
    parser.add_argument("--target", default=None, help="only this target's pages")
    add_store_option(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from autotune.publish import publish

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    index = publish(open_store(args.store), args.dir, model=args.model, target=args.target,
                    progress=None if args.quiet else progress)
    print(index)
    return 0

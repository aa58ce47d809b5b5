"""``autotune targets``, ``autotune spaces`` and ``autotune zoo``: what is available here."""

from __future__ import annotations

from autotune.cli.common import print_json, print_table


def add_parser(commands) -> None:
    for name, handler, help_text in (
        ("targets", _targets, "list targets (built-in and your own) and whether each is reachable"),
        ("spaces", _spaces, "list the search spaces (built-in and your own)"),
        ("zoo", _zoo, "list the built-in models"),
    ):
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=handler)


def _targets(args) -> int:
    from autotune.backends import backend_names, get_backend
    from autotune.paths import TARGETS, named_files
    from autotune.target import load_target

    rows = []
    for file in named_files(TARGETS).values():
        target = load_target(str(file.path))
        reach = "local" if target.is_local else (
            f"tracker {target.reach.host}:{target.reach.port} key {target.reach.key}")
        for name in backend_names():
            availability = get_backend(name).available(target)
            rows.append({"target": target.name, "backend": name, "device": target.device,
                         "reach": reach, "reachable": availability.ok,
                         "reason": availability.reason, "description": target.description,
                         "from": file.origin, "path": str(file.path)})
    if args.json:
        print_json(rows)
    else:
        print_table(["target", "backend", "reach", "reachable", "why not", "from"],
                    [[r["target"], r["backend"], r["reach"], "yes" if r["reachable"] else "no",
                      r["reason"], r["from"]] for r in rows])
    return 0


def _spaces(args) -> int:
    from autotune.paths import SPACES, named_files
    from autotune.space import load_space

    files = named_files(SPACES).values()
    spaces = [(load_space(str(file.path)), file) for file in files]
    if args.json:
        print_json([{"name": s.name, "configs": len(s.configs), "description": s.description,
                     "config_texts": [c.text for c in s.configs], "from": file.origin,
                     "path": str(file.path)} for s, file in spaces])
    else:
        print_table(["space", "configs", "from", "description"],
                    [[s.name, len(s.configs), file.origin, s.description]
                     for s, file in spaces])
    return 0


def _zoo(args) -> int:
    from autotune.zoo import ZOO

    rows = [_zoo_row(entry) for entry in ZOO.values()]
    if args.json:
        print_json(rows)
    else:
        print_table(["model", "metric", "size", "description", "weights from"],
                    [[r["name"], r["metric"], r["size"], r["description"], r["weights"]]
                     for r in rows])
    return 0


def _zoo_row(entry) -> dict:
    """One zoo entry as a row; listing never builds or exports a model."""
    missing = entry.missing()
    path = None if missing else entry.locate()
    size_bytes = path.stat().st_size if path is not None and path.exists() else None
    if missing:
        size = missing
    elif size_bytes is not None:
        size = f"{size_bytes / 2**20:.1f} MiB"
    elif entry.build is not None:
        size = "exported on first use" if entry.extra else "built on first use"
    else:
        size = "missing"
    return {"name": entry.name, "metric": entry.metric, "size_bytes": size_bytes, "size": size,
            "path": None if path is None else str(path), "description": entry.description,
            "weights": entry.source}

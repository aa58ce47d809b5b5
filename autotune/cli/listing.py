"""``autotune targets``, ``spaces`` and ``zoo``: what is available here; ``autotune runs``:
what a store holds."""

from __future__ import annotations

from datetime import UTC, datetime

from autotune.cli.common import add_store_option, open_store, print_json, print_table
from autotune.errors import InputError


def add_parser(commands) -> None:
    for name, handler, help_text in (
        ("targets", _targets, "list targets (built-in and your own) and whether each is reachable"),
        ("spaces", _spaces, "list the search spaces (built-in and your own)"),
        ("zoo", _zoo, "list the built-in models"),
        ("runs", _runs, "list the runs in a store, oldest first (run ids for report, "
                        "compare, pick; `latest` and `previous` work there too)"),
    ):
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=handler)
        if name == "runs":
            parser.add_argument("--model", default=None, help="only runs of this model")
            parser.add_argument("--target", default=None, help="only runs on this target")
            parser.add_argument("--status", default=None,
                                help="only runs with this status (finished, interrupted, "
                                     "running)")
            parser.add_argument("--since", default=None, metavar="DATE",
                                help="only runs created on or after this date (YYYY-MM-DD, "
                                     "UTC, or an ISO date and time)")
            parser.add_argument("--campaign", default=None, metavar="ID|latest",
                                help="only the runs of this campaign (`autotune run -f`); "
                                     "latest: the newest campaign")
            add_store_option(parser)


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
    # A [mixed] or [per_layer] space's configs come from the model: "per model", and its
    # listed configs are those it holds for every model (fp32, the uniform ones, the bases).
    if args.json:
        print_json([{"name": s.name, "configs": "per model" if s.size is None else s.size,
                     "description": s.description,
                     "config_texts": [c.text for c in s.configs], "from": file.origin,
                     "path": str(file.path)} for s, file in spaces])
    else:
        print_table(["space", "configs", "from", "description"],
                    [[s.name, "per model" if s.size is None else s.size, file.origin,
                      s.description] for s, file in spaces])
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


def _runs(args) -> int:
    store = open_store(args.store)
    since = _since(args.since)
    campaign = args.campaign
    if campaign == "latest":
        campaign = store.latest_campaign()
        if campaign is None:
            raise InputError(f"--campaign latest: no campaign in {store.shown_url} yet; "
                             f"start one with `autotune run -f FILE`")
    counts = store.trial_counts()
    rows = []
    for run in store.runs(campaign):
        if (args.model is not None and args.model not in (run.model, run.settings.model)
                or args.target is not None and args.target not in run.settings.targets
                or args.status is not None and run.status != args.status
                or since is not None and _moment(run.created_at) < since):
            continue
        statuses = counts.get(run.id, {})
        rows.append({"id": run.id, "campaign": run.campaign, "created_at": run.created_at,
                     "finished_at": run.finished_at, "status": run.status, "model": run.model,
                     "model_hash": run.model_hash, "space": run.space,
                     "targets": list(run.settings.targets),
                     "backends": list(run.settings.backends),
                     "tuning_trials": run.settings.tuning_trials,
                     "runtime": list(run.settings.runtime),
                     "trials": sum(statuses.values()), "ok": statuses.get("ok", 0),
                     "versions": run.versions})
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no runs in {store.shown_url}" + (" match" if _filtered(args) else ""))
    else:
        print_table(["run", "created", "status", "model", "targets", "backends", "tuning",
                     "ok/trials", "runtime", "campaign"],
                    [[r["id"], r["created_at"][:16], r["status"], r["model"],
                      ",".join(r["targets"]), ",".join(r["backends"]), r["tuning_trials"],
                      f"{r['ok']}/{r['trials']}", " ".join(r["runtime"]) or "installed",
                      r["campaign"]] for r in rows])
    return 0


def _filtered(args) -> bool:
    return any(value is not None for value in (args.model, args.target, args.status,
                                                args.since, args.campaign))


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return _moment(text)
    except ValueError:
        raise InputError(f"--since {text!r}: not a date (YYYY-MM-DD)") from None


def _moment(text: str) -> datetime:
    """An ISO date or time; one without a zone is UTC (as the store's are)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

"""``autotune doctor``: what this machine has for each backend and target, with the fix for
what is missing. Exit 0 when the default run can measure on every backend it uses, else 1."""

from __future__ import annotations

from autotune.cli.common import print_json, print_table


def add_parser(commands) -> None:
    help_text = ("check what this machine has for each backend and target (compilers, CPU "
                 "features, devices, trackers), with the fix for what is missing")
    parser = commands.add_parser("doctor", help=help_text, description=help_text)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from autotune.backends import backend_names
    from autotune.cli.run import default_backends
    from autotune.doctor import backend_checks, default_run_ready, host_checks
    from autotune.settings import DEFAULT_TARGET
    from autotune.target import known_targets

    needed_backends = default_backends()
    checks = host_checks() + backend_checks(known_targets(), backend_names(), DEFAULT_TARGET,
                                            needed_backends)
    ready = default_run_ready(checks)
    if args.json:
        print_json({"default_run_ready": ready, "checks": [check.to_json() for check in checks]})
    else:
        print_table(["scope", "check", "state", "found", "fix"],
                    [[check.scope, check.what, _state(check), check.found, check.fix]
                     for check in checks])
        missing = [f"{check.scope}: {check.what}" for check in checks
                   if check.needed and not check.ok]
        print(f"\ndefault run ({DEFAULT_TARGET}, {' and '.join(needed_backends)}): "
              + ("ready" if ready else f"not ready, missing {'; '.join(missing)}"))
    return 0 if ready else 1


def _state(check) -> str:
    if check.ok:
        return "ok"
    return "MISSING" if check.fix else "no"

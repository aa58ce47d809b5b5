"""``autotune worker``: make this machine a remote device on a TVM RPC tracker.

Started by a user on the device (an ARM board, a GPU server); runs until killed.
"""

from __future__ import annotations

from autotune.errors import InputError


def add_parser(commands) -> None:
    help_text = ("serve this device on a TVM RPC tracker under KEY: TVM RPC plus the suite's "
                 "own device functions, for targets whose [reach] names that tracker and key")
    parser = commands.add_parser("worker", help=help_text, description=help_text)
    from autotune.backends.device import add_worker_arguments

    add_worker_arguments(parser)
    parser.set_defaults(handler=_worker)


def _worker(args) -> int:
    from autotune.backends.device import parse_address, serve

    try:
        host, port = parse_address(args.tracker)
    except ValueError as error:
        raise InputError(f"--tracker: {error}") from None
    serve(host, port, args.key, host=args.host, port=args.port, emulated=args.emulated)
    return 0

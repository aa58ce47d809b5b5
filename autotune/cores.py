"""The cores a local target's trials run on, and keeping the driver off them.

A target's ``cores`` picks a fixed set of this host's CPUs: ``cores = N`` the last N the run
may use (CPU 0 takes most interrupts and housekeeping, so it is left to the driver first),
``cores = "0-3"`` exactly those, ``cores = 0`` all of them. The worker is pinned to the set
and its runtimes' thread pools are sized to it; the driver (its store writes, scoring and
the threads that feed other targets) moves to the cores left over, when there are any.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from autotune.errors import InputError

log = logging.getLogger("autotune")


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``"0-3,6"`` -> (0, 1, 2, 3, 6); ValueError says what is wrong."""
    cpus: set[int] = set()
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"expected a count or CPU numbers and ranges such as \"0-3,6\", "
                             f"got {text!r}")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"range {part!r} runs backwards")
        cpus.update(range(low, high + 1))
    if not cpus:
        raise ValueError("no CPU given")
    return tuple(sorted(cpus))


def target_cpus(target, allowed: Collection[int]) -> tuple[int, ...]:
    """The CPUs ``target``'s trials run on, out of ``allowed`` (this run's CPUs).

    Raises InputError when the target names CPUs this run may not use.
    """
    allowed = sorted(allowed)
    if target.cpu_list:
        missing = sorted(set(target.cpu_list) - set(allowed))
        if missing:
            raise InputError(f"{target.path or target.name}: cores: CPUs "
                             f"{', '.join(map(str, missing))} are not among those this run "
                             f"may use ({', '.join(map(str, allowed))})")
        return tuple(target.cpu_list)
    if target.cores:
        return tuple(allowed[-target.cores:])
    return tuple(allowed)


def pin_process(cpus: Collection[int]) -> None:
    """Move every thread of this process onto ``cpus`` (Linux affinity is per thread; threads
    started later inherit it from the thread that starts them)."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that ended meanwhile


@contextmanager
def driver_kept_off(timing_cpus: Collection[int]) -> Iterator[tuple[int, ...]]:
    """Run the block with this process on the CPUs that no local target times on; yields
    them (all CPUs when none are left over, which is then logged once at debug level)."""
    if not hasattr(os, "sched_setaffinity") or not timing_cpus:
        yield allowed_cpus()
        return
    allowed = allowed_cpus()
    rest = tuple(cpu for cpu in allowed if cpu not in set(timing_cpus))
    if not rest:
        log.debug("the driver cannot be kept off the timing cores: local targets time on "
                  "every CPU this run may use (%s)", ",".join(map(str, allowed)))
        yield allowed
        return
    pin_process(rest)
    try:
        yield rest
    finally:
        pin_process(allowed)

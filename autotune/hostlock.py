"""One thing measures at a time on a host: a readers-writer lock across every autotune process
of this user on this machine.

Timing on this host's cores holds the lock exclusive; heavy host-side work for any target
(quantizing, compiling, MetaSchedule tuning, cross-compiling for a board) holds it shared.
So a board's compile never runs while host-cpu is timing, several compiles may run
together, and two autotune runs on one host never time over each other.

Built on flock(2) on files in a per-user runtime folder: a lock belongs to an open file, so
it works across processes and dies with its holder (a worker killed for its timeout leaves
no lock behind). flock favours no one, so a turnstile (a second file, held exclusive while
queueing for the lock) keeps a waiting timer from being starved by back-to-back compiles:
whoever queues first gets the lock next. Nobody takes the turnstile while holding the lock,
so the two cannot deadlock; a holder of the shared lock releases it before asking for the
exclusive one (never upgrades), for the same reason.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("autotune")

# Where the lock files live; unset: $XDG_RUNTIME_DIR/autotune, else /tmp/autotune-UID.
LOCK_DIR_ENV = "AUTOTUNE_LOCK_DIR"
EXCLUSIVE, SHARED = "exclusive", "shared"
_FLAGS = {EXCLUSIVE: fcntl.LOCK_EX, SHARED: fcntl.LOCK_SH}


def lock_dir() -> Path:
    """This user's lock folder on this host (every autotune process of the user shares it)."""
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "autotune"
    return Path(tempfile.gettempdir()) / f"autotune-{os.getuid()}"


@dataclass
class Held:
    """A held lock: how long it took to get it (0.0 when it was free)."""

    mode: str
    waited_s: float = 0.0


@contextmanager
def host_lock(mode: str, why: str, waiting_flag: Path | None = None) -> Iterator[Held]:
    """Hold the host lock in ``mode`` (EXCLUSIVE to time on this host, SHARED for heavy
    host-side work) for the ``with`` block.

    Args:
        mode: EXCLUSIVE or SHARED.
        why: what the lock is for, in the log line a wait writes.
        waiting_flag: a file that exists while this process waits (``run_isolated`` does not
            count that time against the trial's time limit).

    Yields:
        The held lock, with the seconds spent waiting for it.
    """
    if mode not in _FLAGS:
        raise ValueError(f"host lock mode must be {EXCLUSIVE!r} or {SHARED!r}, not {mode!r}")
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    turnstile = os.open(folder / "turnstile", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    lock = os.open(folder / "host.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    held = Held(mode)
    started = time.perf_counter()
    waiting = False
    try:
        for fd, flag in ((turnstile, fcntl.LOCK_EX), (lock, _FLAGS[mode])):
            try:
                fcntl.flock(fd, flag | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waiting:
                    waiting = True
                    log.info("waiting for the host lock (%s, to %s): another process is "
                             "%s on this host", mode, why,
                             "compiling or timing" if mode == EXCLUSIVE else "timing")
                    if waiting_flag is not None:
                        waiting_flag.write_text(str(os.getpid()))
                fcntl.flock(fd, flag)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        held.waited_s = time.perf_counter() - started if waiting else 0.0
        if waiting:
            log.info("host lock (%s) taken after %.2f s", mode, held.waited_s)
            if waiting_flag is not None:
                waiting_flag.unlink(missing_ok=True)
        yield held
    finally:
        # Unlock explicitly: a child forked while the lock was held shares the open file, and
        # a close alone would leave the lock held as long as that child lives.
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
        os.close(turnstile)
        if waiting_flag is not None:
            waiting_flag.unlink(missing_ok=True)


_LOOPBACK = ("localhost", "::1")


def times_on_this_host(target) -> bool:
    """Whether timing on ``target`` runs on this host's cores: a local target, or a device
    reached through a tracker on this host (an emulated board, a test's worker). A real board
    registered on a tracker here is counted too: it then waits for host timing, which costs
    time, never a figure."""
    if target.is_local:
        return True
    host = (target.reach.host or "").lower()
    return host.startswith("127.") or host in _LOOPBACK or host == _hostname()


def _hostname() -> str:
    import platform

    return platform.node().lower()

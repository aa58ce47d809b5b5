"""The machine's state during a measurement's timed window, from Linux ``/proc`` and ``/sys``.

A latency on a shared machine is partly the neighbours': another process on the cores the
timed code runs on, or a hypervisor giving those vCPUs to another guest (steal), slows it.
``snapshot`` reads the counters at one instant; ``window`` turns two snapshots into a
``MachineState``: other processes' share and steal's share of the measured process's cores,
the load average and the mean CPU frequency. A machine that lacks a file (macOS, some
containers) gives None for what that file would have said, never an exception.

``ContentionLimits`` says when a window was contended; the driver measures such a pass again
and flags the trial if it stays so, and ``autotune compare`` does not call a change on it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from autotune.outcome import MachineState

PROC_STAT = Path("/proc/stat")
PROC_LOADAVG = Path("/proc/loadavg")
PROC_CPUINFO = Path("/proc/cpuinfo")
SYS_CPU = Path("/sys/devices/system/cpu")

# /proc/stat's per-CPU fields, in order. guest and guest_nice are already counted in user
# and nice, so they are left out of every sum.
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_BUSY = ("user", "nice", "system", "irq", "softirq")  # time some process (or the kernel) ran


@dataclass(frozen=True)
class Snapshot:
    """The counters at one instant. ``cpu_seconds`` maps a CPU id (-1: the machine's total
    line) to its ``STAT_FIELDS`` in seconds; None where a file could not be read."""

    wall_s: float  # time.perf_counter()
    cpus: tuple[int, ...]  # the CPUs this process may run on
    own_cpu_s: float  # this process's CPU time, every thread, and its waited-for children
    cpu_seconds: dict[int, dict[str, float]] | None
    load_1m: float | None
    freq_mhz: float | None  # mean over ``cpus``


def snapshot() -> Snapshot:
    """Read the counters now (a few file reads, well under a millisecond per CPU)."""
    times = os.times()
    own = time.process_time() + times.children_user + times.children_system
    cpus = allowed_cpus()
    return Snapshot(wall_s=time.perf_counter(), cpus=cpus, own_cpu_s=own,
                    cpu_seconds=read_cpu_seconds(), load_1m=read_load_1m(),
                    freq_mhz=read_freq_mhz(cpus))


def window(before: Snapshot, after: Snapshot) -> MachineState:
    """What the machine did between two snapshots, on the CPUs the process may run on.

    Shares are of the window's wall time times those CPUs: ``other_share`` is their busy
    time (user, nice, system, irq, softirq) minus this process's own CPU time, ``steal_share``
    their steal time. Where ``/proc/stat`` has no line for one of them (a container's
    virtualised view), the machine's total line stands in, over every CPU it counts.
    """
    wall_s = max(after.wall_s - before.wall_s, 0.0)
    own_s = max(after.own_cpu_s - before.own_cpu_s, 0.0)
    cpus = after.cpus
    other = steal = own_share = None
    delta = _delta(before.cpu_seconds, after.cpu_seconds, cpus)
    if delta is not None and wall_s > 0:
        counted, busy_s, steal_s = delta
        capacity_s = wall_s * counted
        other = min(max(busy_s - own_s, 0.0) / capacity_s, 1.0)
        steal = min(steal_s / capacity_s, 1.0)
    if wall_s > 0 and cpus:
        own_share = min(own_s / (wall_s * len(cpus)), 1.0)
    freqs = [f for f in (before.freq_mhz, after.freq_mhz) if f is not None]
    return MachineState(wall_s=wall_s, cpus=len(cpus), other_share=other, steal_share=steal,
                        own_share=own_share, load_1m=after.load_1m,
                        freq_mhz=sum(freqs) / len(freqs) if freqs else None)


def _delta(before: dict | None, after: dict | None,
           cpus: tuple[int, ...]) -> tuple[int, float, float] | None:
    """(CPUs counted, busy seconds, steal seconds) between two readings, or None."""
    if before is None or after is None:
        return None
    if cpus and all(cpu in before and cpu in after for cpu in cpus):
        counted = cpus
    elif -1 in before and -1 in after:
        counted = (-1,)
    else:
        return None
    busy = sum(after[c][name] - before[c][name] for c in counted for name in _BUSY)
    steal = sum(after[c]["steal"] - before[c]["steal"] for c in counted)
    count = len(counted) if counted != (-1,) else len([c for c in after if c >= 0]) or 1
    return count, busy, steal


def allowed_cpus() -> tuple[int, ...]:
    """The CPU ids this process may run on (its affinity; every CPU where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def read_cpu_seconds(path: Path = PROC_STAT) -> dict[int, dict[str, float]] | None:
    """``/proc/stat``'s CPU lines in seconds: CPU id -> field -> seconds (-1: the total)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return parse_cpu_seconds(text, os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def parse_cpu_seconds(text: str, ticks_per_s: int) -> dict[int, dict[str, float]] | None:
    """The CPU lines of a ``/proc/stat`` text (counts of ``ticks_per_s`` ticks), in seconds."""
    found: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        match = re.match(r"cpu(\d*)\s+(.*)", line)
        if not match:
            continue
        values = [int(value) for value in match.group(2).split()]
        values += [0] * (len(STAT_FIELDS) - len(values))  # old kernels lack steal
        cpu = int(match.group(1)) if match.group(1) else -1
        found[cpu] = {name: values[i] / ticks_per_s for i, name in enumerate(STAT_FIELDS)}
    return found or None


def read_load_1m(path: Path = PROC_LOADAVG) -> float | None:
    """The one-minute load average (every CPU of the machine); None where unknown."""
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_freq_mhz(cpus: tuple[int, ...], sys_cpu: Path = SYS_CPU,
                  cpuinfo: Path = PROC_CPUINFO) -> float | None:
    """Mean current frequency of ``cpus`` in MHz: cpufreq's ``scaling_cur_freq`` where the
    kernel has it, else ``/proc/cpuinfo``'s "cpu MHz" (a VM's is often its nominal clock)."""
    found = []
    for cpu in cpus:
        try:
            found.append(int((sys_cpu / f"cpu{cpu}" / "cpufreq" / "scaling_cur_freq")
                             .read_text()) / 1000)
        except (OSError, ValueError):
            break
    if found and len(found) == len(cpus):
        return sum(found) / len(found)
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    by_cpu = cpuinfo_mhz(text)
    chosen = [by_cpu[cpu] for cpu in cpus if cpu in by_cpu] or list(by_cpu.values())
    return sum(chosen) / len(chosen) if chosen else None


def cpuinfo_mhz(text: str) -> dict[int, float]:
    """CPU id -> "cpu MHz" of a ``/proc/cpuinfo`` text (x86; other CPUs may not say)."""
    found, processor = {}, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            processor = int(value)
        elif key == "cpu MHz" and processor is not None:
            found[processor] = float(value)
    return found


@dataclass(frozen=True)
class ContentionLimits:
    """When a timed window counts as contended; 0 turns a check off.

    ``other_share`` 0.10: other processes took more than a tenth of the trial's cores. A
    neighbour on a core the timed code uses takes turns with it, so its share of those cores
    is roughly the share of the timed code's time it can cost (less where the timed code
    leaves cores idle); a tenth is twice ``autotune compare``'s default 5% threshold, so a
    window past it can make a change compare would call. It leaves room for what always runs
    beside a trial: the run's own watchdog (``worker.run_isolated`` polling the worker's
    memory) counts as another process; polling every 50 ms it used 6.6% of one core on the
    2-core VM this was built on, so it polls every 200 ms (a quarter of that).
    ``steal_share`` 0.05: the hypervisor ran other guests on those vCPUs a twentieth of the
    time. Steal accrues only while a vCPU wants to run, so it lands in the timed code
    directly; its limit is compare's threshold itself.
    """

    other_share: float = 0.10
    steal_share: float = 0.05
    # The reference kernel (autotune.canary) ran this much slower than its fastest on these
    # CPUs. Off by default: on the 2-vCPU VM (benchmarks/canary.py) a 10% limit flagged 81%
    # of the windows where digits-cnn fp32 ran 15% slower, but also 45% of the others, and
    # followed int8 less (r 0.23); every pass records the reading, so a limit can be set
    # from a store's own trials.
    canary_slowdown: float = 0.0

    def __post_init__(self) -> None:
        for name in ("other_share", "steal_share", "canary_slowdown"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"contention limit {name} must be between 0 and 1")

    def exceeded(self, state: MachineState | None) -> bool:
        """Whether ``state`` (None: unknown, never contended) is past either limit."""
        if state is None:
            return False
        slowdown = None if state.canary_ratio is None else state.canary_ratio - 1
        return (_past(state.other_share, self.other_share)
                or _past(state.steal_share, self.steal_share)
                or _past(slowdown, self.canary_slowdown))


CONTENTION_LIMITS = ContentionLimits()


def _past(value: float | None, limit: float) -> bool:
    return limit > 0 and value is not None and value > limit

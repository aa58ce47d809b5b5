"""Memory bandwidth per cache level, measured by a numpy kernel that runs on the device itself.

A level's roof must be an upper bound on what the hardware does: a bandwidth measured too
low makes a bound too high, and a trial would then beat it. So one call of the kernel
streams a level-sized buffer many times (``np.add.reduce`` over a stride-0 view: ``out +=
buffer``, once per pass, inside numpy's C loop), which amortizes the call overhead over
hundreds of MiB; the fastest sample counts; a level whose sample is not far above the call
overhead is reported as not measured, and the caller keeps its estimate.

Imports numpy and the standard library only: ``autotune worker`` on a remote device (numpy
and TVM installed, nothing else of the suite's dependencies) runs the same code.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
# Bytes one call streams per thread: hundreds of passes over an L1-sized buffer, so the call
# overhead (microseconds) is a fraction of a percent of a sample.
BYTES_PER_CALL = 256 << 20
# A sample must last this many times the overhead of an empty call to be trusted.
OVERHEAD_FACTOR = 20.0


@dataclass(frozen=True)
class LevelSpec:
    """A level to measure: its name, its size (per core when ``private``), and whether each
    core has its own (L1, L2) or all share it (L3). DRAM is the level with no size."""

    name: str
    size_bytes: int | None
    private: bool = False


def sysfs_cache_sizes(root: Path = SYSFS_CACHE) -> dict[str, int]:
    """This machine's data cache sizes by level (``{"l1": ..., "l2": ..., "l3": ...}``),
    from Linux's sysfs; empty where sysfs does not say."""
    sizes: dict[str, int] = {}
    for index in sorted(root.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or not size:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        value = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        sizes[f"l{level}"] = value
    return sizes


def working_set_bytes(levels: list[LevelSpec], index: int, dram_bytes: int) -> int:
    """The bytes one thread streams to measure ``levels[index]``: between the level below
    (geometric middle) and this one, so it fits this level and not the one below; L1 at half
    its size; DRAM at ``dram_bytes`` and at least four times the largest cache."""
    level = levels[index]
    if level.size_bytes is None:
        largest = max((lv.size_bytes for lv in levels if lv.size_bytes), default=0)
        return max(dram_bytes, 4 * largest)
    if index == 0 or levels[index - 1].size_bytes is None:
        return level.size_bytes // 2
    return int(math.sqrt(levels[index - 1].size_bytes * level.size_bytes))


@dataclass(frozen=True)
class LevelFigure:
    """One level's measured bandwidth (None with the reason when not trusted)."""

    name: str
    working_set_bytes: int
    bandwidth_gbs: float | None
    single_thread_gbs: float | None
    all_threads_gbs: float | None
    threads: int
    best_call_ms: float
    overhead_ms: float
    reason: str = ""

    def to_json(self) -> dict:
        return asdict(self)


class _Stream:
    """``out += buffer`` ``passes`` times in one numpy call; the bytes it moves."""

    def __init__(self, working_set_bytes: int, seed: int,
                 bytes_per_call: int = BYTES_PER_CALL) -> None:
        elements = max(working_set_bytes // 8, 16)  # buffer + out
        self.passes = max(2, bytes_per_call // (12 * elements))
        self.buffer = np.random.default_rng(seed).random(elements, dtype=np.float32)
        self.out = np.zeros(elements, np.float32)
        self.view = np.lib.stride_tricks.as_strided(self.buffer, (self.passes, elements),
                                                    (0, self.buffer.itemsize))
        # The first pass copies (a read and a write), every later one reads two and writes one.
        self.bytes = (2 + 3 * (self.passes - 1)) * elements * self.buffer.itemsize

    def __call__(self) -> None:
        np.add.reduce(self.view, axis=0, out=self.out)


def _empty_call(seed: int) -> _Stream:
    """The kernel on 16 elements, twice: what a call costs with (next to) nothing to move."""
    return _Stream(64, seed, bytes_per_call=0)


def _fastest_s(call, min_time_s: float, min_runs: int = 3) -> float:
    call()  # warm: pages touched, caches filled
    best, runs, began = float("inf"), 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - began < min_time_s:
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best


def _on_threads(pool: ThreadPoolExecutor, streams: list[_Stream]):
    def call() -> None:
        for future in [pool.submit(stream) for stream in streams]:
            future.result()
    return call


def measure_level(name: str, working_set: int, threads: int, min_time_s: float,
                  shared: bool) -> LevelFigure:
    """The faster of one thread streaming ``working_set`` bytes and ``threads`` threads at
    once, each its own buffer: ``working_set`` each for a private level (every core its own
    cache), a share of it when ``shared`` (one cache for all)."""
    single = _Stream(working_set, 0)
    single_s = _fastest_s(single, min_time_s)
    overhead_s = _fastest_s(_empty_call(0), min(min_time_s, 0.05))
    single_gbs = single.bytes / single_s / 1e9
    parallel_gbs, parallel_s, parallel_overhead_s = None, float("inf"), 0.0
    share = working_set // threads if shared else working_set
    if threads > 1 and share >= 4096:
        streams = [_Stream(share, seed) for seed in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            parallel_s = _fastest_s(_on_threads(pool, streams), min_time_s)
            idle = [_empty_call(seed) for seed in range(threads)]
            parallel_overhead_s = _fastest_s(_on_threads(pool, idle), min(min_time_s, 0.05))
        parallel_gbs = sum(s.bytes for s in streams) / parallel_s / 1e9
    use_parallel = parallel_gbs is not None and parallel_gbs > single_gbs
    best_s, overhead = ((parallel_s, parallel_overhead_s) if use_parallel
                        else (single_s, overhead_s))
    figure = max(single_gbs, parallel_gbs or 0.0)
    reason = ""
    if not best_s >= OVERHEAD_FACTOR * overhead:
        reason = (f"a call ({best_s * 1e3:.3f} ms) is not {OVERHEAD_FACTOR:g}x the call "
                  f"overhead ({overhead * 1e3:.3f} ms)")
    elif not math.isfinite(figure) or figure <= 0:
        reason = "no finite figure"
    return LevelFigure(name, working_set, None if reason else figure, single_gbs,
                       parallel_gbs, threads, best_s * 1e3, overhead * 1e3, reason)


def measure_levels(levels: list[LevelSpec], threads: int, min_time_s: float,
                   dram_bytes: int = 256 << 20) -> list[LevelFigure]:
    """Each level's bandwidth, smallest level first."""
    figures = []
    for index, level in enumerate(levels):
        working_set = working_set_bytes(levels, index, dram_bytes)
        # A shared level's share per thread must still overflow the private level below it.
        below = levels[index - 1].size_bytes if index else None
        shared = not level.private and (below is None
                                        or working_set // max(threads, 1) > 2 * below)
        figures.append(measure_level(level.name, working_set, threads, min_time_s, shared))
    return figures

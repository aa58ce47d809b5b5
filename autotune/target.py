"""Targets: one TOML file per piece of hardware, saying how to reach it and what it can do.

The file's common keys are read here; each backend's table (``[NAME]``, NAME a registered
backend) is checked by that backend (``Backend.check_target_table``) and kept as read.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from autotune.backends import backend_names, get_backend
from autotune.cores import parse_cpu_list
from autotune.errors import InputError
from autotune.paths import TARGETS, named_files, resolve_named_file
from autotune.target_spec import CACHE_LEVELS, DRAM, PRECISIONS, MemoryLevel, Reach, Target
from autotune.tomlfile import Table, read_toml

__all__ = ["PRECISIONS", "MemoryLevel", "Reach", "Target", "known_targets", "load_target",
           "parse_target"]

# The tables every target file may have, whatever its backends.
_TABLES = ("reach", "roofline", "cost")


def load_target(name_or_path: str) -> Target:
    path = resolve_named_file(name_or_path, TARGETS)
    return parse_target(read_toml(path), path)


def known_targets() -> list[Target]:
    """Every target a NAME finds: the user's folders first, then the built-in ones."""
    return [load_target(str(file.path)) for file in named_files(TARGETS).values()]


def parse_target(data: dict, path: Path) -> Target:
    top = Table(data, path)
    description = top.get("description", str, "")
    device = top.get("device", str, choices=("cpu", "gpu"))
    arch = top.get("arch", str, choices=("x86_64", "aarch64", "cuda", "intel-gpu"))
    cores, cpu_list = _cores(top)
    cores = _spare_cores(top, cores, cpu_list)
    emulated = top.get("emulated", bool, False)

    reach_table = top.table("reach")
    kind = reach_table.get("kind", str, "local", choices=("local", "tracker"))
    if kind == "tracker":
        reach = Reach(kind, reach_table.get("host", str), reach_table.get("port", int),
                      reach_table.get("key", str))
    else:
        reach = Reach()
    reach_table.finish()

    backend_tables, usable = _backend_tables(top, data)

    roofline = top.table("roofline")
    peaks, derivation = _isa_peaks(roofline, cores, cpu_list)
    for precision in PRECISIONS:
        value = roofline.get(f"{precision}_gops", (int, float), None)
        if value is not None:
            peaks[precision] = float(value)
    bandwidth = roofline.get("memory_bandwidth_gbs", (int, float), None)
    levels = _memory_levels(roofline, bandwidth)
    roofline.finish()
    cost = top.table("cost")
    price = cost.get("price_per_hour", (int, float), None)
    if price is not None and price <= 0:
        raise InputError(f"{cost.where('price_per_hour')}: must be above 0 (USD per hour); "
                         f"got {price!r}")
    cost.finish()
    _no_unknown_tables(top, data)
    top.finish()
    if not usable:
        needs = " or ".join(get_backend(name).target_needs for name in backend_names())
        raise InputError(f"{path}: a target needs {needs}")
    return Target(name=path.stem, description=description, device=device, arch=arch,
                  cores=cores, cpu_list=cpu_list, reach=reach, backend_tables=backend_tables,
                  peak_gops=peaks, peaks_derivation=derivation,
                  memory_bandwidth_gbs=None if bandwidth is None else float(bandwidth),
                  emulated=emulated, path=path, memory_levels=levels,
                  price_per_hour=None if price is None else float(price))


def _isa_peaks(roofline: Table, cores: int, cpu_list: tuple[int, ...]
               ) -> tuple[dict[str, float], str]:
    """``compute = "isa"``: the theoretical peaks of this machine's CPU for the target's
    cores (``autotune.cpu_peaks``); ``lN_gops`` figures in the table override them."""
    if roofline.get("compute", str, "table", choices=("table", "isa")) != "isa":
        return {}, ""
    from autotune.cpu_peaks import host_peaks

    count = cores or len(cpu_list) or (len(os.sched_getaffinity(0))
                                       if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return host_peaks(count)


def _memory_levels(roofline: Table, dram_gbs: float | None) -> tuple[MemoryLevel, ...]:
    """The caches the ``[roofline]`` table describes (``l1_kib`` and ``l1_bandwidth_gbs``
    ...; L1 and L2 per core, L3 shared), then DRAM at ``memory_bandwidth_gbs``.

    ``cache_sizes = "sysfs"``: the sizes are this machine's (Linux sysfs), the file's
    ``lN_kib`` only where sysfs says nothing. A level is known once it has a bandwidth.
    """
    from autotune.bandwidth import sysfs_cache_sizes

    source = roofline.get("cache_sizes", str, "target", choices=("target", "sysfs"))
    found = sysfs_cache_sizes() if source == "sysfs" else {}
    levels = []
    for name in CACHE_LEVELS:
        key = name.lower()
        kib = roofline.get(f"{key}_kib", int, None)
        level_gbs = roofline.get(f"{key}_bandwidth_gbs", (int, float), None)
        size = found.get(key) or (kib << 10 if kib is not None else None)
        if level_gbs is None:
            if kib is not None:
                raise InputError(f"{roofline.where(key + '_kib')}: a cache level needs its "
                                 f"bandwidth too ({key}_bandwidth_gbs)")
            continue
        if size is None:
            raise InputError(f"{roofline.where(key + '_bandwidth_gbs')}: a cache level needs "
                             f"its size ({key}_kib{' or sysfs' if source == 'sysfs' else ''})")
        levels.append(MemoryLevel(name, size, float(level_gbs), private=name != "L3",
                                  size_source="sysfs" if key in found else "target"))
    if levels and dram_gbs is None:
        raise InputError(f"{roofline.where('memory_bandwidth_gbs')}: cache levels need the "
                         "DRAM bandwidth below them")
    if dram_gbs is not None:
        levels.append(MemoryLevel(DRAM, None, float(dram_gbs)))
    return tuple(levels)


def _cores(top: Table) -> tuple[int, tuple[int, ...]]:
    """``cores``: a count (0: every core the run may use) or a CPU list such as "0-3"."""
    value = top.get("cores", (int, str), 0)
    if isinstance(value, str):
        try:
            cpu_list = parse_cpu_list(value)
        except ValueError as error:
            raise InputError(f"{top.where('cores')}: {error}") from None
        return len(cpu_list), cpu_list
    if value < 0:
        raise InputError(f"{top.where('cores')}: must be 0 (all), a positive count or a CPU "
                         f"list such as \"0-3\"")
    return value, ()


def _spare_cores(top: Table, cores: int, cpu_list: tuple[int, ...]) -> int:
    """``spare_cores = N`` with ``cores = 0``: every CPU the run may use but N (at least one
    left to time on), so the driver, the run's watchdog and the system do not share the
    timing cores: a 2-thread kernel on a 2-vCPU machine waits for its stalled half whenever
    anything else runs (docs/toggling.md). Resolved here, to the count ``cores`` means."""
    spare = top.get("spare_cores", int, 0)
    if spare < 0:
        raise InputError(f"{top.where('spare_cores')}: must be 0 or a positive count")
    if not spare or cores or cpu_list:
        return cores
    from autotune.cores import allowed_cpus

    return max(1, len(allowed_cpus()) - spare)


def _backend_tables(top: Table, data: dict) -> tuple[dict[str, dict], list[str]]:
    """Each backend's table, checked by that backend; and the backends it makes usable."""
    tables, usable = {}, []
    for name in backend_names():
        table = top.table(name)
        if get_backend(name).check_target_table(table):
            usable.append(name)
        table.finish()
        if name in data:
            tables[name] = data[name]
    return tables, usable


def _no_unknown_tables(top: Table, data: dict) -> None:
    """A table that is not a backend's, nor a common one, and no typo of either, is an error
    that lists the backends (a typo gets ``did you mean`` from ``Table.finish``)."""
    known = [*_TABLES, *backend_names()]
    for key in top.keys():
        if (isinstance(data[key], dict) and key not in known
                and not difflib.get_close_matches(key, known, n=1)):
            raise InputError(f"{top.where(key)}: unknown table: no backend of that name "
                             f"(backends: {', '.join(backend_names())}; other tables: "
                             f"{', '.join(_TABLES)})")

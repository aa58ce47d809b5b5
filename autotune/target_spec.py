"""The ``Target`` type: one piece of hardware, how to reach it and what it can do.

Loading a target from its TOML file is ``autotune.target``, which asks each backend to check
its own table; this module knows no backend, so backends can use the type.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4")
# The cache levels a target file may describe, smallest first; DRAM is the level below them.
CACHE_LEVELS = ("L1", "L2", "L3")
DRAM = "DRAM"


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the target's memory hierarchy with its estimated bandwidth.

    ``size_bytes``: per core when ``private`` (L1 and L2: every core has its own), for the
    whole target otherwise; None for DRAM, the level every working set fits. The bandwidth
    is the whole target's (all its cores), an estimate until ``autotune roofline`` measures it.
    """

    name: str
    size_bytes: int | None
    bandwidth_gbs: float
    private: bool = False
    size_source: str = "target"  # "target" (the file's figure) or "sysfs" (this machine's)


@dataclass(frozen=True)
class Reach:
    """How the target is reached: ``local``, or a TVM RPC tracker (host, port, key)."""

    kind: str = "local"
    host: str | None = None
    port: int | None = None
    key: str | None = None


@dataclass(frozen=True)
class Target:
    """A hardware target. ``cores == 0`` means every core of the host that runs the trial;
    ``cpu_list``, when the file names CPUs (``cores = "0-3"``), which ones (``autotune.cores``).

    ``backend_tables``: each backend's table of the target file (``[NAME]``) as read, checked
    by that backend when the file was loaded; only the backend reads what is inside.
    """

    name: str
    description: str
    device: str
    arch: str
    cores: int = 0
    cpu_list: tuple[int, ...] = ()
    reach: Reach = field(default_factory=Reach)
    backend_tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    peak_gops: dict[str, float] = field(default_factory=dict)
    # How ``peak_gops`` was derived when the file asks for this CPU's theoretical peaks
    # (``compute = "isa"``, ``autotune.cpu_peaks``); empty when they are the file's figures.
    peaks_derivation: str = ""
    memory_bandwidth_gbs: float | None = None
    emulated: bool = False
    path: Path | None = None
    memory_levels: tuple[MemoryLevel, ...] = ()  # caches, smallest first, then DRAM
    # USD per hour of the hardware (``[cost] price_per_hour``): cost per million inferences.
    price_per_hour: float | None = None

    def backend_table(self, backend: str) -> Mapping[str, Any]:
        """The target file's ``[backend]`` table; empty when the file has none."""
        return self.backend_tables.get(backend, {})

    @property
    def threads(self) -> int:
        """How many threads a trial on this target may use."""
        if self.cores:
            return self.cores
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    @property
    def is_local(self) -> bool:
        return self.reach.kind == "local"

    def __hash__(self) -> int:
        return hash(self.name)

"""Targets: one TOML file per piece of hardware, saying how to reach it and what it can do."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from autotune.errors import InputError
from autotune.paths import TARGETS_DIR, resolve_named_file
from autotune.tomlfile import Table, read_toml

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4")


@dataclass(frozen=True)
class Reach:
    """How the target is reached: ``local``, or a TVM RPC tracker (host, port, key)."""

    kind: str = "local"
    host: str | None = None
    port: int | None = None
    key: str | None = None


@dataclass(frozen=True)
class Target:
    """A hardware target. ``cores == 0`` means every core of the host that runs the trial."""

    name: str
    description: str
    device: str
    arch: str
    cores: int = 0
    reach: Reach = field(default_factory=Reach)
    openvino_device: str | None = None
    tvm_target: dict | None = None
    peak_gops: dict[str, float] = field(default_factory=dict)
    memory_bandwidth_gbs: float | None = None
    emulated: bool = False
    path: Path | None = None

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


def load_target(name_or_path: str) -> Target:
    path = resolve_named_file(name_or_path, TARGETS_DIR, "target")
    return parse_target(read_toml(path), path)


def builtin_targets() -> list[Target]:
    return [load_target(str(path)) for path in sorted(TARGETS_DIR.glob("*.toml"))]


def parse_target(data: dict, path: Path) -> Target:
    top = Table(data, path)
    description = top.get("description", str, "")
    device = top.get("device", str, choices=("cpu", "gpu"))
    arch = top.get("arch", str, choices=("x86_64", "aarch64", "cuda", "intel-gpu"))
    cores = top.get("cores", int, 0)
    if cores < 0:
        raise InputError(f"{top.where('cores')}: must be 0 (all) or a positive count")
    emulated = top.get("emulated", bool, False)

    reach_table = top.table("reach")
    kind = reach_table.get("kind", str, "local", choices=("local", "tracker"))
    if kind == "tracker":
        reach = Reach(kind, reach_table.get("host", str), reach_table.get("port", int),
                      reach_table.get("key", str))
    else:
        reach = Reach()
    reach_table.finish()

    openvino = top.table("openvino")
    openvino_device = openvino.get("device", str, None)
    openvino.finish()

    tvm = top.table("tvm")
    tvm_target = tvm.get("target", dict, None)
    if tvm_target is not None and "kind" not in tvm_target:
        raise InputError(f"{tvm.where('target')}: a TVM target dict needs a 'kind' "
                         f"(e.g. {{kind = \"llvm\"}})")
    tvm.finish()

    roofline = top.table("roofline")
    peaks = {}
    for precision in PRECISIONS:
        value = roofline.get(f"{precision}_gops", (int, float), None)
        if value is not None:
            peaks[precision] = float(value)
    bandwidth = roofline.get("memory_bandwidth_gbs", (int, float), None)
    roofline.finish()
    top.finish()
    if openvino_device is None and tvm_target is None:
        raise InputError(f"{path}: a target needs an [openvino] device or a [tvm] target")
    return Target(name=path.stem, description=description, device=device, arch=arch,
                  cores=cores, reach=reach, openvino_device=openvino_device,
                  tvm_target=tvm_target, peak_gops=peaks,
                  memory_bandwidth_gbs=None if bandwidth is None else float(bandwidth),
                  emulated=emulated, path=path)

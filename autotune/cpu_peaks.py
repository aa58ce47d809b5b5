"""A CPU's theoretical compute peaks per precision, from its instruction set, cores and clock.

A roof must be an upper bound. A micro-benchmark gives a lower bound on what the hardware
does (it did at least that), and on a shared machine often a low one: a 1024^3 MatMul
through OpenVINO measured 29 GOPS here while the machine was loaded, and OpenVINO's int8
convolutions then ran above its int8 MatMul's figure. The theoretical peak (cores x SIMD
lanes x FMA pipes x 2 x clock, as the Empirical Roofline Toolkit compares against) is an
upper bound as long as each factor is; this module picks each factor from the CPU's flags.

Per core and cycle, for a core with two FMA pipes (every x86 server core since Haswell and
Zen 2; a core with one only makes the figure loose, never wrong):

- fp32: lanes (16 with AVX-512, 8 with AVX2/FMA, 4 with SSE) x 2 pipes x 2 ops;
- int8: 4x fp32: ``vpdpbusd`` (VNNI) does four multiply-adds per 32-bit lane, and so do
  ``vpmaddubsw``'s 16-bit pairs at AVX2 throughput; AMX (``amx_int8``) 1024 multiply-adds
  per cycle;
- bf16: 2x fp32 with ``avx512_bf16`` (two multiply-adds per lane), AMX (``amx_bf16``) 512
  multiply-adds per cycle; fp32's otherwise (the runtime converts to fp32);
- fp16: 2x fp32 with ``avx512_fp16``; fp32's otherwise.

The clock is the highest the core may run at: cpufreq's ``cpuinfo_max_freq`` where the
kernel exposes it; in a VM, which shows only the nominal ``cpu MHz``, that times
``TURBO_ALLOWANCE`` (server turbo clocks run up to ~1.5x nominal: EPYC 7B13 2.45 -> 3.5 GHz).
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
CPUFREQ_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
TURBO_ALLOWANCE = 1.5
FMA_PIPES = 2


def isa_peaks(flags: set[str], cores: int, clock_ghz: float) -> dict[str, float]:
    """Theoretical GOPS per precision of ``cores`` cores with ``flags`` at ``clock_ghz``."""
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} & flags else 4
    fp32 = lanes * FMA_PIPES * 2  # ops per cycle per core
    int8 = 4 * fp32
    if "amx_int8" in flags:
        int8 = max(int8, 2 * 1024)
    bf16 = 2 * fp32 if "avx512_bf16" in flags else fp32
    if "amx_bf16" in flags:
        bf16 = max(bf16, 2 * 512)
    fp16 = 2 * fp32 if "avx512_fp16" in flags else fp32
    per_cycle = {"fp32": fp32, "fp16": fp16, "bf16": bf16, "int8": int8}
    return {precision: ops * cores * clock_ghz for precision, ops in per_cycle.items()}


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The first CPU's flags from ``/proc/cpuinfo``; empty where it cannot be read."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def max_clock_ghz(cpuinfo: Path = CPUINFO, cpufreq_max: Path = CPUFREQ_MAX
                  ) -> tuple[float | None, str]:
    """The highest clock the cores may run at, in GHz, and where that figure comes from."""
    try:
        return int(cpufreq_max.read_text()) / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    from autotune.machine_state import cpuinfo_mhz

    try:
        megahertz = max(cpuinfo_mhz(cpuinfo.read_text()).values())
    except (OSError, ValueError):
        return None, "no clock readable"
    return (megahertz / 1e3 * TURBO_ALLOWANCE,
            f"cpu MHz {megahertz:.0f} x {TURBO_ALLOWANCE:g} turbo allowance")


def host_peaks(cores: int) -> tuple[dict[str, float], str]:
    """This machine's theoretical peaks for ``cores`` cores, and how they were derived;
    empty (with the reason) where the flags or the clock cannot be read."""
    flags = cpu_flags()
    clock, clock_source = max_clock_ghz()
    if not flags or clock is None:
        return {}, "no /proc/cpuinfo flags or clock to derive peaks from"
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    extras = [name for name in ("avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                                "amx_int8", "amx_bf16") if name in flags]
    return (isa_peaks(flags, cores, clock),
            f"{cores} cores x {simd}{' + ' + ', '.join(extras) if extras else ''} at "
            f"{clock:.2f} GHz ({clock_source})")

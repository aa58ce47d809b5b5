"""The pure parts of benchmarks/toggling.py: /proc/stat windows, the mode split, the summary.

The benchmark's finding (docs/toggling.md) rests on these: a wrong jiffy diff would blame
or clear a co-tenant, a split that finds two modes in plain spread would invent toggling.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).parents[1] / "benchmarks" / "toggling.py"


def _load():
    # benchmarks/ is not a package that the tests' sys.path holds; load the script by path.
    spec = importlib.util.spec_from_file_location("toggling_bench", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


toggling = _load()

STAT_BEFORE = """cpu  300 0 60 900 10 0 5 20 0 0
cpu0 100 0 20 500 5 0 2 10 0 0
cpu1 200 0 40 400 5 0 3 10 0 0
intr 12345 0 0
ctxt 999
"""
# Over the window: cpu0 +60 user, +10 system, +20 idle, +10 steal (100 jiffies);
# cpu1 +10 user, +90 idle (100 jiffies).
STAT_AFTER = """cpu  370 0 70 1010 10 0 5 30 0 0
cpu0 160 0 30 520 5 0 2 20 0 0
cpu1 210 0 40 490 5 0 3 10 0 0
intr 22345 0 0
"""


def test_parse_proc_stat_reads_each_vcpu_and_skips_the_total():
    cpus = toggling.parse_proc_stat(STAT_BEFORE)
    assert sorted(cpus) == [0, 1]
    assert cpus[1]["user"] == 200 and cpus[1]["idle"] == 400 and cpus[0]["steal"] == 10


def test_cpu_window_gives_others_what_is_busy_beyond_our_own_time():
    before, after = (toggling.parse_proc_stat(t) for t in (STAT_BEFORE, STAT_AFTER))
    both = toggling.cpu_window(before, after, cpus=[0, 1], own_jiffies=30)
    assert both.jiffies == 200
    assert both.other_share == pytest.approx((70 + 10 - 30) / 200)
    assert both.steal_share == pytest.approx(10 / 200)
    assert both.own_share == pytest.approx(30 / 200)
    # Pinned to vCPU 1 alone, cpu0's busy time and steal are not ours to suffer.
    one = toggling.cpu_window(before, after, cpus=[1], own_jiffies=10)
    assert one.other_share == 0.0 and one.steal_share == 0.0 and one.jiffies == 100
    # Own time is never counted above the busy time (jiffy rounding of the two sources).
    assert toggling.cpu_window(before, after, cpus=[1], own_jiffies=50).other_share == 0.0


def test_cpu_window_of_an_empty_window_is_zero():
    before = toggling.parse_proc_stat(STAT_BEFORE)
    assert toggling.cpu_window(before, before, cpus=[0], own_jiffies=0).jiffies == 0


def test_split_modes_finds_two_speeds_and_not_plain_spread():
    fast = [0.33, 0.34, 0.32, 0.35, 0.33]
    slow = [0.82, 0.84, 0.75, 0.81]
    threshold = toggling.split_modes(fast + slow)
    assert threshold is not None and max(fast) < threshold < min(slow)
    # 20% spread around one speed is one mode, however it is ordered.
    assert toggling.split_modes([1.0, 1.1, 1.2, 0.95, 1.05, 1.15]) is None
    assert toggling.split_modes([1.0]) is None
    # The ratio that counts as two modes is the caller's.
    assert toggling.split_modes([1.0, 1.0, 1.3, 1.3], min_ratio=1.2) == pytest.approx(
        math.exp((math.log(1.0) + math.log(1.3)) / 2))


def test_correlation_is_pearson_and_none_without_variation():
    assert toggling.correlation([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert toggling.correlation([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert toggling.correlation([1, 2, 3], [5, 5, 5]) is None
    assert toggling.correlation([1, 2], [1, 2]) is None


def _block(cell, process, median_ms, other):
    return {"cell": cell, "process": process, "median_ms": median_ms, "other_share": other,
            "steal_share": 0.0, "rq_wait_share": other, "mhz": 2445.0}


def test_summarise_counts_modes_switching_processes_and_what_slowness_goes_with():
    blocks = [_block("a", 0, 0.33, 0.02), _block("a", 0, 0.80, 0.60),
              _block("a", 1, 0.34, 0.05), _block("a", 1, 0.33, 0.01),
              _block("b", 0, 1.20, 0.10), _block("b", 0, 1.30, 0.50)]
    rows = {row["cell"]: row for row in toggling.summarise(blocks, ["a", "b", "absent"])}
    assert set(rows) == {"a", "b"}
    a = rows["a"]
    assert (a["fast"], a["slow"], a["processes_switching"], a["processes"]) == (3, 1, 1, 2)
    assert a["slow_ms"] == 0.80 and a["other_share_slow"] == 0.60
    assert a["r_other"] > 0.9 and a["r_steal"] is None
    assert (rows["b"]["fast"], rows["b"]["slow"]) == (2, 0)


def test_openvino_config_changes_only_the_cells_setting():
    suite = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
             "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": "2"}
    assert toggling.openvino_config(suite, toggling.Cell("x")) == suite
    one = toggling.openvino_config(suite, toggling.Cell("x", threads=1, cpu_pinning=False,
                                                        latency_hint=False))
    assert one == {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": "1",
                   "INFERENCE_NUM_THREADS": "1", "ENABLE_CPU_PINNING": "NO"}

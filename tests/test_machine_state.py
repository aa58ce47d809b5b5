"""Machine state in every trial: the /proc arithmetic, the contention guard, and compare.

The arithmetic is checked on a synthetic pair of snapshots (known answers) and on this
machine's own /proc; the guard on real OpenVINO trials of digits-cnn, with real contention
made by busy-looping processes pinned to the cores the trial runs on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autotune.config import FP32
from autotune.machine_state import (
    CONTENTION_LIMITS,
    ContentionLimits,
    Snapshot,
    allowed_cpus,
    cpuinfo_mhz,
    parse_cpu_seconds,
    read_cpu_seconds,
    read_freq_mhz,
    read_load_1m,
    snapshot,
    window,
)
from autotune.outcome import CONTENDED, FLAG, MachineState, PassRecord
from autotune.regress import compare_trials
from autotune.trial import Trial

LINUX = Path("/proc/stat").exists()


def seconds(user=0.0, nice=0.0, system=0.0, idle=0.0, iowait=0.0, irq=0.0, softirq=0.0,
            steal=0.0) -> dict[str, float]:
    return {"user": user, "nice": nice, "system": system, "idle": idle, "iowait": iowait,
            "irq": irq, "softirq": softirq, "steal": steal}


def test_a_window_of_two_synthetic_snapshots_has_the_known_shares():
    # 2 s on CPUs 0 and 1 (4 CPU-seconds): busy 1.5 + 1.0 s, of which this process used 1.2 s;
    # steal 0.2 s. CPU 2 (not this process's) was fully busy and must not count.
    before = Snapshot(wall_s=10.0, cpus=(0, 1), own_cpu_s=5.0, load_1m=1.0, freq_mhz=2000.0,
                      cpu_seconds={0: seconds(), 1: seconds(), 2: seconds(),
                                   -1: seconds()})
    after = Snapshot(wall_s=12.0, cpus=(0, 1), own_cpu_s=6.2, load_1m=2.5, freq_mhz=3000.0,
                     cpu_seconds={0: seconds(user=1.0, system=0.3, irq=0.1, softirq=0.1,
                                             idle=0.4, steal=0.1),
                                  1: seconds(user=0.8, nice=0.2, idle=0.8, iowait=0.1,
                                             steal=0.1),
                                  2: seconds(user=2.0), -1: seconds(user=4.0)})
    state = window(before, after)
    assert state.wall_s == 2.0 and state.cpus == 2
    assert state.other_share == pytest.approx((2.5 - 1.2) / 4)
    assert state.steal_share == pytest.approx(0.2 / 4)
    assert state.own_share == pytest.approx(1.2 / 4)
    assert state.load_1m == 2.5 and state.freq_mhz == 2500.0
    assert state.summary() == ("other processes used 33% of 2 cores, steal 5%, load 2.50, "
                               "2500 MHz")


@pytest.mark.readme_claim("machine state: None where a file is missing")
def test_missing_files_give_none_never_an_exception(tmp_path):
    gone = tmp_path / "absent"
    assert read_cpu_seconds(gone) is None and read_load_1m(gone) is None
    assert read_freq_mhz((0, 1), sys_cpu=gone, cpuinfo=gone) is None
    bare = Snapshot(wall_s=1.0, cpus=(0,), own_cpu_s=0.0, cpu_seconds=None, load_1m=None,
                    freq_mhz=None)
    state = window(bare, Snapshot(wall_s=2.0, cpus=(0,), own_cpu_s=0.5, cpu_seconds=None,
                                  load_1m=None, freq_mhz=None))
    assert state.other_share is None and state.steal_share is None
    assert state.own_share == 0.5 and state.summary() == "machine state unknown"
    assert not CONTENTION_LIMITS.exceeded(state) and not CONTENTION_LIMITS.exceeded(None)


def test_a_container_view_without_this_cpus_line_falls_back_to_the_total():
    before = Snapshot(1.0, (5,), 0.0, {0: seconds(), 1: seconds(), -1: seconds()}, None, None)
    after = Snapshot(2.0, (5,), 0.1, {0: seconds(user=0.5), 1: seconds(user=0.3),
                                      -1: seconds(user=0.8, steal=0.2)}, None, None)
    state = window(before, after)  # over the 2 CPUs the total counts
    assert state.other_share == pytest.approx((0.8 - 0.1) / 2)
    assert state.steal_share == pytest.approx(0.1)


def test_proc_texts_parse():
    text = ("cpu  100 2 30 400 5 0 6 7 0 0\ncpu0 50 1 15 200 2 0 3 4 0 0\n"
            "cpu1 50 1 15 200 3 0 3 3\nintr 1 2 3\nctxt 99\n")
    parsed = parse_cpu_seconds(text, 100)
    assert set(parsed) == {-1, 0, 1}
    assert parsed[0] == seconds(0.5, 0.01, 0.15, 2.0, 0.02, 0.0, 0.03, 0.04)
    assert parsed[1]["steal"] == 0.03
    assert parse_cpu_seconds("intr 1\n", 100) is None
    assert cpuinfo_mhz("processor\t: 0\ncpu MHz\t\t: 2445.402\n\nprocessor\t: 1\n"
                       "cpu MHz\t\t: 3000.0\n") == {0: 2445.402, 1: 3000.0}


@pytest.mark.skipif(not LINUX, reason="reads Linux /proc")
def test_a_window_on_this_machines_proc_is_consistent():
    before = snapshot()
    start = time.process_time()
    while time.process_time() - start < 0.4:  # this process busy for 0.4 CPU-seconds
        pass
    state = window(before, snapshot())
    assert state.cpus == len(allowed_cpus()) == len(os.sched_getaffinity(0))
    assert state.wall_s >= 0.4
    assert state.own_share == pytest.approx(0.4 / (state.wall_s * state.cpus), rel=0.1)
    assert 0 <= state.other_share <= 1 and 0 <= state.steal_share <= 1
    # The CPUs' busy time holds this process's own: the two shares add up to at most all of
    # them (give or take /proc/stat's 10 ms ticks).
    assert state.own_share + state.other_share <= 1 + 0.03 * 2 / state.cpus
    assert state.load_1m is not None and state.load_1m >= 0
    assert state.freq_mhz is None or state.freq_mhz > 100


def test_contention_limits_judge_either_share_and_zero_turns_a_check_off():
    busy = MachineState(1.0, 2, other_share=0.34, steal_share=0.0)
    stolen = MachineState(1.0, 2, other_share=0.01, steal_share=0.06)
    quiet = MachineState(1.0, 2, other_share=0.05, steal_share=0.01)
    assert CONTENTION_LIMITS.exceeded(busy) and CONTENTION_LIMITS.exceeded(stolen)
    assert not CONTENTION_LIMITS.exceeded(quiet)
    assert not ContentionLimits(0, 0.05).exceeded(busy)
    assert not ContentionLimits(0.10, 0).exceeded(stolen)
    with pytest.raises(ValueError):
        ContentionLimits(other_share=1.5)


def test_a_slow_reference_kernel_is_contention_and_its_reference_is_the_fastest(tmp_path):
    from autotune.canary import KEPT_READINGS, judge, reference_path

    shared_core = MachineState(1.0, 1, other_share=0.0, steal_share=0.0, canary_ratio=1.4)
    limits = ContentionLimits(canary_slowdown=0.10)
    assert limits.exceeded(shared_core)
    assert not limits.exceeded(dataclasses.replace(shared_core, canary_ratio=1.05))
    assert not CONTENTION_LIMITS.exceeded(shared_core)  # off by default: recorded only
    assert "reference kernel 1.40x its fastest" in shared_core.summary()

    cpus = (1,)
    assert judge(8.0, cpus, tmp_path) == 1.0  # the first reading is the reference
    assert judge(12.0, cpus, tmp_path) == 1.5
    assert judge(6.0, cpus, tmp_path) == 1.0 and judge(9.0, cpus, tmp_path) == 1.5
    assert judge(9.0, (0,), tmp_path) == 1.0  # per CPU set
    reference_path(cpus, tmp_path).write_text("{cut short")  # a crash mid-write: start again
    assert judge(7.0, cpus, tmp_path) == 1.0
    for _ in range(KEPT_READINGS):  # the reference follows the latest readings only
        judge(10.0, cpus, tmp_path)
    assert judge(10.0, cpus, tmp_path) == 1.0


def test_pass_records_carry_machine_state_through_json_and_old_records_still_load():
    record = PassRecord(1.5, 0.02, 50, machine=MachineState(1.1, 2, 0.34, 0.02, 0.45, 3.2,
                                                            2445.4),
                        contended=True, remeasured=2)
    assert PassRecord.from_json(record.to_json()) == record
    old = PassRecord.from_json({"median_ms": 1.5, "spread": 0.02, "samples": 50,
                                "status": "ok", "error": ""})
    assert old.machine is None and not old.contended and old.remeasured == 0


# compare


def samples(seed: int, scale: float = 1.0, count: int = 200) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in 2.0 * rng.lognormal(0.0, 0.03, count) * scale]


def measured(run_id: str, latencies: list[float], machine: MachineState | None = None,
             contended: bool = False) -> Trial:
    return Trial(run_id=run_id, model="m", model_hash="h", config=FP32, backend="openvino",
                 target="host-cpu", status="ok", latencies_ms=latencies,
                 latency_median_ms=float(np.median(latencies)),
                 passes=[PassRecord(float(np.median(latencies)), 0.01, len(latencies),
                                    machine=machine, contended=contended)])


BUSY = MachineState(1.0, 2, other_share=0.34, steal_share=0.02, load_1m=3.1)
QUIET = MachineState(1.0, 2, other_share=0.01, steal_share=0.0, load_1m=0.2)


@pytest.mark.readme_claim("compare gives a contended pair the finding contended, not a latency "
                          "verdict")
def test_compare_gives_no_latency_verdict_on_a_contended_pair():
    baseline = measured("a", samples(1), QUIET)
    slower = samples(2, scale=1.25)
    (clean,) = compare_trials([baseline], [measured("b", slower, QUIET)]).matched
    assert [f.kind for f in clean.findings] == ["slower"] and clean.regressed

    (pair,) = compare_trials([baseline], [measured("b", slower, BUSY, True)]).matched
    assert [f.kind for f in pair.findings] == [CONTENDED] and not pair.regressed
    detail = pair.findings[0].detail
    assert "candidate measured under contention (other processes used 34% of 2 cores, " \
           "steal 2%" in detail and "baseline" not in detail
    assert "+24.9%" in detail and "the samples alone say slower" in detail

    # A contended baseline can hide a regression as well as make one: no verdict either.
    (hidden,) = compare_trials([measured("a", samples(1, scale=1.3), BUSY, True)],
                               [measured("b", slower, QUIET)]).matched
    assert [f.kind for f in hidden.findings] == [CONTENDED]
    assert hidden.findings[0].detail.startswith("baseline measured under contention")
    assert "the samples alone say unchanged" in hidden.findings[0].detail


def test_compare_judges_a_trial_by_its_fastest_pass_contended_or_not():
    # A contended slow pass beside a clean fastest one: the trial is judged, not contended.
    latencies = samples(3) + samples(4, scale=1.4)
    trial = measured("b", latencies)
    trial.passes = [PassRecord(float(np.median(latencies[:200])), 0.01, 200, machine=QUIET),
                    PassRecord(float(np.median(latencies[200:])), 0.01, 200, machine=BUSY,
                               contended=True)]
    assert not trial.contended and trial.fastest_pass.machine == QUIET
    trial.passes.reverse()
    assert not trial.contended  # whichever order they were measured in


# Real trials (OpenVINO, digits-cnn)


def _run(workspace: Path, contention: ContentionLimits):
    from autotune.driver import RunSettings, execute_run, start_run
    from autotune.measure import MeasurementProtocol
    from autotune.search import ExhaustiveSearch
    from autotune.space import load_space
    from autotune.store import Store
    from autotune.target import load_target
    from autotune.zoo import resolve_model

    store = Store(f"sqlite:///{workspace}/results/autotune.db")
    space, targets = load_space("smoke"), [load_target("host-cpu")]
    settings = RunSettings(backends=("openvino",), budget=1, progress=False, passes=1,
                           protocol=MeasurementProtocol(2, 5, 0.3),
                           workspace=workspace / "results", contention=contention)
    run_id = start_run(store, resolve_model("digits-cnn"), space, targets, settings,
                       ExhaustiveSearch())
    outcome = execute_run(store, run_id, space, targets, settings, ExhaustiveSearch())
    (trial,) = outcome.trials
    assert trial.config == FP32 and trial.ok, trial.error
    (stored,) = store.trials(run_id)
    assert stored == trial  # the machine state round-trips through the store
    return store, run_id, trial


@pytest.mark.openvino
@pytest.mark.skipif(not LINUX, reason="reads Linux /proc")
@pytest.mark.readme_claim("each measurement pass keeps the machine's state during its timed runs")
def test_a_real_trial_records_the_machine_state_of_its_timed_window(workspace):
    _, _, trial = _run(workspace, ContentionLimits(0, 0, 0))  # judged never: one measurement
    (record,) = trial.passes
    machine = record.machine
    assert machine is not None and record.remeasured == 0 and not record.contended
    assert machine.cpus == trial.cores  # the worker is pinned to the target's cores
    assert 0.3 <= machine.wall_s < 30  # the timed runs only (min_time_s 0.3), not the load
    assert 0 < machine.own_share <= 1 and 0 <= machine.other_share <= 1
    assert 0 <= machine.steal_share <= 1 and machine.load_1m >= 0
    assert machine.freq_mhz is None or machine.freq_mhz > 100
    assert machine.canary_ms > 0 and machine.canary_ratio >= 1.0  # timed here, judged
    assert not any(note.kind == CONTENDED for note in trial.notes)


def _busy_loops(cpus: list[int]) -> list[subprocess.Popen]:
    """One busy-looping process per CPU, pinned there: real contention for the trial."""
    return [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, "
                                                    f"{{{cpu}}})\nwhile True: pass"])
            for cpu in cpus]


@pytest.mark.openvino
@pytest.mark.skipif(not LINUX, reason="reads Linux /proc")
@pytest.mark.readme_claim("a contended pass is measured again; if it stays contended the trial is "
                          "flagged")
def test_a_contended_trial_is_measured_again_then_flagged_and_compare_calls_no_change(
        workspace):
    from autotune.cores import allowed_cpus, target_cpus
    from autotune.report.facts import gather
    from autotune.target import load_target

    cores = target_cpus(load_target("host-cpu"), allowed_cpus())  # the CPUs its trials time on
    loops = _busy_loops(cores)
    try:
        store, run_id, trial = _run(workspace, CONTENTION_LIMITS)
    finally:
        for process in loops:
            process.kill()
            process.wait()
    (record,) = trial.passes
    assert record.contended and record.remeasured == 2  # measured 3 times, contended each
    assert record.machine.other_share > CONTENTION_LIMITS.other_share
    (note,) = [note for note in trial.notes if note.kind == CONTENDED]
    assert note.role == FLAG
    assert note.text.startswith("measured under contention (still so after 2 re-measures): "
                                f"other processes used {record.machine.other_share:.0%} of "
                                f"{len(cores)} core")
    facts = gather(store.get_run(run_id), store.trials(run_id))
    assert note.text in facts.trials[0].flags

    # Against the same samples measured clean, compare calls nothing either way.
    clean = dataclasses.replace(trial, run_id="clean", notes=(), passes=[
        dataclasses.replace(record, machine=QUIET, contended=False)])
    (pair,) = compare_trials([clean], store.trials(run_id)).matched
    assert [f.kind for f in pair.findings] == [CONTENDED] and not pair.regressed
    assert pair.findings[0].detail.startswith("candidate measured under contention")
    assert "the samples alone say unchanged" in pair.findings[0].detail


@pytest.mark.openvino
@pytest.mark.skipif(not LINUX, reason="reads Linux /proc")
@pytest.mark.readme_claim("--max-canary-slowdown: a pass whose reference kernel ran slower is "
                          "measured again")
def test_a_slow_reference_kernel_past_the_flag_is_measured_again(workspace, tiny_model,
                                                                  monkeypatch, capsys):
    """`autotune run --max-canary-slowdown 0.5` with the reference kernel's fastest reading
    on the trial's cores set far below anything this machine runs: every measurement reads
    as contended by the canary alone, so the pass is measured again twice, then flagged."""
    from autotune.canary import reference_path
    from autotune.cli import main
    from autotune.cores import allowed_cpus, target_cpus
    from autotune.store import Store
    from autotune.target import load_target

    monkeypatch.setenv("AUTOTUNE_LOCK_DIR", str(workspace / "locks"))
    cpus = tuple(target_cpus(load_target("host-cpu"), allowed_cpus()))
    reference = reference_path(cpus)
    reference.parent.mkdir()
    reference.write_text(json.dumps({"readings_ms": [1e-6]}))
    assert main(["run", "--model", str(tiny_model), "--space", "smoke", "--budget", "1",
                 "--passes", "1", "--backend", "openvino", "--min-repeats", "5",
                 "--min-time", "0.05", "--max-spread", "0", "--max-other-cpu", "0",
                 "--max-steal", "0", "--max-canary-slowdown", "0.5", "--no-progress"]) == 0
    run_id = capsys.readouterr().out.split()[1]
    (trial,) = Store(f"sqlite:///{workspace}/results/autotune.db").trials(run_id)
    (record,) = trial.passes
    assert record.contended and record.remeasured == 2  # measured 3 times, slow each time
    assert record.machine.canary_ratio > 1.5
    assert len(json.loads(reference.read_text())["readings_ms"]) == 4  # one per measurement
    (note,) = [note for note in trial.notes if note.kind == CONTENDED]
    assert "reference kernel" in note.text and "its fastest" in note.text


def test_compare_cli_names_the_contended_pairs(tmp_path, capsys):
    from autotune.cli import main
    from autotune.settings import RunSpec
    from autotune.store import Run, Store

    url = f"sqlite:///{tmp_path}/autotune.db"
    store = Store(url)
    for run_id, trial in (("run-01", measured("run-01", samples(1), QUIET)),
                          ("run-02", measured("run-02", samples(2, scale=1.25), BUSY, True))):
        store.create_run(Run(
            id=run_id, created_at=f"2026-11-01T00:00:{run_id[-2:]}+00:00", finished_at=None,
            status="finished", model="m", model_path="/m.onnx", model_hash="h", space="smoke",
            metric="fidelity", synthetic_data=True, reference_accuracy=None,
            settings=RunSpec(), host={"cpu_model": "Test CPU"}, versions={}))
        store.add_trial(trial)
    assert main(["compare", "run-01", "run-02", "--store", url]) == 0  # no regression called
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fp32 "))
    assert row.rstrip().endswith("contended")
    assert "note: 1 pair(s) measured under contention" in out
    assert "0 regression(s) in 1 comparable trials" in out
    assert main(["compare", "run-01", "run-02", "--store", url, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["trials"]
    assert entry["contended"] == {"baseline": False, "candidate": True}
    assert entry["findings"][0]["kind"] == CONTENDED and not entry["regressed"]

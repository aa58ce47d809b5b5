"""Targets beyond the host: ARM through cross-compilation and TVM RPC, CUDA, the tracker.

The fast tests compile for aarch64 and CUDA for real (no device needed), ask a real tracker
why a key is missing, and measure through a real tracker and `autotune worker` on this host.
The slow `arm` test brings up the emulated ARM worker (scripts/arm-emulator) and runs
`autotune run --target arm-cortex-a76 --backend tvm --backend openvino` against it (CI too:
.ci/arm).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autotune.testing.conformance import QUICK
from autotune.testing.remote import free_port

pytestmark = pytest.mark.tvm
pytest.importorskip("tvm", reason="apache-tvm is not installed")

REPO = Path(__file__).resolve().parents[2]
EMULATOR = REPO / "scripts" / "arm-emulator"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from autotune.config import FP32
    from autotune.data import random_dataset
    from autotune.quantize import quantize
    from autotune.testing.models import tiny_cnn

    path = tiny_cnn(tmp_path_factory.mktemp("targets") / "tiny.onnx")
    dataset = random_dataset(path, calibration_count=4, evaluation_count=3)
    return quantize(path, FP32, dataset.calibration, path.parent / "cache"), dataset


@pytest.mark.readme_claim("[reach]: kind = \"local\", or kind = \"tracker\" with host, port and "
                          "key")
def test_builtin_targets_say_how_each_is_reached():
    from autotune.target import load_target

    arm = load_target("arm-cortex-a76")
    assert arm.reach.kind == "tracker" and arm.reach.key == "arm-cortex-a76"
    assert arm.backend_table("tvm")["target"]["mtriple"] == "aarch64-linux-gnu"
    assert arm.backend_table("openvino")["device"] == "CPU"
    assert {"fp32", "int8"} <= set(arm.peak_gops) and arm.memory_bandwidth_gbs
    h100 = load_target("nvidia-h100")
    assert h100.backend_table("tvm")["target"] == {"kind": "cuda", "arch": "sm_90"}
    assert h100.peak_gops["int8"] and h100.backend_table("openvino") == {}
    assert load_target("intel-gpu").backend_table("openvino")["device"] == "GPU"
    assert load_target("host-cpu").is_local


def test_tracker_reasons(tmp_path):
    from tvm.rpc.tracker import Tracker

    from autotune.backends.remote import tracker_state

    port = free_port()
    state = tracker_state("127.0.0.1", port, "some-board")
    assert not state.ok and f"tracker 127.0.0.1:{port} not answering" in state.reason
    tracker = Tracker("127.0.0.1", port=port, port_end=port + 1, silent=True)
    try:
        state = tracker_state("127.0.0.1", tracker.port, "some-board")
        assert not state.ok
        assert f"no key some-board registered on tracker 127.0.0.1:{tracker.port}" in state.reason
    finally:
        tracker.terminate()


@pytest.mark.readme_claim("autotune targets: per target and backend, reachable here or not, and "
                          "why")
def test_autotune_targets_says_why_each_is_unreachable(capsys):
    from autotune.cli import main

    assert main(["targets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_key = {(row["target"], row["backend"]): row for row in rows}
    assert {"host-cpu", "arm-cortex-a76", "nvidia-h100", "intel-gpu"} <= {r["target"] for r in rows}
    assert all(row["reason"] for row in rows if not row["reachable"])
    assert by_key[("host-cpu", "tvm")]["reachable"]
    arm = by_key[("arm-cortex-a76", "tvm")]
    assert arm["reach"] == "tracker 127.0.0.1:9190 key arm-cortex-a76"
    if not arm["reachable"]:
        assert "tracker 127.0.0.1:9190" in arm["reason"] or "cross compiler" in arm["reason"]
    cuda = by_key[("nvidia-h100", "tvm")]
    if not cuda["reachable"]:
        assert "CUDA" in cuda["reason"]


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                    reason="aarch64-linux-gnu-gcc not installed (Debian: gcc-aarch64-linux-gnu)")
@pytest.mark.readme_claim("TVM cross-compiles for aarch64 (arm-cortex-a76)")
def test_cross_compiles_an_aarch64_library(tiny, tmp_path):
    from autotune.backends import get_backend
    from autotune.target import load_target

    artifact = get_backend("tvm").compile(tiny[0], load_target("arm-cortex-a76"), tmp_path)
    header = artifact.path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == 0xB7  # EM_AARCH64
    assert artifact.details["cross_compiler"] == "aarch64-linux-gnu-gcc"
    assert "aarch64-linux-gnu" in artifact.details["tvm_target"]


@pytest.mark.slow  # ~1.8 min of CI's 30 on 2 cores; the GPU tests run it where a GPU is
@pytest.mark.readme_claim("TVM compiles for CUDA sm_90 (nvidia-h100)")
def test_compiles_for_cuda_sm90_with_dlight_default_schedules(tiny, tmp_path):
    from autotune.backends import get_backend
    from autotune.target import load_target

    artifact = get_backend("tvm").compile(tiny[0], load_target("nvidia-h100"), tmp_path)
    assert artifact.size_bytes > 0 and artifact.details["default_schedules"] == "dlight"
    assert '"arch":"sm_90"' in artifact.details["tvm_target"].replace(" ", "")


@pytest.mark.gpu
@pytest.mark.readme_claim("GPU: --target nvidia-h100 --backend tvm times runs on the GPU")
def test_runs_on_the_cuda_gpu(tiny, tmp_path):
    from autotune.backends import get_backend
    from autotune.target import load_target

    backend, target = get_backend("tvm"), load_target("nvidia-h100")
    availability = backend.available(target)
    if not availability.ok:
        pytest.skip(availability.reason)
    model, dataset = tiny
    measurement = backend.measure(backend.compile(model, target, tmp_path), dataset.evaluation,
                                  target, QUICK)
    assert len(measurement.latencies_ms) >= QUICK.min_repeats


@pytest.mark.readme_claim("emulated trials are never compared with real ones")
def test_emulated_trials_are_never_compared_with_real_ones():
    from autotune.config import FP32
    from autotune.regress import comparable_key, compare_trials
    from autotune.trial import Trial

    real = Trial(run_id="a", model="m", model_hash="h", config=FP32, backend="tvm",
                 target="arm-cortex-a76", status="ok", latencies_ms=[1.0] * 5,
                 latency_median_ms=1.0)
    emulated = replace(real, run_id="b", emulated=True, latencies_ms=[9.0] * 5,
                       latency_median_ms=9.0)
    assert comparable_key(real) != comparable_key(emulated)
    comparison = compare_trials([real], [emulated])
    assert comparison.matched == () and comparison.only_candidate == (emulated,)


@pytest.mark.readme_claim("TVM measures through a real tracker and autotune worker")
def test_measures_through_the_tracker_and_autotune_worker(local_worker, tiny, tmp_path):
    from autotune.accuracy import first_outputs
    from autotune.backends import get_backend
    from autotune.target import load_target

    local = load_target("host-cpu")
    remote = load_target(str(local_worker.target_toml(tmp_path / "via-tracker.toml")))
    backend = get_backend("tvm")
    assert backend.available(remote).ok
    model, dataset = tiny
    for folder in ("local", "remote"):
        (tmp_path / folder).mkdir()
    here = backend.measure(backend.compile(model, local, tmp_path / "local"),
                           dataset.evaluation, local, QUICK)
    artifact = backend.compile(model, remote, tmp_path / "remote")
    there = backend.measure(artifact, dataset.evaluation, remote, QUICK)
    assert len(there.latencies_ms) >= QUICK.min_repeats and min(there.latencies_ms) > 0
    assert there.device.served_by == "autotune worker"
    # The worker was started without --emulated: its device says so, and the trial is real.
    assert there.device.emulated is False and there.device.emulator == ""
    # The first run was timed cold, by the device's clock (`autotune.time_call`), not by the
    # time evaluator, which runs once untimed before it times.
    assert there.first_inference_warm is False and there.first_inference_ms > 0
    np.testing.assert_allclose(first_outputs(there.outputs), first_outputs(here.outputs),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.readme_claim("a plain TVM RPC server: the first inference is stored as "
                          "first_inference_warm")
def test_a_plain_tvm_server_times_a_warm_first_run_and_says_so(tiny, tmp_path):
    """Without `autotune worker`'s device clock, only TVM's time evaluator times on the
    device, and it runs the call once untimed first: the figure is labelled warm."""
    from autotune.backends import get_backend
    from autotune.target import load_target
    from autotune.testing.remote import LocalWorker

    worker = LocalWorker(plain_tvm=True)
    try:
        remote = load_target(str(worker.target_toml(tmp_path / "plain.toml")))
        backend = get_backend("tvm")
        artifact = backend.compile(tiny[0], remote, tmp_path)
        there = backend.measure(artifact, tiny[1].evaluation, remote, QUICK)
    finally:
        worker.stop()
    assert there.device.served_by == "tvm.exec.rpc_server"
    assert there.first_inference_warm is True and there.first_inference_ms > 0


@pytest.mark.readme_claim("trials on an emulated device are stored emulated")
def test_the_device_says_whether_it_is_emulated_and_the_stored_trials_keep_it(
        local_worker, emulated_worker, tiny, workspace):
    """`autotune run` on two devices: the one whose worker was started with --emulated answers
    so in `autotune.device_info`, and its trials are stored flagged emulated, measured in one
    pass; the other's trials are stored real, measured in every pass."""
    from autotune.cli import main
    from autotune.driver import EMULATED_PASSES
    from autotune.store import Store
    from autotune.testing.remote import EMULATED_WHY

    real = local_worker.target_toml(workspace / "board.toml")
    emulated = emulated_worker.target_toml(workspace / "emulated-board.toml")
    store_url = f"sqlite:///{workspace}/results/autotune.db"
    code = main(["run", "--model", str(tiny[0].path), "--space", "smoke", "--target",
                 str(real), "--target", str(emulated), "--backend", "tvm", "--tuning-trials",
                 "0", "--no-progress", "--passes", "2", "--min-repeats", "5", "--min-time",
                 "0.05", "--max-spread", "0", "--store", store_url])
    assert code == 0
    store = Store(store_url)
    trials = store.trials(store.runs()[0].id)
    by_target = {name: [t for t in trials if t.target == name]
                 for name in ("board", "emulated-board")}
    assert [len(group) for group in by_target.values()] == [2, 2]
    assert all(t.ok for t in trials), [t.error for t in trials]
    for trial in by_target["emulated-board"]:
        assert trial.emulated is True
        assert trial.device.emulator == EMULATED_WHY  # the device's own answer
        assert trial.passes_skipped == EMULATED_PASSES
        assert len(trial.passes) == 1
    for trial in by_target["board"]:
        assert trial.emulated is False
        assert trial.device.served_by == "autotune worker"
        assert trial.device.emulated is False and trial.device.emulator == ""
        assert trial.passes_skipped == "" and len(trial.passes) == 2


@pytest.mark.slow  # ~1.5 min: out of CI's 30 minutes (README: Tests)
@pytest.mark.readme_claim("a remote target is tuned with MetaSchedule through the tracker: "
                          "candidates built here, measured on the device")
def test_tunes_with_metaschedule_through_the_tracker(local_worker, tmp_path):
    """MetaSchedule builds candidates here and measures them on the device (RPC runner
    through a real tracker and `autotune worker`). One packed convolution keeps it cheap."""
    from tvm.s_tir import meta_schedule as ms

    from autotune.accuracy import first_outputs
    from autotune.backends import get_backend
    from autotune.backends.base import CompileOptions
    from autotune.backends.tvm import _tuning_tools
    from autotune.config import FP32
    from autotune.data import random_dataset
    from autotune.driver import reference_outputs
    from autotune.quantize import quantize
    from autotune.target import load_target
    from autotune.testing.models import one_conv

    path = one_conv(tmp_path / "conv.onnx")
    dataset = random_dataset(path, calibration_count=2, evaluation_count=2)
    model = quantize(path, FP32, dataset.calibration, tmp_path / "cache")
    remote = load_target(str(local_worker.target_toml(tmp_path / "board.toml")))
    assert isinstance(_tuning_tools(remote)[1], ms.runner.RPCRunner)
    backend = get_backend("tvm")
    artifact = backend.compile(model, remote, tmp_path, CompileOptions(
        tuning_trials=8, cache_dir=tmp_path / "cache"))
    tuning = artifact.details["tuning"]
    assert tuning["trials_run"] > 0, tuning
    assert tuning["database_records_applied"] == len(tuning["tasks"]) >= 3, tuning
    assert artifact.tuning.tuned
    there = backend.measure(artifact, dataset.evaluation, remote, QUICK)
    assert there.device.served_by == "autotune worker"
    np.testing.assert_allclose(first_outputs(there.outputs), reference_outputs(path, dataset),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.readme_claim("a remote target that stops answering mid-run: its trials unavailable, "
                          "others go on")
def test_a_target_that_goes_away_mid_run_marks_its_trials_and_the_others_go_on(
        local_worker, tiny, workspace):
    from autotune.store import Store

    remote = local_worker.target_toml(workspace / "board.toml")
    store_url = f"sqlite:///{workspace}/results/autotune.db"
    run = subprocess.Popen(
        [sys.executable, "-m", "autotune", "run", "--model", str(tiny[0].path), "--space",
         "smoke", "--target", str(remote), "--target", "host-cpu", "--backend", "tvm",
         "--tuning-trials", "0", "--no-progress", "--passes", "1", "--min-repeats", "5",
         "--min-time", "0.05", "--max-spread", "0", "--store", store_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.poll() is None:
            if (workspace / "results" / "autotune.db").exists():
                store = Store(store_url)
                runs = store.runs()
                if runs and any(t.target == "board" for t in store.trials(runs[0].id)):
                    break  # the board measured its first trial: now it goes away
            time.sleep(0.1)
        local_worker.stop()
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    store = Store(store_url)
    trials = store.trials(store.runs()[0].id)
    board = sorted((t for t in trials if t.target == "board"), key=lambda t: t.started_at)
    host = [t for t in trials if t.target == "host-cpu"]
    assert len(board) == 2 and len(host) == 2 and all(t.ok for t in host)
    assert board[0].ok and not board[1].ok
    assert "127.0.0.1" in board[1].error and "answering" in board[1].error
    # The two targets measured at the same time, not one after the other.
    assert any(b.started_at < h.finished_at and h.started_at < b.finished_at
               for b in board for h in host)


def _emulator(command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EMULATOR), command], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "AUTOTUNE_PYTHON": sys.executable})


def _needs(ok: bool, reason: str) -> None:
    """Skip without the emulated ARM device; fail instead where CI built it
    (``AUTOTUNE_ARM_REQUIRED=1``), so a lost device never passes as a skip."""
    if not ok:
        if os.environ.get("AUTOTUNE_ARM_REQUIRED") == "1":
            pytest.fail(f"AUTOTUNE_ARM_REQUIRED=1 but {reason}")
        pytest.skip(reason)


def _copy_run(store, run, emulated: bool | None = None) -> str:
    """Store ``run`` again under a new id: its trials as measured, or with their ``emulated``
    flag set to ``emulated`` (what a real board's run of the same configs stores)."""
    from autotune.store import new_run_id

    copy = replace(run, id=new_run_id())
    store.create_run(copy)
    for trial in store.trials(run.id):
        flag = trial.emulated if emulated is None else emulated
        store.add_trial(replace(trial, run_id=copy.id, emulated=flag))
    return copy.id


@pytest.mark.readme_claim("the emulated ARM device runs autotune run on arm-cortex-a76")
@pytest.mark.slow
@pytest.mark.arm
def test_emulated_arm_worker_runs_the_benchmark(tiny, workspace, capsys):
    """scripts/arm-emulator up, then a real `autotune run` on arm-cortex-a76 with both backends
    (2-4 min): its trials are stored emulated and `autotune compare` never pairs them with
    a real board's. CI runs it (`.ci/run`, AUTOTUNE_ARM_REQUIRED=1)."""
    _needs(shutil.which("aarch64-linux-gnu-gcc") is not None,
           "aarch64-linux-gnu-gcc not installed (Debian: gcc-aarch64-linux-gnu)")
    _needs(_emulator("root").returncode == 0,
           "the emulated ARM device is not built: run scripts/arm-emulator build")
    was_up = _emulator("status").returncode == 0
    started = _emulator("up")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        from autotune.cli import main
        from autotune.driver import EMULATED_PASSES
        from autotune.store import Store

        # Two short passes: the emulated trials must skip the second.
        assert main(["run", "--model", str(tiny[0].path), "--space", "smoke", "--target",
                     "arm-cortex-a76", "--backend", "tvm", "--backend", "openvino",
                     "--tuning-trials", "0", "--no-progress", "--trial-timeout", "600",
                     "--passes", "2", "--max-spread", "0", "--min-repeats", "10",
                     "--min-time", "0.1"]) == 0
    finally:
        if not was_up:
            _emulator("down")
    store = Store("sqlite:///results/autotune.db")
    run = store.get_run()
    # smoke's two configs: fp32 and an int8 one ("int8 pc uint8-asym minmax").
    trials = {(t.backend, t.config.label.split()[0]): t for t in store.trials(run.id)}
    # TVM and OpenVINO, fp32 and int8, each measured on the emulated aarch64 device, which
    # said itself that it is emulated: one pass, never re-measured.
    assert set(trials) == {(backend, label) for backend in ("tvm", "openvino")
                           for label in ("fp32", "int8")}
    assert all(t.ok and t.emulated and t.target == "arm-cortex-a76" for t in trials.values()), [
        (t.backend, t.target, t.status, t.error, f"emulated={t.emulated}")
        for t in trials.values()]
    for trial in trials.values():
        assert trial.device.machine == "aarch64" and "qemu" in trial.device.emulator
        assert trial.passes_skipped == EMULATED_PASSES and len(trial.passes) == 1
    # Outputs against the host's fp32 reference: fp32 equals it, int8 close to it.
    tvm_fp32 = trials[("tvm", "fp32")]
    assert tvm_fp32.cosine > 0.99999 and tvm_fp32.sqnr_db > 80
    assert trials[("openvino", "fp32")].cosine > 0.9999
    assert all(trials[(backend, "int8")].cosine > 0.999 for backend in ("tvm", "openvino"))

    # Never compared with real ones: a real board's run of the same configs has no trial
    # comparable with them (bad input, exit 2); another emulated run's trials pair with them.
    real_board = _copy_run(store, run, emulated=False)
    capsys.readouterr()
    assert main(["compare", real_board, run.id, "--json"]) == 2
    assert "no comparable trial" in capsys.readouterr().err
    emulated_again = _copy_run(store, run)
    assert main(["compare", emulated_again, run.id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["trials"]) == 4 and not report["only_in_candidate"]
    assert all(p["target"] == "arm-cortex-a76" and p["emulated"] for p in report["trials"])

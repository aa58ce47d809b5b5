"""NNCF's accuracy-aware quantization of MiniLM beside the suite's best config at one budget.

NNCF's ``quantize_with_accuracy_control`` quantizes the whole model, then reverts the layers
that cost most accuracy to float, one group at a time, validating after each, until the
drop is within ``max_drop``. The suite instead measures every config of a search space and
picks the fastest one within the budget. This script runs the first on all-MiniLM-L6-v2
(OpenVINO IR read from the zoo's fp32 ONNX; calibration = the zoo's calibration split;
validation = the evaluation split scored by the suite's Spearman metric, with
``max_drop`` as a relative drop and NNCF's transformer model type), takes the second from a
stored run (``benchmarks/minilm_frontier.py --store URL``), and times fp32, the suite's
pick and NNCF's model in one session through the suite's own worker and measurement path,
so their ratios come from one sitting of the machine. Both sides select on the evaluation
split (NNCF validates on it, the suite's pick reads its scores): neither figure is a
held-out accuracy.

    python benchmarks/accuracy_control.py --store sqlite:///PATH [--run RUN_ID]
        [--max-drop 0.01] [--rounds 2] [--out benchmarks/results]
    python benchmarks/accuracy_control.py --show benchmarks/results/accuracy_control-DATE.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.accuracy import first_outputs, spearman  # noqa: E402
from autotune.cli.common import print_table  # noqa: E402
from autotune.config import FP32, QuantConfig  # noqa: E402
from autotune.cores import allowed_cpus, target_cpus  # noqa: E402
from autotune.errors import InputError  # noqa: E402
from autotune.measure import MeasurementProtocol, latency_stats  # noqa: E402
from autotune.store import Store  # noqa: E402
from autotune.target import load_target  # noqa: E402
from autotune.trial import Trial  # noqa: E402
from autotune.worker import Job, run_isolated  # noqa: E402
from autotune.zoo import resolve_model  # noqa: E402
from benchmarks.result_file import write_result  # noqa: E402

BENCHMARK = "accuracy_control"


@dataclass(frozen=True)
class SuitePick:
    """What a stored run offers at a budget: its fp32 trial, its fastest quantized trial
    within the budget (None: none is), and how many configs it measured."""

    baseline: Trial
    best: Trial | None
    measured: int
    within: int


def suite_pick(trials: list[Trial], max_relative_drop: float) -> SuitePick:
    """The fastest quantized config whose Spearman drop, relative to the fp32 trial's score,
    is within ``max_relative_drop``.

    Raises:
        InputError: the run has no successful fp32 trial to measure the drop from.
    """
    ok = [trial for trial in trials if trial.ok and trial.latency_median_ms is not None
          and trial.accuracy_drop is not None]
    baseline = next((trial for trial in ok if trial.config == FP32), None)
    if baseline is None or not baseline.accuracy:
        raise InputError("the stored run has no successful fp32 trial with an accuracy")
    within = [trial for trial in ok if trial.config.is_quantized
              and trial.accuracy_drop / baseline.accuracy <= max_relative_drop]
    best = min(within, key=lambda trial: trial.latency_median_ms, default=None)
    return SuitePick(baseline, best, sum(trial.attempted for trial in trials), len(within))


@dataclass(frozen=True)
class AccuracyControlled:
    """NNCF's accuracy-controlled model and what it took to make it."""

    path: Path  # OpenVINO IR (model.xml)
    seconds: float
    validation_runs: int  # full passes over the validation split (the fp32 one included)
    reverted: int | None  # operations reverted to float (None: NNCF did not say)
    quantized_ops: int | None  # operations it had quantized before reverting
    fake_quantize_left: int  # FakeQuantize ops in the model it returned
    nncf_drop: float | None  # the last relative drop NNCF reported
    outcome: str  # NNCF's last words on the search


_REVERTED = re.compile(r"(\d+) out of (\d+) were reverted")
_DROP = re.compile(r"accuracy drop(?: with the new quantization scope is|:| \(tuned\):)? "
                   r"(-?\d[\d.e-]*)", re.IGNORECASE)
_COMPLETED = re.compile(r"Algorithm completed: (.*)|could not achieve the required accuracy")


class _Said(logging.Handler):
    """Keeps what NNCF logs: its report (layers reverted, drops) is only logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def accuracy_control(onnx_path: Path, calibration: list, evaluation: list, labels: np.ndarray,
                     max_drop: float, out_dir: Path) -> AccuracyControlled:
    """Run ``nncf.quantize_with_accuracy_control`` on the OpenVINO model of ``onnx_path``."""
    import nncf
    import openvino

    validation_runs = 0

    def validate(compiled, items) -> tuple[float, None]:
        nonlocal validation_runs
        embeddings = np.stack([np.asarray(compiled(feeds)[0], dtype=np.float64).reshape(-1)
                               for feeds in items])
        # One item (NNCF probing the metric's kind) has no pair to score: spearman raises,
        # and NNCF then ranks layers by how far their outputs move, as it does for any
        # metric over the whole set.
        score = spearman(embeddings, labels)
        validation_runs += 1
        return score, None

    said = _Said()
    nncf_log = logging.getLogger("nncf")
    nncf_log.addHandler(said)
    start = time.perf_counter()
    try:
        model = nncf.quantize_with_accuracy_control(
            openvino.Core().read_model(str(onnx_path)), nncf.Dataset(list(calibration)),
            nncf.Dataset(list(evaluation)), validate, max_drop=max_drop,
            drop_type=nncf.DropType.RELATIVE, model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration))
    finally:
        nncf_log.removeHandler(said)
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.xml"
    openvino.save_model(model, str(path), compress_to_fp16=False)
    return AccuracyControlled(
        path, seconds, validation_runs, *reverted_of(said.lines),
        fake_quantize_left=sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops()),
        nncf_drop=last_drop(said.lines), outcome=outcome_of(said.lines))


def reverted_of(lines: list[str]) -> tuple[int | None, int | None]:
    """(operations reverted, operations quantized) from NNCF's report; (0, None) when it
    reverted nothing (the fully quantized model met the budget: no report is logged)."""
    for line in reversed(lines):
        found = _REVERTED.search(line)
        if found:
            return int(found.group(1)), int(found.group(2))
    return 0, None


def last_drop(lines: list[str]) -> float | None:
    for line in reversed(lines):
        found = _DROP.search(line)
        if found:
            try:
                return float(found.group(1))
            except ValueError:
                continue
    return None


def outcome_of(lines: list[str]) -> str:
    for line in reversed(lines):
        found = _COMPLETED.search(line)
        if found:
            return found.group(0)
    return "the fully quantized model met the budget" if lines else ""


def measure(model_path: Path, config: QuantConfig, dataset_path: Path, target, cache_dir: Path,
            protocol: MeasurementProtocol, scratch: Path, labels: np.ndarray) -> dict:
    """Compile and time ``model_path`` under ``config`` in one of the suite's workers, as a
    trial is (an OpenVINO IR under fp32 is compiled as it is), and score its outputs."""
    job = Job(model_path=str(model_path), config=config.to_dict(), backend="openvino",
              target_path=str(target.path), dataset_path=str(dataset_path),
              cache_dir=str(cache_dir), protocol=protocol.to_dict(),
              artifact_dir=str(scratch), cpus=list(target_cpus(target, allowed_cpus())))
    result = run_isolated(job, timeout_s=1800, memory_limit_bytes=8 << 30)
    if result.status != "ok":
        raise RuntimeError(f"{model_path.name} ({config.label}): {result.status}: "
                           f"{result.error.splitlines()[0] if result.error else ''}")
    return {"latencies_ms": list(result.outcome.measured.latencies_ms),
            "spearman": spearman(first_outputs(result.outputs), labels)}


def table(result: dict) -> tuple[list[str], list[list[str]]]:
    """The side-by-side table of a result (as written to its file)."""
    fp32_ms = result["fp32"]["median_ms"]
    headers = ["method", "configs measured", "Spearman", "rel. drop", "median ms", "speedup",
               "stored run", "how"]
    rows = [["fp32", "-", f"{result['fp32']['spearman']:.4f}", "-", f"{fp32_ms:.2f}",
             "1.00x", "-", "OpenVINO fp32"]]
    for side in result["sides"]:
        stored = side.get("stored_speedup")
        rows.append([side["method"], str(side["configs_measured"]), f"{side['spearman']:.4f}",
                     f"{side['relative_drop']:.2%}", f"{side['median_ms']:.2f}",
                     f"{fp32_ms / side['median_ms']:.2f}x",
                     "-" if stored is None else f"{stored:.2f}x", side["how"]])
    return headers, rows


def print_result(result: dict) -> None:
    print(f"MiniLM on {result['target']} (OpenVINO), budget {result['max_relative_drop']:.1%} "
          f"relative Spearman drop; timed in one session, {result['rounds']} round(s) each")
    print_table(*table(result))
    faster = result.get("suite_at_least_as_fast")
    if faster is not None:
        print(f"suite's pick at least as fast as NNCF's: {'yes' if faster else 'NO'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="the store holding the suite's run "
                                        "(benchmarks/minilm_frontier.py --store)")
    parser.add_argument("--run", default="latest", help="the suite's run id (default: latest)")
    parser.add_argument("--max-drop", type=float, default=0.01,
                        help="relative Spearman drop both sides may lose (default 0.01)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timing rounds over the three models, interleaved (default 2)")
    parser.add_argument("--target", default="host-cpu")
    parser.add_argument("--cache-dir", help="quantized-model cache (default: the store's "
                                            "folder's cache/, where its run left them)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--suffix", default="", help="appended to the result file's name")
    parser.add_argument("--show", metavar="FILE", help="print the table of a result file")
    args = parser.parse_args()
    if args.show:
        try:
            print_result(json.loads(Path(args.show).read_text()))
        except (OSError, ValueError, KeyError) as error:
            print(f"accuracy_control: {args.show}: not a result of this benchmark ({error})",
                  file=sys.stderr)
            return 2
        return 0
    if not args.store:
        parser.error("--store is required (or --show FILE)")
    if not 0 < args.max_drop < 1 or args.rounds < 1:
        parser.error("--max-drop must lie between 0 and 1 and --rounds be at least 1")
    try:
        store = Store(args.store)
        run = store.get_run(args.run)
        pick = suite_pick(store.trials(run.id), args.max_drop)
        model = resolve_model("minilm")
        target = load_target(args.target)
    except InputError as error:
        print(f"accuracy_control: {error}", file=sys.stderr)
        return 2
    if pick.best is None:
        print(f"accuracy_control: run {run.id} has no quantized config within "
              f"{args.max_drop:.1%}; nothing to compare", file=sys.stderr)
        return 1
    cache_dir = Path(args.cache_dir) if args.cache_dir else (
        Path(args.store.removeprefix("sqlite:///")).parent / "cache")
    dataset = model.dataset
    print(f"suite: run {run.id} measured {pick.measured} configs, {pick.within} within "
          f"{args.max_drop:.1%}; its pick {pick.best.config.label}", flush=True)
    with tempfile.TemporaryDirectory(prefix="autotune-accuracy-control-") as scratch:
        scratch = Path(scratch)
        print("NNCF quantize_with_accuracy_control ...", flush=True)
        controlled = accuracy_control(model.path, dataset.calibration, dataset.evaluation,
                                      dataset.labels, args.max_drop, scratch / "nncf")
        dataset_path = scratch / "dataset.npz"
        dataset.save(dataset_path)
        contenders = {"fp32": (model.path, FP32), "suite": (model.path, pick.best.config),
                      "nncf": (controlled.path, FP32)}
        figures: dict[str, dict] = {name: {"latencies_ms": []} for name in contenders}
        protocol = MeasurementProtocol()
        for round_ in range(args.rounds):
            for name, (path, config) in contenders.items():
                print(f"round {round_ + 1}: timing {name} ...", flush=True)
                measured = measure(path, config, dataset_path, target, cache_dir, protocol,
                                   scratch / f"{name}-{round_}", dataset.labels)
                figures[name]["latencies_ms"] += measured["latencies_ms"]
                figures[name]["spearman"] = measured["spearman"]
    for entry in figures.values():
        entry["median_ms"] = latency_stats(entry["latencies_ms"]).median_ms
    fp32 = figures["fp32"]

    def side(name: str, method: str, configs: int, how: str, stored: float | None) -> dict:
        entry = figures[name]
        return {"method": method, "configs_measured": configs, "spearman": entry["spearman"],
                "relative_drop": (fp32["spearman"] - entry["spearman"]) / fp32["spearman"],
                "median_ms": entry["median_ms"], "samples": len(entry["latencies_ms"]),
                "how": how, "stored_speedup": stored}

    best = pick.best
    result = {
        "model": "minilm", "target": target.name, "backend": "openvino",
        "max_relative_drop": args.max_drop, "rounds": args.rounds,
        "calibration_samples": len(dataset.calibration),
        "evaluation_samples": len(dataset.evaluation),
        "selection_split": "evaluation (both sides select on it)",
        "fp32": {"spearman": fp32["spearman"], "median_ms": fp32["median_ms"],
                 "samples": len(fp32["latencies_ms"])},
        "sides": [
            side("suite", f"suite: {best.config.label}", pick.measured,
                 f"fastest of {pick.within} configs within budget in run {run.id}",
                 pick.baseline.latency_median_ms / best.latency_median_ms),
            side("nncf", "NNCF quantize_with_accuracy_control", controlled.validation_runs,
                 f"{controlled.validation_runs} validation runs, {controlled.reverted} of "
                 f"{controlled.quantized_ops or '?'} ops reverted to float, "
                 f"{controlled.seconds:.0f} s", None),
        ],
        "suite_run": {"id": run.id, "space": run.space, "config": best.config.text,
                      "config_id": best.config.id, "stored_median_ms": best.latency_median_ms,
                      "stored_fp32_median_ms": pick.baseline.latency_median_ms,
                      "stored_accuracy": best.accuracy},
        "nncf": {"seconds": round(controlled.seconds, 1),
                 "validation_runs": controlled.validation_runs,
                 "reverted_ops": controlled.reverted, "quantized_ops": controlled.quantized_ops,
                 "fake_quantize_left": controlled.fake_quantize_left,
                 "reported_drop": controlled.nncf_drop, "outcome": controlled.outcome},
    }
    result["suite_at_least_as_fast"] = (result["sides"][0]["median_ms"]
                                        <= result["sides"][1]["median_ms"])
    print()
    print_result(result)
    path = write_result(args.out, BENCHMARK, result, args.suffix)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput vs latency mode on host-cpu with OpenVINO: does batching/streaming pay (M3)?

For each model (default: digits-cnn, and MiniLM where the ``zoo`` extra is installed, else
the zoo's bert-base shape), measures fp32 and the default int8 config through the real
driver with ``--batch 1,8`` (one pass each, every trial in its own worker), and prints:
the batch-1 latency mode's inferences/s (1000 / latency), the THROUGHPUT hint's at batch 1
and 8, the best of them over the latency mode (the issue's target: at least 1.5x), and the
int8/fp32 throughput ratio next to the int8/fp32 latency ratio. Writes
``benchmarks/results/throughput-DATE-TARGET.json``. ``--target`` takes a name or a TOML file:
``benchmarks/targets/host-all-cores.toml`` is host-cpu with no core kept spare, as a
throughput deployment would run (host-cpu times on one pinned vCPU of two).

    python benchmarks/throughput.py [--models digits-cnn,minilm] [--min-time 1.0]
    python benchmarks/throughput.py --models tiny-cnn --min-time 0.2   # a quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.api import run_benchmark  # noqa: E402
from autotune.errors import InputError  # noqa: E402
from autotune.store import Store  # noqa: E402
from autotune.throughput import contention_text  # noqa: E402
from autotune.trial import Trial  # noqa: E402
from benchmarks.result_file import write_result  # noqa: E402

# fp32 and the default int8 config (int8 per-channel weights, uint8 asymmetric activations,
# minmax calibration): the ``smoke`` space.
SPACE = "smoke"
BATCHES = (1, 8)
TARGET_GAIN = 1.5  # throughput mode over latency mode (benchmark_app's usual gain)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None,
                        help="comma-separated zoo names, ONNX paths or tiny-cnn (default: "
                             "digits-cnn and minilm, bert-base without the zoo extra)")
    parser.add_argument("--min-time", type=float, default=1.0, metavar="SECONDS",
                        help="timed seconds per measurement, at least (default: 1.0)")
    parser.add_argument("--target", default="host-cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    figures = {"target": args.target, "backend": "openvino", "batches": list(BATCHES),
               "min_time_s": args.min_time, "target_gain": TARGET_GAIN, "models": {}}
    with tempfile.TemporaryDirectory(prefix="autotune-throughput-") as scratch:
        for model in _models(args.models, Path(scratch)):
            store_url = f"sqlite:///{scratch}/{Path(str(model)).stem}.db"
            try:
                run_id = run_benchmark(model, targets=(args.target,), backends=("openvino",),
                                       space=SPACE, batches=BATCHES, passes=1,
                                       min_time_s=args.min_time, store=store_url,
                                       report_dir=None, progress=False)
            except InputError as error:
                print(f"throughput: {error}", file=sys.stderr)
                return 2
            trials = Store(store_url).trials(run_id)
            name = Path(str(model)).stem if str(model).endswith(".onnx") else str(model)
            figures["models"][name] = _print_model(name, trials)
    path = write_result(args.out, "throughput", figures, f"-{Path(args.target).stem}")
    print(f"wrote {path}")
    return 0


def _models(given: str | None, scratch: Path) -> list[str]:
    if given:
        names = [name.strip() for name in given.split(",") if name.strip()]
    else:
        names = ["digits-cnn", "minilm" if _has_minilm() else "bert-base"]
    models = []
    for name in names:
        if name == "tiny-cnn":  # the tests' CNN, with a Flatten so any batch runs
            from autotune.testing.models import tiny_cnn

            name = str(tiny_cnn(scratch / "tiny-cnn.onnx", flatten=True))
        models.append(name)
    return models


def _has_minilm() -> bool:
    from importlib.util import find_spec

    from autotune.zoo import minilm

    return find_spec(minilm.MODULE) is not None


def _print_model(name: str, trials: list[Trial]) -> dict:
    """One row per config, and the int8/fp32 ratios; the figures for the result file."""
    by_config = {("fp32" if t.config.is_float else "int8"): t for t in trials}
    print(f"\n{name} on {trials[0].target}, OpenVINO (inferences/s)")
    header = (f"{'config':6} {'latency ms':>10} {'latency mode':>12} "
              + " ".join(f"{f'hint b{b}':>10}" for b in BATCHES)
              + f" {'best/latency':>12}  how")
    print(header)
    rows = {}
    for label, trial in by_config.items():
        if not trial.ok:
            print(f"{label:6} {trial.status}: {trial.error[:120]}")
            rows[label] = {"status": trial.status, "error": trial.error}
            continue
        latency_ips = 1000 / trial.latency_ms
        points = {p.requested: p for p in trial.throughput.points} if trial.throughput else {}
        cells = [f"{points[b].inferences_per_s:>10.1f}" if b in points and points[b].ok
                 else f"{'failed':>10}" for b in BATCHES]
        best = trial.throughput_ips
        gain = best / latency_ips if best else None
        how = "; ".join(f"b{p.requested}: {p.error or p.note or p.mode}{contention_text(p)}"
                        for p in points.values())
        print(f"{label:6} {trial.latency_ms:>10.4f} {latency_ips:>12.1f} {' '.join(cells)} "
              f"{'-' if gain is None else f'{gain:.2f}x':>12}  {how}")
        rows[label] = {
            "status": "ok", "latency_ms": trial.latency_ms, "latency_mode_ips": latency_ips,
            "throughput": [p.to_json() for p in points.values()],
            "best_ips": best, "best_vs_latency_mode": gain,
            "meets_target": gain is not None and gain >= TARGET_GAIN}
    fp32, int8 = by_config.get("fp32"), by_config.get("int8")
    if fp32 and int8 and fp32.ok and int8.ok:
        latency_ratio = fp32.latency_ms / int8.latency_ms
        throughput_ratio = (int8.throughput_ips / fp32.throughput_ips
                            if int8.throughput_ips and fp32.throughput_ips else None)
        print(f"int8/fp32: throughput {_ratio(throughput_ratio)}, latency (speedup) "
              f"{_ratio(latency_ratio)}")
        rows["int8_vs_fp32"] = {"throughput_ratio": throughput_ratio,
                                "latency_ratio": latency_ratio}
    return rows


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    sys.exit(main())

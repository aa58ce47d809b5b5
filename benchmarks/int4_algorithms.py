"""int4 weight-only on all-MiniLM-L6-v2: AWQ, scale estimation and GPTQ against round to nearest.

    python benchmarks/int4_algorithms.py [--group-size 128] [--scheme symmetric]

Runs fp32 and four int4 weight-only configs at one group size (``alg:`` rtn, awq,
scale_estimation, gptq) through the suite's driver on host-cpu with OpenVINO: each config
compressed by NNCF's ``compress_weights`` when OpenVINO compiles it (the data-aware ones on
the calibration split only), measured in its own worker, scored by the Spearman correlation
of the STS sentence pairs. The table gives Spearman and its drop against fp32, the compiled
model's size and the memory the suite measures, the time NNCF took to compress, and the
layers it left in int4 and int8 (NNCF keeps the embeddings and the last layer in int8).

AWQ only scales layers that match its patterns (a MatMul fed by an activation or a Multiply,
as in LLMs' gated feed-forward blocks); the script compresses the model with and without AWQ
once more and counts the MatMul weights AWQ changed, so a table never credits AWQ with
what round to nearest did. Writes benchmarks/results/int4_algorithms-DATE.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.cli.common import print_table  # noqa: E402
from autotune.config import QuantConfig  # noqa: E402
from autotune.driver import RunSettings, execute_run, start_run  # noqa: E402
from autotune.quantize import weight_compression  # noqa: E402
from autotune.search import ExhaustiveSearch  # noqa: E402
from autotune.space import configs_space  # noqa: E402
from autotune.store import Store  # noqa: E402
from autotune.target import load_target  # noqa: E402
from autotune.zoo import resolve_model  # noqa: E402
from benchmarks.result_file import write_result  # noqa: E402

ALGORITHMS = ("rtn", "awq", "scale_estimation", "gptq")


def weights_awq_changed(model_path: Path, config: QuantConfig, calibration) -> int:
    """How many compressed MatMul weights differ between ``config`` with AWQ and without."""
    import dataclasses

    import openvino

    from autotune.backends.openvino import compress_weights, transpose_matmul_weights

    def constants(algorithm: str) -> dict[str, np.ndarray]:
        network = openvino.Core().read_model(str(model_path))
        # Round to nearest reads no data, so the backend leaves its weights as [in, out]:
        # stored here as AWQ reads them ([out, in]), the two compare weight for weight.
        if algorithm == "rtn":
            transpose_matmul_weights(network)
        compression = dataclasses.replace(weight_compression(config), algorithm=algorithm)
        compressed, _ = compress_weights(network, compression, calibration)
        return {op.get_friendly_name(): op.get_data() for op in compressed.get_ops()
                if op.get_type_name() == "Constant" and len(op.get_output_shape(0)) >= 2}

    plain, scaled = constants("rtn"), constants("awq")
    return sum(name not in plain or plain[name].shape != values.shape
               or not np.array_equal(plain[name], values) for name, values in scaled.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--scheme", choices=("symmetric", "asymmetric"), default="symmetric")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    scheme = "sym" if args.scheme == "symmetric" else "asym"
    texts = [f"w:int4:{scheme}:per_group:{args.group_size} a:fp32"
             + ("" if algorithm == "rtn" else f" alg:{algorithm}") for algorithm in ALGORITHMS]
    space = configs_space(texts)
    model = resolve_model("minilm")
    target = load_target("host-cpu")
    with tempfile.TemporaryDirectory(prefix="autotune-int4-") as scratch:
        store = Store(f"sqlite:///{scratch}/int4.db")
        settings = RunSettings(backends=("openvino",), workspace=Path(scratch), progress=True,
                               trial_timeout_s=3600.0)
        run_id = start_run(store, model, space, [target], settings, ExhaustiveSearch())
        outcome = execute_run(store, run_id, space, [target], settings, ExhaustiveSearch())
        reference = store.get_run(run_id).reference_accuracy
    print("comparing AWQ's compressed weights with round to nearest's ...", flush=True)
    awq_changed = weights_awq_changed(model.path, space.configs[2], model.dataset.calibration)
    rows = []
    for trial in outcome.trials:
        compression = trial.details.get("weight_compression", {})
        rows.append({
            "config": trial.config.text, "algorithm": trial.config.weight_algorithm
            if trial.config.is_quantized else "fp32",
            "status": trial.status, "error": trial.error.splitlines()[0] if trial.error else "",
            "spearman": trial.accuracy, "drop": trial.accuracy_drop, "cosine": trial.cosine,
            "artifact_bytes": trial.artifact_size_bytes, "memory_bytes": trial.memory_bytes,
            "peak_memory_bytes": trial.peak_memory_bytes,
            "latency_median_ms": trial.latency_median_ms,
            "compress_s": compression.get("compress_s"),
            "weights_int4": compression.get("weights_int4"),
            "weights_int8": compression.get("weights_int8"),
            "weights_transposed": compression.get("weights_transposed"),
            "calibration_samples": compression.get("calibration_samples", 0)})
    print(f"\nrun {run_id}: minilm ({len(model.dataset.evaluation) // 2} sentence pairs, "
          f"{len(model.dataset.calibration)} calibration sentences), OpenVINO on "
          f"{target.name}; fp32 Spearman {reference:.4f}; int4 {args.scheme} per group of "
          f"{args.group_size}")

    def mib(value) -> str:
        return "-" if value is None else f"{value / 2**20:.1f}"

    print_table(["algorithm", "status", "Spearman", "drop", "cosine", "compiled MiB",
                 "memory MiB", "median ms", "compress s", "int4/int8 layers", "samples"],
                [[r["algorithm"], r["status"] if r["status"] == "ok" else
                  f"{r['status']}: {r['error'][:60]}",
                  "-" if r["spearman"] is None else f"{r['spearman']:.4f}",
                  "-" if r["drop"] is None else f"{r['drop']:+.4f}",
                  "-" if r["cosine"] is None else f"{r['cosine']:.4f}",
                  mib(r["artifact_bytes"]), mib(r["memory_bytes"]),
                  "-" if r["latency_median_ms"] is None else f"{r['latency_median_ms']:.1f}",
                  "-" if r["compress_s"] is None else f"{r['compress_s']:.1f}",
                  "-" if r["weights_int4"] is None else
                  f"{r['weights_int4']}/{r['weights_int8']}",
                  r["calibration_samples"]] for r in rows])
    print(f"AWQ changed {awq_changed} compressed weights against round to nearest"
          + (" (no AWQ pattern in this graph: its row is round to nearest's)"
             if awq_changed == 0 else ""))
    path = write_result(args.out, "int4_algorithms", {
        "model": "minilm", "target": target.name, "backend": "openvino", "run_id": run_id,
        "group_size": args.group_size, "scheme": args.scheme,
        "reference_spearman": reference,
        "calibration_samples": len(model.dataset.calibration),
        "evaluation_pairs": len(model.dataset.evaluation) // 2,
        "awq_weights_changed": awq_changed, "rows": rows})
    print(f"\nwrote {path}")
    return 0 if outcome.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())

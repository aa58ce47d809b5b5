"""Bias correction on digits-cnn: what NNCF's bias correction buys per-tensor int8, and its cost.

    python benchmarks/bias_correction.py [--granularity per_tensor] [--granularity per_channel]

For each granularity, three int8 models (symmetric int8 weights, asymmetric uint8
activations, minmax calibration on the 200-image calibration split):

- ``rtn``: the suite's plain config, onnxruntime's static quantizer;
- ``nncf, no bc``: NNCF's quantizer with bias correction off (not a config of the suite: it
  separates what bias correction does from what a different quantizer does);
- ``bc``: the config ``... alg:bc``, NNCF's quantizer with its (full) bias correction.

Each is quantized into a fresh cache (the quantizer's time with its modules imported, no
cached model) and compiled and run
by the OpenVINO backend on the 500 evaluation images; the table gives top-1 accuracy,
agreement with fp32's top-1, SQNR and the output error against fp32 as OpenVINO ran it.
Writes benchmarks/results/bias_correction-DATE.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.accuracy import first_outputs, quality  # noqa: E402
from autotune.cli.common import print_table  # noqa: E402
from autotune.config import FP32, QuantConfig  # noqa: E402
from autotune.measure import MeasurementProtocol  # noqa: E402
from autotune.quantize import QuantizedModel, file_hash, nncf_options, quantize  # noqa: E402
from autotune.target import load_target  # noqa: E402
from autotune.zoo import resolve_model  # noqa: E402
from benchmarks.result_file import write_result  # noqa: E402

OUTPUTS_ONLY = MeasurementProtocol(warmup_runs=0, min_repeats=1, min_time_s=0.0)


def nncf_without_bias_correction(model_path: Path, config: QuantConfig, calibration,
                                 out: Path) -> QuantizedModel:
    """``config`` (a bias-corrected one) quantized by NNCF with bias correction off."""
    import nncf
    import onnx

    from autotune.onnx_files import save_model

    options = nncf_options(config)
    options["advanced_parameters"].disable_bias_correction = True
    quantized = nncf.quantize(onnx.load(str(model_path)), nncf.Dataset(list(calibration)),
                              subset_size=len(calibration), **options)
    save_model(quantized, out)
    return QuantizedModel(out, config, "fp32", file_hash(model_path), fresh=True,
                          calibration_samples=len(calibration))


def outputs(model: QuantizedModel, evaluation, target, workdir: Path) -> np.ndarray:
    from autotune.backends.openvino import OpenVINOBackend

    backend = OpenVINOBackend()
    workdir.mkdir(parents=True, exist_ok=True)
    artifact = backend.compile(model, target, workdir)
    return first_outputs(backend.measure(artifact, evaluation, target, OUTPUTS_ONLY).outputs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--granularity", action="append", choices=("per_tensor", "per_channel"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    granularities = args.granularity or ["per_tensor", "per_channel"]
    # Both quantizers imported before any is timed: a first call must not pay an import.
    import nncf  # noqa: F401
    import onnxruntime.quantization  # noqa: F401
    source = resolve_model("digits-cnn")
    dataset = source.dataset
    target = load_target("host-cpu")
    rows = []
    with tempfile.TemporaryDirectory(prefix="autotune-bias-correction-") as scratch:
        scratch = Path(scratch)
        reference = outputs(quantize(source.path, FP32, [], scratch / "cache"),
                            dataset.evaluation, target, scratch / "fp32")
        fp32 = quality(reference, reference, dataset.labels, dataset.metric)
        rows.append({"model": "fp32", "granularity": "-", "quantize_s": None,
                     "top1": fp32.accuracy, "agreement": 1.0, "sqnr_db": None, "mse": 0.0,
                     "mean_bias": 0.0, "config": FP32.text})
        for granularity in granularities:
            plain = QuantConfig("int8", "uint8", "symmetric", "asymmetric", granularity, None,
                                "minmax")
            corrected = QuantConfig("int8", "uint8", "symmetric", "asymmetric", granularity,
                                    None, "minmax", bias_correction=True)
            makers = [
                ("rtn (onnxruntime)", plain, lambda cache, c=plain:
                 quantize(source.path, c, dataset.calibration, cache)),
                ("nncf, no bc", corrected, lambda cache, c=corrected:
                 nncf_without_bias_correction(source.path, c, dataset.calibration,
                                              cache / "nncf-no-bc.onnx")),
                ("bc (nncf)", corrected, lambda cache, c=corrected:
                 quantize(source.path, c, dataset.calibration, cache)),
            ]
            for name, config, make in makers:
                cache = scratch / f"cache-{granularity}-{len(rows)}"
                cache.mkdir()
                print(f"{granularity}: quantizing {name} ...", flush=True)
                start = time.perf_counter()
                model = make(cache)
                quantize_s = time.perf_counter() - start
                candidate = outputs(model, dataset.evaluation, target,
                                    scratch / f"artifact-{len(rows)}")
                found = quality(candidate, reference, dataset.labels, dataset.metric)
                error = candidate - reference
                rows.append({"model": name, "granularity": granularity,
                             "quantize_s": round(quantize_s, 2), "top1": found.accuracy,
                             "agreement": found.top1_agreement,
                             "sqnr_db": round(found.sqnr_db, 2),
                             "mse": float(np.mean(error ** 2)),
                             # What bias correction corrects: the mean shift of each output.
                             "mean_bias": float(np.mean(np.abs(error.mean(axis=0)))),
                             "config": config.text})
    print(f"\ndigits-cnn on host-cpu (OpenVINO), {len(dataset.calibration)} calibration and "
          f"{len(dataset.evaluation)} evaluation images")
    print_table(["model", "weights", "quantize s", "top-1", "agrees w/ fp32", "SQNR dB",
                 "output MSE", "mean |bias|"],
                [[r["model"], r["granularity"],
                  "-" if r["quantize_s"] is None else f"{r['quantize_s']:.1f}",
                  f"{r['top1']:.4f}", f"{r['agreement']:.4f}",
                  "-" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f}",
                  f"{r['mse']:.5f}", f"{r['mean_bias']:.5f}"] for r in rows])
    path = write_result(args.out, "bias_correction", {
        "model": "digits-cnn", "target": "host-cpu", "backend": "openvino",
        "calibration_samples": len(dataset.calibration),
        "evaluation_samples": len(dataset.evaluation), "rows": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

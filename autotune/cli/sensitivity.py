"""``autotune sensitivity``: which layers of a model suffer most from quantization."""

from __future__ import annotations

from pathlib import Path

from autotune.cli.common import add_store_option, print_json, print_table, workspace_for

DEFAULT_BASE = "w:int8:sym:per_channel a:uint8:sym cal:minmax"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "sensitivity", help="per-layer sensitivity scan: quantize one layer at a time",
        description="Quantize each compute layer alone (the others kept in fp32), run it with "
                    "onnxruntime on the evaluation inputs and rank the layers by how far the "
                    "outputs move from fp32's: the layers a mixed-precision config keeps in "
                    "float (the mixed search space builds its configs from this ranking).")
    parser.add_argument("--model", default=None, help="zoo name or ONNX file "
                        "(default: digits-cnn)")
    parser.add_argument("--data", default=None, type=Path,
                        help=".npz with calibration/evaluation inputs for an ONNX file")
    parser.add_argument("--shape", default=[], action="append", metavar="INPUT=DIMS",
                        help="size of an ONNX file's dynamic input (as autotune run)")
    parser.add_argument("--config", default=DEFAULT_BASE, metavar="TEXT",
                        help=f"the integer config each layer is quantized with "
                             f"(default: '{DEFAULT_BASE}')")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_store_option(parser)  # its folder holds the quantization cache
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from autotune.config import ConfigError, QuantConfig
    from autotune.errors import InputError
    from autotune.sensitivity import scan
    from autotune.zoo import DEFAULT_MODEL, resolve_model

    try:
        base = QuantConfig.from_text(args.config)
    except ConfigError as error:
        raise InputError(f"--config {args.config!r}: {error}") from None
    model = resolve_model(args.model or DEFAULT_MODEL, args.data, input_shapes=args.shape)
    found = scan(model.path, base, model.dataset, workspace_for(args.store) / "cache")
    rank = {layer: index + 1 for index, layer in enumerate(found.ranking())}
    layers = sorted(found.layers, key=lambda s: rank[s.layer])
    if args.json:
        print_json({"model": model.name, "base": base.text, "ranking": found.ranking(),
                    "layers": found.to_dict()["layers"]})
        return 0
    print(f"{model.name}, each layer alone quantized as {base.text}; most sensitive first:")
    print_table(["rank", "layer", "op", "MACs", "1 - cosine", "SQNR dB", "task drop pp"],
                [[rank[s.layer], s.layer, s.op_type, s.macs, f"{s.fidelity_error:.3g}",
                  f"{s.sqnr_db:.1f}",
                  "-" if s.accuracy_drop is None else f"{s.accuracy_drop * 100:.2f}"]
                 for s in layers])
    return 0

"""Models as they come: dynamic dimensions, external data and exporter habits, made into the
static, single-file ONNX model every later stage takes.

Exporters (torch, Hugging Face) write models with symbolic batch and sequence dimensions,
weights in a separate data file, BatchNormalization left unfused after its convolution and
shape computations (``Shape -> Gather -> Concat -> Reshape``) that only resolve once the
input shapes are known. The quantizer, the graph analysis (FLOPs and bytes for the roofline)
and TVM need one shape per input, and a model's identity (its hash) must cover its weights.

So a model that needs it is prepared once, into the user cache:

1. every dynamic input dimension gets a size: from ``--shape NAME=1x128`` first, then from
   the ``--data`` arrays, then by the documented defaults (the first dimension, batch, is 1;
   a dimension named like a sequence, ``seq``/``sequence``/``length``/``tokens``, is 128);
   a dimension with none of these is an input error naming it;
2. the weights are read with their external data (a missing data file is an input error);
3. onnxruntime's basic graph optimizations fold what the shapes now fix (constant folding,
   BatchNormalization into the convolution before it), as onnxruntime's quantization
   pre-processing does, and ONNX shape inference annotates every tensor.

A model that is already static, single-file and free of these habits is used as it is, so
its hash (its identity in the store) does not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autotune.errors import InputError
from autotune.onnx_files import read_model
from autotune.paths import user_cache_dir

DEFAULT_BATCH = 1
DEFAULT_SEQUENCE = 128  # the zoo's BERT and MiniLM entries' length
SEQUENCE_NAMES = re.compile(r"seq|length|len$|tokens", re.IGNORECASE)
# Ops whose presence says an exporter left work for the compiler that folding does better.
FOLDED_HABITS = ("BatchNormalization", "Shape")
# Protobuf cannot hold a single-file model of 2 GiB or more.
MAX_SINGLE_FILE_BYTES = 2**31 - 2**24
PREPARE_VERSION = 1  # part of the cache key: a change in the steps remakes every model


@dataclass(frozen=True)
class PreparedModel:
    """The model the later stages take, where it came from and what was done to it."""

    path: Path
    source: Path
    shapes: dict[str, tuple[int, ...]]  # every input's shape, as the model now has it
    steps: tuple[str, ...] = field(default=())  # what preparing did, for the run's log

    @property
    def prepared(self) -> bool:
        return self.path != self.source


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"input_ids=1x128"`` -> ``("input_ids", (1, 128))``; InputError naming --shape."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(part) for part in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(size < 1 for size in shape):
        raise InputError(f"--shape {text}: expected INPUT=DIMS such as input_ids=1x128 or "
                         f"image=1x3x224x224 (positive sizes joined by x)")
    return name, shape


def parse_shapes(texts: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Each ``--shape`` once per input name."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, shape = parse_shape(text)
        if name in shapes and shapes[name] != shape:
            raise InputError(f"--shape {text}: input {name!r} already given as "
                             f"{'x'.join(map(str, shapes[name]))}")
        shapes[name] = shape
    return shapes


def prepare_model(path: Path, shapes: Mapping[str, tuple[int, ...]] | None = None,
                  data_shapes: Mapping[str, tuple[int, ...]] | None = None,
                  cache_dir: Path | None = None) -> PreparedModel:
    """The static single-file model for ``path`` (``path`` itself when it is one).

    Args:
        path: The ONNX file as the user gave it.
        shapes: ``--shape`` values by input name (whole shapes, batch included).
        data_shapes: The shape of one sample of each input in the user's data (batch
            included), which sizes what ``shapes`` leaves dynamic.
        cache_dir: Where prepared models are kept (default: the user cache's ``models``).

    Raises:
        InputError: one line naming the file, the input and the dimension.
    """
    path = Path(path)
    shapes = dict(shapes or {})
    graph = read_model(path).graph
    inputs = _graph_inputs(graph)
    _check_given(path, inputs, shapes)
    resolved, choices = _resolve(path, inputs, shapes, dict(data_shapes or {}))
    external = _external_files(path, graph)
    habits = sorted({node.op_type for node in graph.node if node.op_type in FOLDED_HABITS})
    if not choices and not external and not habits:
        return PreparedModel(path, path, resolved)

    key = _cache_key(path, external, resolved)
    folder = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "models"
    target = folder / f"{path.stem}-{key[:16]}.onnx"
    steps = tuple(
        [f"{name} {'x'.join(map(str, resolved[name]))}: {'; '.join(why)}"
         for name, why in choices.items()]
        + ([f"weights read from {', '.join(sorted(p.name for p in external))}"]
           if external else [])
        + ([f"folded by onnxruntime's basic optimizations ({', '.join(habits)} in the graph)"]
           if habits else ["folded by onnxruntime's basic optimizations"]))
    if not target.exists():
        model = _load_with_data(path)
        _fix_inputs(model, resolved)
        _write_prepared(model, target, path)
    return PreparedModel(target, path, resolved, steps)


def _graph_inputs(graph) -> dict[str, list[int | str] | None]:
    """Each real input (initializers excluded): its dims, an int or the symbolic name
    (``""`` for an unnamed dynamic dimension); None where the model gives no shape at all."""
    initializers = {tensor.name for tensor in graph.initializer}
    return {value.name: [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0
                         else dim.dim_param for dim in value.type.tensor_type.shape.dim]
            if value.type.tensor_type.HasField("shape") else None
            for value in graph.input if value.name not in initializers}


def _check_given(path: Path, inputs: Mapping[str, list], shapes: Mapping[str, tuple]) -> None:
    for name, shape in shapes.items():
        if name not in inputs:
            raise InputError(f"--shape {name}=...: {path} has no input {name!r} (inputs: "
                             f"{', '.join(inputs)})")
        dims = inputs[name]
        if dims is None:  # no shape in the model: --shape gives the rank too
            continue
        if len(shape) != len(dims):
            raise InputError(f"--shape {name}={'x'.join(map(str, shape))}: input {name!r} of "
                             f"{path} has {len(dims)} dimensions, not {len(shape)}")
        for index, (dim, size) in enumerate(zip(dims, shape, strict=True)):
            if isinstance(dim, int) and dim != size:
                raise InputError(f"--shape {name}={'x'.join(map(str, shape))}: dimension "
                                 f"{index} of input {name!r} is fixed at {dim} in {path}")


def _resolve(path: Path, inputs: Mapping[str, list], shapes: Mapping[str, tuple],
             data_shapes: Mapping[str, tuple]) -> tuple[dict[str, tuple[int, ...]],
                                                        dict[str, list[str]]]:
    """Every input's static shape, and for each input with a dynamic dimension how each
    was chosen. A symbolic name shared by several inputs (``batch``, ``sequence``) takes one
    size: the first input that sizes it decides, and the others must agree."""
    by_symbol: dict[str, tuple[int, str]] = {}
    for source, given in (("--shape", shapes), ("--data", data_shapes)):
        for name, shape in given.items():
            for dim, size in zip(inputs.get(name) or (), shape, strict=False):
                if isinstance(dim, str) and dim and dim not in by_symbol:
                    by_symbol[dim] = (size, source)
    resolved: dict[str, tuple[int, ...]] = {}
    choices: dict[str, list[str]] = {}
    for name, dims in inputs.items():
        if dims is None:
            given = shapes.get(name) or data_shapes.get(name)
            if given is None:
                raise InputError(f"{path}: input {name!r} has no shape in the model (not even "
                                 f"its rank); give --shape {name}=DIMS, e.g. 1x3x224x224")
            resolved[name] = tuple(given)
            choices[name] = [f"no shape in the model = {'x'.join(map(str, given))} "
                             f"({'--shape' if name in shapes else '--data'})"]
            continue
        sizes = []
        for index, dim in enumerate(dims):
            if isinstance(dim, int):
                sizes.append(dim)
                continue
            label = f"{dim!r}" if dim else "unnamed"
            for source, given in (("--shape", shapes), ("--data", data_shapes)):
                if name in given and index < len(given[name]):
                    size, why = given[name][index], source
                    break
            else:
                if dim in by_symbol:
                    size, why = by_symbol[dim][0], f"{by_symbol[dim][1]}, shared"
                elif index == 0:
                    size, why = DEFAULT_BATCH, "batch default"
                elif dim and SEQUENCE_NAMES.search(dim):
                    size, why = DEFAULT_SEQUENCE, "sequence default"
                else:
                    raise InputError(
                        f"{path}: dimension {index} ({label}) of input {name!r} is dynamic "
                        f"and has no default (batch {DEFAULT_BATCH}, sequence "
                        f"{DEFAULT_SEQUENCE}); give --shape {name}="
                        f"{_shape_hint(dims)} with the sizes you measure, or --data")
            if dim:
                agreed = by_symbol.setdefault(dim, (size, why))[0]
                if agreed != size:
                    raise InputError(f"{path}: dimension {label} is {agreed} for one input "
                                     f"and {size} for input {name!r}; give the same size")
            sizes.append(size)
            choices.setdefault(name, []).append(f"dim {index} {label} = {size} ({why})")
        resolved[name] = tuple(sizes)
    return resolved, choices


def _shapes_text(model) -> str:
    """``input_ids 1x128, attention_mask 1x128``: the sizes a message names."""
    dims = {value.name: [str(dim.dim_value) for dim in value.type.tensor_type.shape.dim]
            for value in model.graph.input}
    return ", ".join(f"{name} {'x'.join(sizes)}" for name, sizes in dims.items())


def _shape_hint(dims: Sequence[int | str]) -> str:
    """``[0: 'N', 3, 'H', 'W']`` -> ``1x3xHxW``: the fixed sizes, batch 1, names for the rest."""
    return "x".join(str(dim) if isinstance(dim, int) else str(DEFAULT_BATCH) if index == 0
                    else dim or "N" for index, dim in enumerate(dims))


def _external_files(path: Path, graph) -> list[Path]:
    """The external data files the model's initializers name, each checked to exist."""
    from onnx.external_data_helper import uses_external_data

    names = set()
    for tensor in graph.initializer:
        if uses_external_data(tensor):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            names.add(location)
    files = [path.parent / name for name in sorted(names)]
    for file in files:
        if not file.is_file():
            raise InputError(f"{path}: its weights are in an external data file {file.name!r} "
                             f"that is not next to it ({file})")
    size = sum(file.stat().st_size for file in files) + path.stat().st_size
    if size >= MAX_SINGLE_FILE_BYTES:
        raise InputError(f"{path}: {size / 2**30:.1f} GiB with its external data; models of "
                         f"2 GiB or more (protobuf's limit for one file) are not supported yet")
    return files


def _cache_key(path: Path, external: Sequence[Path], resolved: Mapping) -> str:
    import onnxruntime

    digest = hashlib.sha256()
    for file in (path, *external):
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    digest.update(json.dumps({"shapes": {k: list(v) for k, v in sorted(resolved.items())},
                              "onnxruntime": onnxruntime.__version__,
                              "version": PREPARE_VERSION}).encode())
    return digest.hexdigest()


def _load_with_data(path: Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=True)
    except Exception as error:
        raise InputError(f"{path}: its weights could not be read "
                         f"({type(error).__name__}: {str(error).splitlines()[0]})") from None


def _fix_inputs(model, resolved: Mapping[str, tuple[int, ...]]) -> None:
    """Static input dimensions; outputs and intermediate shapes are inferred again."""
    for value in model.graph.input:
        if value.name in resolved:
            shape = value.type.tensor_type.shape
            if not shape.dim:  # the model gave none: the rank comes from --shape
                for _ in resolved[value.name]:
                    shape.dim.add()
            for dim, size in zip(shape.dim, resolved[value.name], strict=True):
                dim.Clear()
                dim.dim_value = size
    for value in model.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
    del model.graph.value_info[:]


def _write_prepared(model, target: Path, source: Path) -> None:
    """Folds ``model`` with onnxruntime's basic optimizations and writes it atomically to
    ``target`` (two runs may prepare the same model at once)."""
    import onnx
    import onnxruntime as ort

    target.parent.mkdir(parents=True, exist_ok=True)
    stem = f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    fixed, folded = target.with_name(stem + ".in.onnx"), target.with_name(stem + ".tmp")
    try:
        onnx.save(model, str(fixed))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        try:
            ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # the reason after onnxruntime's "Load model from X failed:"
            reason = str(error).splitlines()[0].partition(" failed:")[2] or str(error)
            raise InputError(f"{source}: onnxruntime cannot load it at the shapes "
                             f"{_shapes_text(model)}: {reason[:300]}") from None
        result = onnx.load(str(folded))
        used = {node.domain for node in result.graph.node}
        kept = [opset for opset in result.opset_import if opset.domain in used | {""}]
        del result.opset_import[:]
        result.opset_import.extend(kept)
        del result.graph.value_info[:]
        result = onnx.shape_inference.infer_shapes(result, data_prop=True)
        outputs = {value.name for value in result.graph.output}
        annotated = [v for v in result.graph.value_info if v.name not in outputs]
        del result.graph.value_info[:]
        result.graph.value_info.extend(annotated)
        onnx.checker.check_model(result)
        onnx.save(result, str(folded))
        os.replace(folded, target)
    finally:
        fixed.unlink(missing_ok=True)
        folded.unlink(missing_ok=True)

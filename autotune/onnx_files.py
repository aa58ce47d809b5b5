"""Writing the ONNX models autotune builds (zoo shapes, roofline micro-benchmarks, test
models): one checked, atomic way, so a half-written file never looks like a model."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

# The IR version every runtime here reads (onnx's newest is ahead of onnxruntime's).
IR_VERSION = 8


def checked(model):
    """``model`` at IR_VERSION, validated by onnx's checker."""
    import onnx

    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def read_model(path: Path):
    """The ONNX model at ``path`` without its external data (names and shapes are enough),
    or an InputError naming the file: missing, or not ONNX."""
    import onnx

    from autotune.errors import InputError

    try:
        return onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise InputError(f"{path}: model file not found") from None
    except Exception as error:  # onnx raises DecodeError and friends for non-ONNX bytes
        detail = str(error).splitlines()[0] if str(error) else "parse failed"
        raise InputError(f"{path}: not a readable ONNX model "
                         f"({type(error).__name__}: {detail})") from None


def save_model(model, path: Path) -> Path:
    """Checks ``model`` and writes it atomically (two runs may build the same model at once:
    each writes a name of its own, then renames it into place)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        onnx.save(checked(model), str(tmp_path))
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path

"""Trains the built-in ``digits`` CNN and writes it as an ONNX model.

Run with ``python -m autotune.zoo.train_digits``. The resulting
``autotune/zoo/models/digits_cnn.onnx`` is committed to the repository, so a
default install never needs torch; this script only exists to regenerate it.

The ONNX graph is assembled by hand with ``onnx.helper`` from the trained
weights instead of ``torch.onnx.export``: the graph stays minimal (Conv, Relu,
MaxPool, GlobalAveragePool, Flatten, Gemm) and no exporter dependencies are
needed. BatchNorm is used during training only and folded into the convs.

It trains on the clean training split (with random shifts); the evaluation accuracy it
prints and records is on the distorted evaluation split (``autotune.zoo.digits.distort``,
dataset version 2 on), the one every run scores configs on. The committed model was trained
before the splits were distorted, so its metadata records the clean split's 1.0000.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np

from autotune.zoo.digits import (
    DATASET_VERSION,
    IMAGE_SIZE,
    INPUT_NAME,
    OUTPUT_NAME,
    digits_splits,
)

SEED = 0
NUM_CLASSES = 10
OPSET = 17
IR_VERSION = 8  # The IR version that introduced opset 17; readable by older runtimes.
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "models" / "digits_cnn.onnx"

# (in_channels, out_channels, max-pool after this conv). Sized so compute, not
# per-call overhead, dominates fp32 latency on a 2-core CPU (~420M MACs, ~2 ms
# on OpenVINO CPU at f32). Most MACs sit in the cheap-in-parameters 32x32 stage,
# which keeps the ONNX file under 5 MB.
CONV_LAYERS: tuple[tuple[int, int, bool], ...] = (
    (1, 32, False),
    (32, 96, False),
    (96, 128, False),
    (128, 128, True),
    (128, 160, False),
    (160, 160, True),
    (160, 256, False),
)


def build_torch_model() -> Any:
    """Builds the training-time network (conv + BatchNorm + ReLU blocks)."""
    from torch import nn

    layers: list[nn.Module] = []
    for cin, cout, pool in CONV_LAYERS:
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(CONV_LAYERS[-1][1], NUM_CLASSES)]
    return nn.Sequential(*layers)


def fold_model(
    model: Any,
) -> tuple[list[tuple[np.ndarray, np.ndarray, bool]], np.ndarray, np.ndarray]:
    """Folds every BatchNorm into the preceding conv.

    Args:
        model: A trained network from :func:`build_torch_model`.

    Returns:
        ``(convs, fc_weight, fc_bias)`` where ``convs`` holds
        ``(weight, bias, pool_after)`` per conv, all float32 numpy arrays.
    """
    from torch import nn

    modules = list(model)
    convs: list[tuple[np.ndarray, np.ndarray, bool]] = []
    fc_w = fc_b = None
    for i, module in enumerate(modules):
        if isinstance(module, nn.Conv2d):
            bn = modules[i + 1]
            assert isinstance(bn, nn.BatchNorm2d)
            w = module.weight.detach().double().numpy()
            b = (
                module.bias.detach().double().numpy()
                if module.bias is not None
                else np.zeros(w.shape[0])
            )
            scale = bn.weight.detach().double().numpy() / np.sqrt(
                bn.running_var.detach().double().numpy() + bn.eps
            )
            w = w * scale[:, None, None, None]
            b = (
                b - bn.running_mean.detach().double().numpy()
            ) * scale + bn.bias.detach().double().numpy()
            pool = i + 3 < len(modules) and isinstance(modules[i + 3], nn.MaxPool2d)
            convs.append((np.ascontiguousarray(w, dtype=np.float32), b.astype(np.float32), pool))
        elif isinstance(module, nn.Linear):
            fc_w = module.weight.detach().numpy().astype(np.float32)
            fc_b = module.bias.detach().numpy().astype(np.float32)
    assert fc_w is not None and fc_b is not None
    return convs, fc_w, fc_b


def count_macs(convs: list[tuple[np.ndarray, np.ndarray, bool]], fc_w: np.ndarray) -> int:
    """Counts multiply-accumulates for one image (convs use 'same' padding)."""
    size = IMAGE_SIZE
    macs = 0
    for w, _, pool in convs:
        macs += int(np.prod(w.shape)) * size * size
        if pool:
            size //= 2
    return macs + int(np.prod(fc_w.shape))


def build_onnx(
    convs: list[tuple[np.ndarray, np.ndarray, bool]],
    fc_w: np.ndarray,
    fc_b: np.ndarray,
    metadata: dict[str, str],
    doc_string: str,
) -> Any:
    """Assembles the inference graph explicitly with ``onnx.helper``.

    Args:
        convs: Folded ``(weight, bias, pool_after)`` per conv.
        fc_w: Classifier weight, shape [classes, features].
        fc_b: Classifier bias, shape [classes].
        metadata: Key/value pairs stored as ``metadata_props``.
        doc_string: Human-readable model description.

    Returns:
        An ``onnx.ModelProto`` with all weights stored as initializers.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    inits = []
    cur = INPUT_NAME
    for i, (w, b, pool) in enumerate(convs):
        wn, bn, out = f"conv{i}.weight", f"conv{i}.bias", f"conv{i}"
        inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        nodes.append(
            helper.make_node(
                "Conv",
                [cur, wn, bn],
                [out],
                name=f"Conv_{i}",
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                strides=[1, 1],
            )
        )
        nodes.append(helper.make_node("Relu", [out], [f"relu{i}"], name=f"Relu_{i}"))
        cur = f"relu{i}"
        if pool:
            nodes.append(
                helper.make_node(
                    "MaxPool",
                    [cur],
                    [f"pool{i}"],
                    name=f"MaxPool_{i}",
                    kernel_shape=[2, 2],
                    strides=[2, 2],
                )
            )
            cur = f"pool{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [cur], ["gap"], name="GlobalAveragePool"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["features"], name="Flatten", axis=1))
    inits += [numpy_helper.from_array(fc_w, "fc.weight"), numpy_helper.from_array(fc_b, "fc.bias")]
    nodes.append(
        helper.make_node(
            "Gemm", ["features", "fc.weight", "fc.bias"], [OUTPUT_NAME], name="Gemm", transB=1
        )
    )
    graph = helper.make_graph(
        nodes,
        "digits_cnn",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, [1, 1, IMAGE_SIZE, IMAGE_SIZE]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, NUM_CLASSES])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="autotune.zoo.train_digits",
    )
    model.ir_version = IR_VERSION
    model.doc_string = doc_string
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Runs the static-batch-1 model sample by sample with onnxruntime."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate(
        [sess.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + 1]})[0] for i in range(len(x))]
    )
    return float((logits.argmax(1) == y).mean()), logits


def main(argv: list[str] | None = None) -> None:
    """Trains the CNN, exports it to ONNX and verifies the export."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(SEED)

    splits = digits_splits()
    x_train, y_train = (torch.from_numpy(a.copy()) for a in splits["train"])
    x_eval, y_eval = (torch.from_numpy(a.copy()) for a in splits["evaluation"])

    # channels_last makes oneDNN's CPU convolutions noticeably faster to train.
    model = build_torch_model().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
    )
    gen = torch.Generator().manual_seed(SEED)

    def predict(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x[i : i + 250]) for i in range(0, len(x), 250)])

    def shift(batch: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
        """Randomly translates each image by up to ``max_shift`` pixels (zero fill)."""
        padded = F.pad(batch, [max_shift] * 4)
        out = torch.empty_like(batch)
        offsets = rng.integers(0, 2 * max_shift + 1, size=(len(batch), 2))
        for i, (dy, dx) in enumerate(offsets):
            out[i] = padded[i, :, dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE]
        return out

    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total, seen = 0.0, 0
        for s in range(0, len(perm), args.batch_size):
            idx = perm[s : s + args.batch_size]
            xb = shift(x_train[idx]).contiguous(memory_format=torch.channels_last)
            yb = y_train[idx]
            loss = F.cross_entropy(model(xb), yb, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        elapsed = time.perf_counter() - start
        print(f"epoch {epoch + 1:3d}/{args.epochs}  loss {total / seen:.4f}  ({elapsed:.0f}s)")
    train_seconds = time.perf_counter() - start

    train_acc = float((predict(x_train).argmax(1) == y_train).float().mean())
    eval_logits_torch = predict(x_eval).numpy()
    eval_acc = float((eval_logits_torch.argmax(1) == y_eval.numpy()).mean())
    print(f"training time {train_seconds:.0f}s  train acc {train_acc:.4f}  eval acc {eval_acc:.4f}")

    convs, fc_w, fc_b = fold_model(model)
    macs = count_macs(convs, fc_w)
    params = sum(w.size + b.size for w, b, _ in convs) + fc_w.size + fc_b.size
    arch = (
        " -> ".join(
            f"conv3x3 {w.shape[1]}->{w.shape[0]}+relu" + (" -> maxpool2" if pool else "")
            for w, _, pool in convs
        )
        + f" -> gap -> gemm {fc_w.shape[1]}->{fc_w.shape[0]}"
    )
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    metadata = {
        "training_script": "autotune/zoo/train_digits.py",
        "dataset": "sklearn.datasets.load_digits (see autotune/zoo/digits.py)",
        "dataset_version": DATASET_VERSION,
        "train_accuracy": f"{train_acc:.4f}",
        "eval_accuracy": f"{eval_acc:.4f}",
        "seed": str(SEED),
        "date": date,
        "epochs": str(args.epochs),
        "parameters": str(params),
        "macs": str(macs),
        "architecture": arch,
    }
    doc = (
        f"Digits CNN ({arch}); trained by autotune/zoo/train_digits.py on {date}, seed {SEED}, "
        f"train acc {train_acc:.4f}, eval acc {eval_acc:.4f}. BatchNorm folded into convs."
    )
    onnx_model = build_onnx(convs, fc_w, fc_b, metadata, doc)

    import onnx

    args.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onnx_model, str(args.output))
    onnx.checker.check_model(str(args.output), full_check=True)

    ort_acc, ort_logits = onnx_accuracy(args.output, *splits["evaluation"])
    max_diff = float(np.abs(ort_logits - eval_logits_torch).max())
    size_mb = args.output.stat().st_size / 1e6
    print(f"wrote {args.output} ({size_mb:.2f} MB, {params} params, {macs / 1e6:.1f}M MACs)")
    print(f"onnxruntime eval acc {ort_acc:.4f}  torch eval acc {eval_acc:.4f}", end="  ")
    print(f"max |logit diff| {max_diff:.2e}")
    if ort_acc != eval_acc:
        raise SystemExit("onnxruntime accuracy differs from torch accuracy")


if __name__ == "__main__":
    main()

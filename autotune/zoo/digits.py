"""Data side of the built-in ``digits`` zoo model.

The default zoo model is a small CNN trained on scikit-learn's bundled
handwritten-digits data set, so the suite has a real, accurate model to tune
without downloading anything. This module only needs numpy, scipy and
scikit-learn (no torch), so benchmarks can load calibration and evaluation data
in a default install.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import zoom
from sklearn.datasets import load_digits

IMAGE_SIZE = 32
INPUT_NAME = "image"
OUTPUT_NAME = "logits"

SEED = 0
EVAL_SIZE = 500
CALIBRATION_SIZE = 200
_SOURCE_SIZE = 8


def upscale(images: np.ndarray) -> np.ndarray:
    """Upscales 8x8 digit images to ``IMAGE_SIZE`` x ``IMAGE_SIZE``.

    The raw 8x8 images are too small for a CNN whose cost is dominated by
    compute rather than call overhead, so they are enlarged with bilinear
    interpolation. Training and evaluation both go through this function, so
    the model always sees identically preprocessed pixels.

    Args:
        images: Array of shape [N, 8, 8] with values in [0, 1].

    Returns:
        float32 array of shape [N, 1, IMAGE_SIZE, IMAGE_SIZE].
    """
    factor = IMAGE_SIZE / _SOURCE_SIZE
    images = np.asarray(images, dtype=np.float32)
    scaled = zoom(images, (1.0, factor, factor), order=1, mode="nearest")
    return np.ascontiguousarray(scaled[:, None, :, :], dtype=np.float32)


@lru_cache(maxsize=1)
def _splits() -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
    """Builds the splits once; results are read-only so the cache stays valid."""
    data = load_digits()
    x = upscale(data.images / 16.0)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(y))
    bounds = {
        "evaluation": order[:EVAL_SIZE],
        "calibration": order[EVAL_SIZE : EVAL_SIZE + CALIBRATION_SIZE],
        "train": order[EVAL_SIZE + CALIBRATION_SIZE :],
    }
    out = []
    for name, idx in bounds.items():
        xs, ys = x[idx], y[idx]
        xs.setflags(write=False)
        ys.setflags(write=False)
        out.append((name, xs, ys))
    return tuple(out)


def digits_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns deterministic, disjoint train/calibration/evaluation splits.

    Quantization results are only comparable if every run calibrates and
    evaluates on exactly the same samples, and accuracy is only honest if
    neither of those overlaps the training data. The rule is: load
    ``sklearn.datasets.load_digits`` (1797 images), scale pixels by 1/16,
    upscale to 32x32 with :func:`upscale`, shuffle with
    ``np.random.default_rng(0).permutation``; the first 500 shuffled samples
    are ``evaluation``, the next 200 are ``calibration`` and the remaining
    1097 are ``train``. Each sample belongs to exactly one split.

    The arrays are cached and marked read-only; copy them before modifying.

    Returns:
        Mapping from split name ("train", "calibration", "evaluation") to
        ``(x, y)`` where ``x`` is float32 of shape [N, 1, 32, 32] and ``y``
        holds int64 class labels of shape [N].
    """
    return {name: (xs, ys) for name, xs, ys in _splits()}

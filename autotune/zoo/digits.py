"""Data side of the built-in ``digits`` zoo model.

The default zoo model is a small CNN trained on scikit-learn's bundled
handwritten-digits data set, so the suite has a real, accurate model to tune
without downloading anything. This module only needs numpy, scipy and
scikit-learn (no torch), so benchmarks can load calibration and evaluation data
in a default install.

Clean digits are too easy: every config, fp32 to int8 per-tensor, scored 100% top-1 on
them, so the default frontier had no accuracy axis. Calibration and evaluation images are
therefore distorted (rotated, scaled, shifted, partly covered and noisy; seeded, so every
run sees the same pixels): the model still reads most of them, and a config's rounding
decides some of the hard ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import affine_transform, zoom
from sklearn.datasets import load_digits

IMAGE_SIZE = 32
INPUT_NAME = "image"
OUTPUT_NAME = "logits"

SEED = 0
EVAL_SIZE = 500
CALIBRATION_SIZE = 200
_SOURCE_SIZE = 8

# Part of the dataset's identity (runs store a hash of the data, so trials on one version are
# never compared with trials on another). 2: distorted calibration and evaluation images.
DATASET_VERSION = "2"
CALIBRATION_SEED = 1  # the distortions' seeds: one per split, neither the shuffle's
EVALUATION_SEED = 2


@dataclass(frozen=True)
class Distortion:
    """How far an image may move from its clean form; each image draws its own amounts.

    Chosen by measurement (README: The model zoo): the committed CNN, trained on clean
    digits with small shifts, scores 86.8% top-1 on them at fp32; stronger distortions
    (contrast changes, 20 degree turns) took it far lower without a retrained model.
    """

    max_rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_shift_px: float = 2.0
    patch_px: int = 8  # side of one square set to background, anywhere in the image
    noise_std: float = 0.1  # Gaussian pixel noise, then clipped to [0, 1]


HARD = Distortion()


def distort(images: np.ndarray, seed: int, distortion: Distortion = HARD) -> np.ndarray:
    """Seeded random rotation, scale and shift about the centre, an occluding square and
    pixel noise for each image of ``images`` ([N, 1, S, S] in [0, 1]); returns a new array.
    """
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    size = images.shape[-1]
    centre = np.full(2, (size - 1) / 2)
    for index, image in enumerate(images[:, 0]):
        angle = np.deg2rad(rng.uniform(-distortion.max_rotation_deg,
                                       distortion.max_rotation_deg))
        scale = rng.uniform(*distortion.scale)
        shift = rng.uniform(-distortion.max_shift_px, distortion.max_shift_px, 2)
        # affine_transform maps output pixels to input pixels: the inverse of the motion.
        inverse = np.array([[np.cos(angle), -np.sin(angle)],
                            [np.sin(angle), np.cos(angle)]]) / scale
        moved = affine_transform(image, inverse, offset=centre - inverse @ (centre + shift),
                                 order=1, mode="constant", cval=0.0)
        if distortion.patch_px:
            top, left = rng.integers(0, size - distortion.patch_px + 1, 2)
            moved[top:top + distortion.patch_px, left:left + distortion.patch_px] = 0.0
        moved += rng.normal(0.0, distortion.noise_std, moved.shape)
        out[index, 0] = np.clip(moved, 0.0, 1.0)
    return out


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
    seeds = {"evaluation": EVALUATION_SEED, "calibration": CALIBRATION_SEED}
    out = []
    for name, idx in bounds.items():
        xs, ys = x[idx], y[idx]
        if name in seeds:
            xs = distort(xs, seeds[name])
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
    1097 are ``train``. Each sample belongs to exactly one split. Evaluation and
    calibration images are then distorted (:func:`distort`, seeds
    ``EVALUATION_SEED`` and ``CALIBRATION_SEED``); training images stay clean
    (the training script shifts them itself).

    The arrays are cached and marked read-only; copy them before modifying.

    Returns:
        Mapping from split name ("train", "calibration", "evaluation") to
        ``(x, y)`` where ``x`` is float32 of shape [N, 1, 32, 32] and ``y``
        holds int64 class labels of shape [N].
    """
    return {name: (xs, ys) for name, xs, ys in _splits()}

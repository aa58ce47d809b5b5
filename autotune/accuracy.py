"""Accuracy on the task metric and fidelity against the fp32 reference: pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Quality:
    """Task accuracy (None without labels) and fidelity of the outputs vs fp32."""

    accuracy: float | None
    top1_agreement: float
    sqnr_db: float
    cosine: float


def first_outputs(outputs: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Stack the first output of every sample into [samples, ...] float64."""
    return np.stack([np.asarray(sample[0], dtype=np.float64).reshape(-1) for sample in outputs])


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels).reshape(-1)))


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB; inf when the outputs are identical."""
    noise = np.sum((reference - candidate) ** 2)
    signal = np.sum(reference ** 2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def mean_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    numerator = np.sum(reference * candidate, axis=1)
    denominator = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 1.0)
    return float(np.mean(cosine))


def quality(candidate: np.ndarray, reference: np.ndarray, labels: np.ndarray | None,
            metric: str) -> Quality:
    """Score ``candidate`` outputs ([samples, features]) against fp32 ``reference`` outputs."""
    if candidate.shape != reference.shape:
        raise ValueError(f"output shape {candidate.shape} differs from the reference "
                         f"{reference.shape}")
    accuracy = None
    if metric == "top1" and labels is not None:
        accuracy = top1_accuracy(candidate, labels)
    agreement = float(np.mean(np.argmax(candidate, axis=1) == np.argmax(reference, axis=1)))
    return Quality(accuracy, agreement, sqnr_db(reference, candidate),
                   mean_cosine(reference, candidate))

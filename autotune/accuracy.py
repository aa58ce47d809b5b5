"""Accuracy on the task metric and fidelity against the fp32 reference: pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Quality:
    """The task metric (None for fidelity-only data) and fidelity of the outputs vs fp32."""

    accuracy: float | None
    top1_agreement: float
    sqnr_db: float
    cosine: float


def first_outputs(outputs: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Stack the first output of every sample into [samples, ...] float64."""
    return np.stack([np.asarray(sample[0], dtype=np.float64).reshape(-1) for sample in outputs])


def onnxruntime_outputs(model_path, samples: Sequence[dict]) -> np.ndarray:
    """First outputs of every sample as the model's graph means them ([samples, features]):
    onnxruntime on the CPU with graph optimizations off.

    Fused, onnxruntime turns QDQ patterns into its own integer kernels, which on x86 CPUs
    without VNNI multiply uint8 x int8 with saturating 16-bit sums (``vpmaddubsw``) and so
    do not compute what the graph says (seen: 4 quantization steps apart on an AVX2 EPYC).
    Unfused, each op runs as written: the reference for fidelity, integer lowerings and
    sensitivity scans alike.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(model_path), options,
                                           providers=["CPUExecutionProvider"])
    return first_outputs([session.run(None, feeds) for feeds in samples])


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels).reshape(-1)))


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy within each class of ``labels`` (keys are the labels as text)."""
    labels = np.asarray(labels).reshape(-1)
    hits = np.argmax(logits, axis=1) == labels
    return {str(label): float(np.mean(hits[labels == label])) for label in np.unique(labels)}


def worst_class(candidate: dict[str, float], reference: dict[str, float]) -> tuple[str, float]:
    """The class whose accuracy dropped most from ``reference`` (fp32's) to ``candidate``,
    and that drop; the first class in label order on ties."""
    drops = {label: reference[label] - candidate[label] for label in reference}
    label = max(drops, key=drops.get)
    return label, drops[label]


# The SQNR of identical outputs: infinite, stored as this finite figure (JSON and some SQL
# drivers reject infinities, and a table column of "inf" reads as an error).
SQNR_CEILING_DB = 999.0


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB; SQNR_CEILING_DB for identical outputs."""
    noise = np.sum((reference - candidate) ** 2)
    signal = np.sum(reference ** 2)
    if noise == 0:
        return SQNR_CEILING_DB
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def capped_sqnr_db(value: float | None) -> float | None:
    """``value`` with an infinite SQNR (identical outputs) at SQNR_CEILING_DB."""
    return None if value is None else min(value, SQNR_CEILING_DB)


def fidelity_error(cosine: float | None) -> float | None:
    """1 - cosine similarity of outputs vs fp32's: 0 for identical outputs, never negative.
    The accuracy drop of a run without labels, and the cost model's fidelity target."""
    return None if cosine is None else max(0.0, 1.0 - cosine)


def mean_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    numerator = np.sum(reference * candidate, axis=1)
    denominator = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 1.0)
    return float(np.mean(cosine))


def pair_cosines(embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair of consecutive rows (a0, b0, a1, b1, ...)."""
    if len(embeddings) % 2:
        raise ValueError(f"pair metrics need an even number of outputs, got {len(embeddings)}")
    first, second = embeddings[0::2], embeddings[1::2]
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    return np.sum(first * second, axis=1) / np.where(norms > 0, norms, 1.0)


def spearman(embeddings: np.ndarray, scores: np.ndarray) -> float:
    """Spearman correlation of the pairs' cosine similarities with their gold scores."""
    from scipy.stats import spearmanr

    similarities = pair_cosines(embeddings)
    if len(similarities) != len(scores):
        raise ValueError(f"{len(similarities)} output pairs but {len(scores)} gold scores")
    return float(spearmanr(similarities, scores).statistic)


# Whether a larger value of the metric is better; the accuracy drop is signed accordingly.
HIGHER_IS_BETTER = {"top1": True, "spearman": True, "cosine": True, "mse": False}


def task_score(outputs: np.ndarray, labels: np.ndarray | None, metric: str,
               reference: np.ndarray) -> float | None:
    """The task metric of ``outputs`` ([samples, features]); None for ``fidelity``.

    ``top1`` and ``spearman`` need labels (classes, or one gold score per pair of samples);
    ``cosine`` and ``mse`` compare with ``labels`` (target outputs, one row per sample) when
    given, else with the fp32 ``reference`` outputs.
    """
    if metric in ("top1", "spearman") and labels is None:
        return None
    if metric == "top1":
        return top1_accuracy(outputs, labels)
    if metric == "spearman":
        return spearman(outputs, np.asarray(labels, dtype=np.float64))
    if metric in ("cosine", "mse"):
        targets = reference if labels is None else np.asarray(
            labels, dtype=np.float64).reshape(len(labels), -1)
        if targets.shape != outputs.shape:
            raise ValueError(f"targets of shape {targets.shape} do not match the outputs "
                             f"{outputs.shape}")
        if metric == "cosine":
            return mean_cosine(targets, outputs)
        return float(np.mean((outputs - targets) ** 2))
    return None


def accuracy_drop(reference_score: float, score: float, metric: str) -> float:
    """How much worse ``score`` is than the fp32 ``reference_score`` (positive = worse)."""
    if HIGHER_IS_BETTER.get(metric, True):
        return reference_score - score
    return score - reference_score


def quality(candidate: np.ndarray, reference: np.ndarray, labels: np.ndarray | None,
            metric: str) -> Quality:
    """Score ``candidate`` outputs ([samples, features]) against fp32 ``reference`` outputs."""
    if candidate.shape != reference.shape:
        raise ValueError(f"output shape {candidate.shape} differs from the reference "
                         f"{reference.shape}")
    accuracy = task_score(candidate, labels, metric, reference)
    agreement = float(np.mean(np.argmax(candidate, axis=1) == np.argmax(reference, axis=1)))
    return Quality(accuracy, agreement, sqnr_db(reference, candidate),
                   mean_cosine(reference, candidate))

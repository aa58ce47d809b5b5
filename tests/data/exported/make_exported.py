"""Writes the exported models the "models as they come" tests take, with torch's own ONNX
exporters, as users get them: dynamic batch and sequence (or image size) dimensions, int64
token inputs, BatchNormalization left unfused, weights in an external data file.

Committed outputs (a few hundred KB), so the tests need no torch. To rebuild them:
``pip install torch==2.13.0 onnxscript && python tests/data/exported/make_exported.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).parent
VOCAB, HIDDEN, HEADS, LAYERS = 256, 32, 2, 2


class EncoderLayer(nn.Module):
    """BERT's post-norm encoder layer, written out so that both exporters trace the batch
    and sequence sizes as shape computations (nn.MultiheadAttention's legacy export fixes
    the sequence length it was traced with)."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
        self.out = nn.Linear(HIDDEN, HIDDEN)
        self.norm1 = nn.LayerNorm(HIDDEN)
        self.up = nn.Linear(HIDDEN, 4 * HIDDEN)
        self.down = nn.Linear(4 * HIDDEN, HIDDEN)
        self.norm2 = nn.LayerNorm(HIDDEN)

    def forward(self, x, additive_mask):
        batch, sequence = x.shape[0], x.shape[1]
        q, k, v = self.qkv(x).view(batch, sequence, 3, HEADS, HIDDEN // HEADS).permute(
            2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / (HIDDEN // HEADS) ** 0.5 + additive_mask
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, sequence, HIDDEN)
        x = self.norm1(x + self.out(context))
        return self.norm2(x + self.down(torch.nn.functional.gelu(self.up(x))))


class TinyBert(nn.Module):
    """A BERT-shaped encoder: token and position embeddings, post-norm encoder layers, a
    masked mean pool; takes int64 ``input_ids`` and ``attention_mask`` of any batch and
    sequence length up to 512."""

    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, HIDDEN)
        self.positions = nn.Embedding(512, HIDDEN)
        self.layers = nn.ModuleList(EncoderLayer() for _ in range(LAYERS))

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.tokens(input_ids) + self.positions(positions)
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, additive_mask)
        mask = attention_mask.unsqueeze(-1).to(x.dtype)
        return (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TinyCnn(nn.Module):
    """Conv, BatchNorm, ReLU twice, a global pool and a classifier: any batch and image size."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, image):
        return self.features(image)


def _settle_batchnorm(model: nn.Module) -> None:
    """Running statistics that are not the identity, so folding them changes the weights."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)


def main() -> None:
    torch.manual_seed(0)
    bert = TinyBert().eval()
    ids = torch.randint(1, VOCAB, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
    # torch's default (dynamo) exporter: symbolic dimensions named after the Dims.
    torch.onnx.export(bert, (ids, mask), HERE / "tiny_bert_dynamo.onnx",
                      input_names=["input_ids", "attention_mask"],
                      output_names=["sentence_embedding"],
                      dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                      "attention_mask": {0: batch, 1: sequence}},
                      dynamo=True, external_data=False)
    # The TorchScript exporter, as Hugging Face's older exports: Shape/Gather/Concat chains.
    torch.onnx.export(bert, (ids, mask), HERE / "tiny_bert_legacy.onnx", dynamo=False,
                      input_names=["input_ids", "attention_mask"],
                      output_names=["sentence_embedding"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                    "attention_mask": {0: "batch", 1: "sequence"},
                                    "sentence_embedding": {0: "batch"}}, opset_version=17)

    cnn = TinyCnn().eval()
    with torch.no_grad():
        _settle_batchnorm(cnn)
    image = torch.randn(1, 3, 32, 32)
    # Training-mode-preserving export keeps BatchNormalization nodes, unfused; the weights
    # go to an external data file.
    torch.onnx.export(cnn, (image,), HERE / "tiny_cnn_bn.onnx", dynamo=False,
                      input_names=["image"], output_names=["logits"],
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                      dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N"}},
                      opset_version=17)
    import onnx

    model = onnx.load(str(HERE / "tiny_cnn_bn.onnx"))
    data = HERE / "tiny_cnn_bn.onnx.data"
    data.unlink(missing_ok=True)  # onnx.save appends to an existing data file
    onnx.save(model, str(HERE / "tiny_cnn_bn.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location=data.name, size_threshold=0)
    data.chmod(0o644)


if __name__ == "__main__":
    main()

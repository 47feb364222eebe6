"""Attention and attention rollout against Hugging Face's own attention weights and closed forms."""

from __future__ import annotations

import torch
from torch import Tensor

from xaiboard.benchmark.registry import METHODS
from xaiboard.methods import attention  # noqa: F401  (register)
from xaiboard.tasks.minilm import MiniLMClassifier
from xaiboard.tasks.planted_text import PlantedText

FLOAT_TOL = 1e-6  # products of a few softmax matrices with rows summing to 1, in float32


class IdentityAttention:
    """A stand-in task whose model attends every token to itself only, read through ``[CLS]``
    and, in a second block, uniformly."""

    def attention_blocks(self, model, inputs) -> tuple[Tensor, Tensor]:
        layers = torch.eye(5).expand(3, 2, 2, 5, 5)
        readout = torch.tensor([[1.0, 0, 0, 0, 0], [0.2] * 5]).expand(2, 2, 5)
        return layers, readout

    def valid_features(self, inputs) -> Tensor:
        return torch.ones(2, 10, dtype=torch.bool)


def test_rollout_and_attention_of_identity_attention_are_the_readout():
    """Rollout of identity attention is the identity, so each token scores its readout weight."""
    task = IdentityAttention()
    expected = torch.tensor([1.0, 0, 0, 0, 0] + [0.2] * 5).expand(2, 10)
    for name in ("attention", "attention_rollout"):
        scores = METHODS.create(name).explain(None, None, torch.zeros(2, dtype=torch.long), task)
        torch.testing.assert_close(scores, expected, atol=FLOAT_TOL, rtol=0)


def test_attention_methods_read_huggingface_attentions_on_planted_text():
    task = PlantedText()
    model, batch = task.model(), task.samples("test", 4, seed=0)
    with torch.no_grad():
        out = model.bert.bert(input_ids=batch.inputs.input_ids, attention_mask=batch.inputs.attention_mask, output_attentions=True)
    first, last = (a.mean(dim=1) for a in out.attentions)  # 2 layers, heads averaged
    valid = batch.valid
    last_layer = METHODS.create("attention").explain(model, batch.inputs, batch.targets, task)
    torch.testing.assert_close(last_layer, last[:, 0].where(valid, 0.0), atol=FLOAT_TOL, rtol=0)
    eye = torch.eye(first.shape[-1])
    rollout = ((last + eye) / 2) @ ((first + eye) / 2)
    scores = METHODS.create("attention_rollout").explain(model, batch.inputs, batch.targets, task)
    torch.testing.assert_close(scores, rollout[:, 0].where(valid, 0.0), atol=FLOAT_TOL, rtol=0)
    assert (scores >= 0).all() and (scores.sum(dim=1) <= 1 + FLOAT_TOL).all()


def test_minilm_attention_blocks_per_chunk_with_the_fast_kernel_restored():
    """Two 8-token chunks per row: blocks are row-stochastic over attended keys, all-padding
    chunks are zero, the readout is uniform over attended tokens, and ``sdpa`` is back after."""
    model = MiniLMClassifier(2, window=8).eval()
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[0, 5:8], mask[1, 8:] = 0, 0
    embeds = torch.randn(2, 16, model.encoder.config.hidden_size)
    with torch.no_grad():
        layers, readout = model.attention_blocks(embeds, mask)
    assert layers.shape == (6, 2, 2, 8, 8) and readout.shape == (2, 2, 8)
    assert model.encoder.config._attn_implementation == "sdpa"
    keys = mask.view(1, 2, 2, 1, 8).bool().expand_as(layers)
    assert (layers[~keys] == 0).all()  # no attention to padding
    rows = layers.sum(dim=-1)
    torch.testing.assert_close(rows[:, 0], torch.ones_like(rows[:, 0]), atol=1e-5, rtol=0)
    assert (layers[:, 1, 1] == 0).all()  # the second row's second chunk is all padding
    torch.testing.assert_close(readout.flatten(1).sum(dim=1), torch.ones(2), atol=FLOAT_TOL, rtol=0)

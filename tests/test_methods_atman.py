"""AtMan against a hand-built BERT whose answer reads one token, in closed form; f = 0; MiniLM's
chunks; and the text tasks' models."""

from __future__ import annotations

import math

import pytest
import torch
from method_checks import assert_well_formed_and_deterministic
from torch import Tensor, nn
from transformers import BertConfig

from xaiboard.benchmark.registry import METHODS
from xaiboard.methods.atman import suppressed_keys
from xaiboard.tasks.minilm import MiniLMClassifier, MiniLMTask
from xaiboard.tasks.planted_text import PlantedText
from xaiboard.tasks.text import TextClassifier

#: float64 log-probabilities of float32 logits: differences are exact to ~1e-6 of the logits
#: (a few float32 ulps through two LayerNorms and a tanh); scores here are >= 1e-2
FLOAT_TOL = 1e-5
KEY_SCORE = 4.0  # the pre-softmax score every query pays the key word
HEAD = 3.0  # the target logit is HEAD * tanh(first hidden unit of [CLS])


def one_token_reader(vocab_size: int, max_length: int, key_id: int, kernel: str) -> TextClassifier:
    """A 1-layer, 1-head, 4-unit BERT whose every query scores the key word ``KEY_SCORE`` and every
    other token 0; the key word's value is ``sqrt(2) (1, -1, 0, 0)``, any other token's
    ``sqrt(2) (0, 0, 1, -1)``, the feed-forward block is zero and the pooler the identity, so the
    class-1 logit ``HEAD * tanh(...)`` grows with the attention ``[CLS]`` pays the key word."""
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=4, num_hidden_layers=1, num_attention_heads=1, intermediate_size=4,
        max_position_embeddings=max_length, num_labels=2, pad_token_id=0, attn_implementation=kernel,
    )
    model = TextClassifier(config).eval()
    bert, eye = model.bert.bert, torch.eye(4)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0 if "LayerNorm.weight" in name else 0.0)
        bert.embeddings.word_embeddings.weight[:] = torch.tensor([0.0, 0.0, 1.0, -1.0])
        bert.embeddings.word_embeddings.weight[key_id] = torch.tensor([1.0, -1.0, 0.0, 0.0])
        attention = bert.encoder.layer[0].attention
        # score = q . k / sqrt(4) with q = (t, 0, 0, 0), k = (h_0, 0, 0, 0) and h_0 = sqrt(2) for the key word
        attention.self.query.bias[0] = 2 * KEY_SCORE / math.sqrt(2)
        attention.self.key.weight[0, 0] = 1.0
        attention.self.value.weight[:] = eye
        attention.output.dense.weight[:] = eye
        bert.pooler.dense.weight[:] = eye
        model.bert.classifier.weight[1, 0] = HEAD
    return model


def closed_form(attended: int, suppression: float) -> float:
    """The key word's AtMan score: ``[CLS]`` pays it ``a = e^s / (e^s + n - 1)``, its state becomes
    ``LN(a u_key + (2 - a) u_other)`` (residual + attention, then the zero feed-forward block),
    and the score is the class-1 log-probability lost when ``s`` drops to ``(1 - f) s``."""

    def log_p1(score: float) -> float:
        a = math.exp(score) / (math.exp(score) + attended - 1)
        state = torch.tensor([a, -a, 2 - a, a - 2], dtype=torch.float64)
        first = nn.functional.layer_norm(state, (4,), eps=1e-12)[0]
        return -nn.functional.softplus(-HEAD * torch.tanh(first)).item()

    return log_p1(KEY_SCORE) - log_p1((1 - suppression) * KEY_SCORE)


@pytest.mark.parametrize("kernel", ["eager", "sdpa"])
def test_atman_on_a_one_token_reader_matches_its_closed_form(kernel):
    """The key word scores the closed form and ranks first; every other word scores 0, since
    damping a zero score changes nothing; padding and [CLS]/[SEP] are 0."""
    task = PlantedText()
    key_id = task.tokenizer.convert_tokens_to_ids("the")
    model = one_token_reader(len(task.tokenizer), task.max_length, key_id, kernel)
    inputs = task.encode(["a the an this", "it its they them the our we"])
    targets = torch.ones(2, dtype=torch.long)
    scores = METHODS.create("atman").explain(model, inputs, targets, task)
    expected = torch.zeros_like(scores)
    for row, attended in enumerate(inputs.attention_mask.sum(dim=1).tolist()):
        expected[row, inputs.input_ids[row] == key_id] = closed_form(attended, 0.9)
    torch.testing.assert_close(scores, expected, atol=FLOAT_TOL, rtol=0)
    assert (scores.argmax(dim=1) == (inputs.input_ids == key_id).int().argmax(dim=1)).all()


def test_no_suppression_scores_zero_and_the_hooks_are_removed():
    task = PlantedText()
    model, batch = task.model(), task.samples("test", 4, seed=0)
    scores = METHODS.create("atman", suppression=0.0).explain(model, batch.inputs, batch.targets, task)
    assert scores.abs().max() <= FLOAT_TOL  # the same forward pass, up to batch-size round-off
    key = model.bert.bert.encoder.layer[0].attention.self.key
    assert not key._forward_hooks


def test_atman_on_planted_text():
    """The explanation contract (zero on padding and [CLS]/[SEP] too), and the planted evidence
    is where the model loses the most."""
    task, method = PlantedText(), METHODS.create("atman")
    assert_well_formed_and_deterministic(method, task)
    model, batch = task.model(), task.samples("test", 8, seed=1)
    scores = method.explain(model, batch.inputs, batch.targets, task)
    top = scores.argmax(dim=1)
    assert batch.ground_truth[torch.arange(8), top].float().mean() >= 0.5


class ChunkedMiniLM(MiniLMTask):
    """MiniLM reading 16 wordpieces in two chunks of 8, with an untrained head."""

    name, version, num_classes, max_length = "test/minilm-chunks", "0", 2, 16

    def texts(self, split: str) -> tuple[list[str], Tensor]:
        return ["a truly wonderful and moving film with a great cast", "dull plot"], torch.tensor([1, 0])

    def model(self, device="cpu") -> nn.Module:
        torch.manual_seed(0)
        return MiniLMClassifier(2, window=8).eval()

    def train_model(self, seed=0, device="cpu"):
        raise NotImplementedError("a stand-in: its head stays untrained")


def chunkwise_log_prob(model: MiniLMClassifier, embeds: Tensor, mask: Tensor, token: int, target: int) -> Tensor:
    """One sample's target log-probability with ``token`` suppressed in its own chunk, the chunks
    encoded one by one and mean-pooled by hand (no chunk of this sample is all padding)."""
    states = []
    for chunk in range(2):
        factors = torch.ones(1, 8)
        if token // 8 == chunk:
            factors[0, token % 8] = 0.1
        part = slice(8 * chunk, 8 * chunk + 8)
        with suppressed_keys(model, factors):
            out = model.encoder(inputs_embeds=embeds[None, part], attention_mask=mask[None, part])
        states.append(out.last_hidden_state[0] * mask[part, None])
    pooled = torch.cat(states).sum(dim=0) / mask.sum()
    return model.head(pooled).double().log_softmax(dim=-1)[target]


def test_atman_suppresses_a_minilm_wordpiece_in_its_own_chunk():
    """A 16-wordpiece review in two windows of 8 (and a short one, whose second window is all
    padding and skipped): each score equals the hand-chunked computation."""
    task = ChunkedMiniLM()
    model, batch = task.model(), task.samples("test", 2, seed=0)
    scores = METHODS.create("atman").explain(model, batch.inputs, batch.targets, task)
    assert scores.shape == batch.valid.shape and (scores[~batch.valid] == 0).all()
    row = int(batch.inputs.attention_mask.sum(dim=1).argmax())
    mask, target = batch.inputs.attention_mask[row], int(batch.targets[row])
    assert mask.sum() > 8  # the long review fills both windows
    with torch.no_grad():
        embeds = model.get_input_embeddings()(batch.inputs.input_ids[row])
        full = model(inputs_embeds=embeds[None], attention_mask=mask[None]).double().log_softmax(dim=-1)[0, target]
        for token in batch.valid[row].nonzero().flatten().tolist():
            expected = full - chunkwise_log_prob(model, embeds, mask, token, target)
            # float32 MiniLM states through 6 layers, batched differently: ~1e-6 of the logits
            torch.testing.assert_close(scores[row, token].double(), expected, atol=1e-5, rtol=0)

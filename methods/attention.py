"""Attention-based explanations for transformer text classifiers: raw attention and rollout.

Both read the model's attention weights (``TextTask.attention_blocks``: averaged over heads, one
block per encoded chunk) and the classifier's **readout**, the weights with which its head reads
the last layer's token states (``[CLS]`` for a BERT classifier, every attended token equally
for a mean-pooling one). A token's score is how much attention the readout positions pay it:

- ``attention``: in the last layer, ``s_j = sum_i r_i A_L[i, j]``, the usual "attention as
  explanation" baseline (e.g. Jain & Wallace 2019 test it; Wiegreffe & Pinter 2019 reply);
- ``attention_rollout`` (Abnar & Zuidema 2020): attention composed through the layers with the
  residual stream as identity, ``R = A'_L ... A'_1`` with ``A'_l = (A_l + I) / 2`` (rows still sum
  to one), then ``s_j = sum_i r_i R[i, j]``.

One forward pass each, no gradients. Scores are nonnegative and sum to one over the sequence;
``[CLS]``/``[SEP]`` and padding are not features and are zeroed afterwards.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .base import Explainer


class AttentionExplainer(Explainer):
    """Scores from the attention blocks and readout of a text task's transformer."""

    modalities = frozenset({"text"})
    family = "attention"
    cost_class = "one pass"
    passes = "1 forward"

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        layers, readout = task.attention_blocks(model, inputs)
        flow = self.flow(layers)  # [B, C, W, W]: how much position i reads from position j
        scores = torch.einsum("bci,bcij->bcj", readout, flow).flatten(1)
        return scores.where(task.valid_features(inputs), 0.0)

    @abstractmethod
    def flow(self, layers: Tensor) -> Tensor:
        """``[B, C, W, W]`` from the layers' attention ``[layers, B, C, W, W]``."""


@METHODS.register("attention")
class LastLayerAttentionExplainer(AttentionExplainer):
    """Attention that the classifier's readout pays each token in the last layer, head-averaged."""

    name = "attention"
    paper = "Jain & Wallace, Attention is not Explanation, NAACL 2019 (the baseline they test)"
    description = "Last-layer attention from the classifier's readout, averaged over heads"

    def flow(self, layers: Tensor) -> Tensor:
        return layers[-1]


@METHODS.register("attention_rollout")
class AttentionRolloutExplainer(AttentionExplainer):
    """Attention rollout (Abnar & Zuidema 2020): head-averaged attention plus identity for the
    residual connection, multiplied from the first layer to the last."""

    name = "attention_rollout"
    paper = "Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020"
    description = "Attention rollout (Abnar & Zuidema 2020), residual as identity, heads averaged"

    def flow(self, layers: Tensor) -> Tensor:
        identity = torch.eye(layers.shape[-1], dtype=layers.dtype, device=layers.device)
        rollout = identity.expand_as(layers[0])
        for attention in layers:
            rollout = ((attention + identity) / 2) @ rollout
        return rollout

"""The removal engine: model scores for B samples x K keep-masks, batched and chunked.

Every faithfulness, robustness and sanity metric reduces to "how does the model's score for
the target class change when these features are removed?". The engine answers that for a
whole ``[B, K, *F]`` stack of keep-masks at once: it asks the task to build model-ready rows
(``Task.remove``) for a slice of the K masks, runs the model without gradients, and gathers the
target score, never leaving torch and never looping over samples in Python.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from .task import Task

Output = Literal["prob", "logit"]


class RemovalEngine:
    def __init__(self, task: Task, model: nn.Module, chunk_rows: int = 256) -> None:
        self.task = task
        self.model = model
        self.chunk_rows = chunk_rows

    @torch.no_grad()
    def scores(self, inputs: Any, keep: Tensor, targets: Tensor, output: Output = "prob") -> Tensor:
        """Target-class scores ``[B, K]`` for ``keep`` of shape ``[B, K, *F]``.

        ``output="prob"`` is the softmax probability of the target, ``"logit"`` its raw logit.
        """
        batch, k_total = keep.shape[:2]
        k_chunk = max(1, self.chunk_rows // max(batch, 1))
        parts = []
        for start in range(0, k_total, k_chunk):
            sub = keep[:, start : start + k_chunk]
            logits = self.task.predict(self.model, self.task.remove(inputs, sub))
            parts.append(target_scores(logits, targets.repeat_interleave(sub.shape[1]), output).view(batch, -1))
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def full(self, inputs: Any, targets: Tensor, output: Output = "prob") -> Tensor:
        """Target scores ``[B]`` of the unmodified inputs."""
        return target_scores(self.task.logits(self.model, inputs), targets, output)


def target_scores(logits: Tensor, targets: Tensor, output: Output = "prob") -> Tensor:
    """Pick each row's target-class score from ``[N, C]`` logits."""
    values = logits.softmax(dim=-1) if output == "prob" else logits
    return values.gather(1, targets.view(-1, 1)).squeeze(1)

"""The removal engine: model scores for B samples x K keep-masks, batched and chunked.

Every faithfulness, robustness and sanity metric reduces to "how does the model's score for
the target class change when these features are removed?". The engine answers that for a
whole ``[B, K, *F]`` stack of keep-masks at once: it asks the task to build model-ready rows
(``Task.remove``) for a slice of the K masks, runs the model under ``torch.inference_mode``,
and gathers the target score, never leaving torch and never looping over samples in Python.

Chunks: ``Task.remove`` sees all B samples and ``max(1, rows // B)`` masks at a time; where it
returns a tensor (images) the model sees at most ``rows`` rows per call, in near-equal parts,
so a batch of more than ``rows`` samples no longer forces larger model calls. ``rows`` is fixed
by the caller or settled per device (:mod:`.device`). The model runs per row, so chunking does
not change a value, bit for bit, with one exception the engine avoids: on a CPU a convolution
called on a single row can differ in the last float bit, so no call has one row unless the
whole input has. Results are ordinary tensors (made outside inference mode), so callers may
use them in autograd or modify them in place.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .device import ChunkSize
from .device import chunk_rows as default_chunk_rows
from .task import Task

Output = Literal["prob", "logit"]


class RemovalEngine:
    """Scores removals for one task and model.

    ``chunk_rows`` given: it sizes every chunk. ``None``: ``self.chunk_rows`` is the device's
    default (deterministic, for code that plans its own batches by it) and the engine's own
    calls use the size :class:`~.device.ChunkSize` measures on them.
    """

    def __init__(self, task: Task, model: nn.Module, chunk_rows: int | None = None) -> None:
        device = next(model.parameters(), torch.empty(0)).device
        self.task = task
        self.model = model
        self.chunk_rows = chunk_rows or default_chunk_rows(device, task)
        self._size = ChunkSize(task, model, device) if chunk_rows is None else None

    def scores(self, inputs: Any, keep: Tensor, targets: Tensor, output: Output = "prob") -> Tensor:
        """Target-class scores ``[B, K]`` for ``keep`` of shape ``[B, K, *F]``.

        ``output="prob"`` is the softmax probability of the target, ``"logit"`` its raw logit.
        """
        batch, k_total = keep.shape[:2]
        parts, start = [], 0
        with torch.inference_mode():
            while start < k_total:
                rows = self._rows()
                step = max(1, rows // max(batch, 1))
                if batch * (k_total - start - step) == 1:  # no one-row call at the end
                    step += 1
                sub = keep[:, start : start + step]
                timed = self._size is not None and self._size.measuring
                started = self._size.start() if timed else 0.0
                logits = self._predict(self.task.remove(inputs, sub), rows)
                parts.append(target_scores(logits, targets.repeat_interleave(sub.shape[1]), output).view(batch, -1))
                if timed:
                    self._size.record(rows, batch * sub.shape[1], started)
                start += step
        return torch.cat(parts, dim=1)

    def full(self, inputs: Any, targets: Tensor, output: Output = "prob") -> Tensor:
        """Target scores ``[B]`` of the unmodified inputs."""
        with torch.inference_mode():
            values = target_scores(self.task.logits(self.model, inputs), targets, output)
        return values.clone()

    def predict(self, model_inputs: Any) -> Tensor:
        """Logits ``[N, C]`` of model-ready rows (as ``Task.remove`` returns), in chunks."""
        with torch.inference_mode():
            logits = self._predict(model_inputs, self._rows())
        return logits.clone()

    def _rows(self) -> int:
        return self._size.rows() if self._size is not None else self.chunk_rows

    def _predict(self, model_inputs: Any, rows: int) -> Tensor:
        """The task's logits, at most ``rows`` rows per model call where the rows are one tensor
        (near-equal parts: none has one row while ``rows > 2``)."""
        if isinstance(model_inputs, Tensor) and model_inputs.shape[0] > rows:
            parts = model_inputs.tensor_split(math.ceil(model_inputs.shape[0] / rows))
            return torch.cat([self.task.predict(self.model, part) for part in parts])
        return self.task.predict(self.model, model_inputs)


def target_scores(logits: Tensor, targets: Tensor, output: Output = "prob") -> Tensor:
    """Pick each row's target-class score from ``[N, C]`` logits."""
    values = logits.softmax(dim=-1) if output == "prob" else logits
    return values.gather(1, targets.view(-1, 1)).squeeze(1)

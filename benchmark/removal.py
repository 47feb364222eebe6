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

Rows that many calls share are computed once per engine (the runner builds one per (task,
method) pair): the logits of the unmodified inputs (``full``, ``logits``: faithfulness and
monotonicity correlation, infidelity, the robustness metrics' clean logits) and of the two ends
of every removal path, every valid feature kept or none (deletion's and insertion's first and
last steps, ABPC's). A column of a keep-mask stack that is such an end for every sample is read
from the memo; a column is judged on valid features only, since ``Task.remove`` ignores padding
(deletion's last step keeps padding, insertion's first does not, and both remove every valid
feature). The memo is keyed by the inputs object and the in-place versions of its tensors, as
the image tasks' removal baseline, and holds the inputs so that their identity stays theirs;
inputs made in inference mode have no version and are not memoised.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .device import ChunkSize
from .device import chunk_rows as default_chunk_rows
from .task import Task

Output = Literal["prob", "logit"]
#: memo keys: the unmodified inputs, and the two ends of a removal path (over valid features)
End = Literal["unmodified", "all-kept", "none-kept"]
#: inputs objects whose rows an engine remembers (the batch, and a few others a metric may send)
MEMO_INPUTS = 4


@dataclass
class Known:
    """The rows an engine has computed for one inputs object: logits ``[B, C]`` per :data:`End`."""

    inputs: Any
    version: tuple[int, ...]
    valid: Tensor
    logits: dict[End, Tensor] = field(default_factory=dict)

    def ends(self, keep: Tensor) -> list[End | None]:
        """Per column of ``keep [B, K, *F]``: the end it is for every sample, else ``None``.

        A column that both keeps and removes a valid feature of the first sample is no end, and
        that is most columns (every inner step of a curve, every random subset), so only the
        other columns are checked over the whole batch: on a 64-image batch of 32 random subsets
        the full check was ~2 % of faithfulness correlation's time.
        """
        ends: list[End | None] = [None] * keep.shape[1]
        first_removes, first_keeps = _removes_and_keeps(self.valid[:1], keep[:1])
        candidates = (~(first_removes & first_keeps)).nonzero().flatten()
        if not len(candidates):
            return ends
        removes, keeps = _removes_and_keeps(self.valid, keep[:, candidates])
        for k, r, kept in zip(candidates.tolist(), removes.tolist(), keeps.tolist()):
            ends[k] = None if r and kept else "all-kept" if not r else "none-kept"
        return ends


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
        self._known: dict[int, Known] = {}

    def scores(self, inputs: Any, keep: Tensor, targets: Tensor, output: Output = "prob") -> Tensor:
        """Target-class scores ``[B, K]`` for ``keep`` of shape ``[B, K, *F]``.

        ``output="prob"`` is the softmax probability of the target, ``"logit"`` its raw logit.
        Columns that remove no valid feature, or every one, are computed once per inputs.
        """
        batch, k_total = keep.shape[:2]
        known = self._memo(inputs) if batch and k_total else None
        ends = known.ends(keep) if known is not None else [None] * k_total
        todo = [k for k, end in enumerate(ends) if end is None or end not in known.logits]
        computed = self._run(inputs, keep, todo, targets, output, ends, known)
        if len(todo) == k_total:
            return computed
        hits = {k: target_scores(known.logits[ends[k]], targets, output) for k in sorted(set(range(k_total)) - set(todo))}
        out = torch.empty(batch, k_total, dtype=next(iter(hits.values())).dtype, device=targets.device)
        out[:, todo] = computed
        for k, values in hits.items():
            out[:, k] = values
        return out

    def _run(
        self, inputs: Any, keep: Tensor, todo: list[int], targets: Tensor, output: Output, ends: list[End | None],
        known: Known | None,
    ) -> Tensor:
        """Scores ``[B, len(todo)]`` of columns ``todo`` of ``keep``, in chunks; the logits of
        columns that are an end go to ``known``."""
        batch, everything = keep.shape[0], len(todo) == keep.shape[1]
        parts, start = [], 0
        with torch.inference_mode():
            while start < len(todo):
                rows = self._rows()
                step = max(1, rows // max(batch, 1))
                if batch * (len(todo) - start - step) == 1:  # no one-row call at the end
                    step += 1
                columns = todo[start : start + step]
                sub = keep[:, start : start + step] if everything else keep[:, columns]
                # a measured chunk is timed unless it is the rest of a longer call: that would time
                # a smaller size under the candidate's name (a call's first chunk counts even when
                # the call is smaller than the candidate: such calls never reach its size)
                timed = self._size is not None and self._size.measuring and (start == 0 or len(columns) >= step)
                started = self._size.start() if timed else 0.0
                logits = self._predict(self.task.remove(inputs, sub), rows)
                parts.append(target_scores(logits, targets.repeat_interleave(sub.shape[1]), output).view(batch, -1))
                if timed:
                    self._size.record(rows, batch * sub.shape[1], started)
                for j, k in enumerate(columns):
                    if ends[k] is not None:
                        known.logits.setdefault(ends[k], logits.view(batch, len(columns), -1)[:, j].clone())
                start += step
        return torch.cat(parts, dim=1) if parts else torch.empty(batch, 0, device=targets.device)

    def full(self, inputs: Any, targets: Tensor, output: Output = "prob") -> Tensor:
        """Target scores ``[B]`` of the unmodified inputs."""
        return target_scores(self.logits(inputs), targets, output)

    def logits(self, inputs: Any) -> Tensor:
        """Logits ``[B, C]`` of the unmodified inputs, computed once per inputs (see the module)."""
        known = self._memo(inputs)
        if known is None or "unmodified" not in known.logits:
            with torch.inference_mode():
                logits = self.task.logits(self.model, inputs)
            if known is None:
                return logits.clone()
            known.logits["unmodified"] = logits
        return known.logits["unmodified"].clone()

    def _memo(self, inputs: Any) -> Known | None:
        """The memo of ``inputs`` (a new one if they are new or changed in place since), or
        ``None`` where they cannot be memoised; at most ``MEMO_INPUTS`` inputs are remembered."""
        version = tensors_version(inputs)
        if version is None:
            return None
        known = self._known.pop(id(inputs), None)
        if known is None or known.inputs is not inputs or known.version != version:
            known = Known(inputs, version, self.task.valid_features(inputs))
        self._known[id(inputs)] = known
        while len(self._known) > MEMO_INPUTS:
            self._known.pop(next(iter(self._known)))
        return known

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


def _removes_and_keeps(valid: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Per column of ``keep [B, K, *F]``: whether any sample removes a valid feature, and
    whether any keeps one (bool ``[K]`` each)."""
    valid = valid.unsqueeze(1)
    removes = (valid & ~keep).flatten(2).any(dim=2).any(dim=0)
    keeps = (valid & keep).flatten(2).any(dim=2).any(dim=0)
    return removes, keeps


def target_scores(logits: Tensor, targets: Tensor, output: Output = "prob") -> Tensor:
    """Pick each row's target-class score from ``[N, C]`` logits."""
    values = logits.softmax(dim=-1) if output == "prob" else logits
    return values.gather(1, targets.view(-1, 1)).squeeze(1)


def tensors_version(inputs: Any) -> tuple[int, ...] | None:
    """In-place versions of a task's inputs: a tensor, or a dataclass's tensor fields; ``None``
    for other inputs and for inference tensors (which have no version)."""
    if isinstance(inputs, Tensor):
        tensors = [inputs]
    elif dataclasses.is_dataclass(inputs):
        tensors = [v for v in (getattr(inputs, f.name) for f in dataclasses.fields(inputs)) if isinstance(v, Tensor)]
    else:
        return None
    if any(t.is_inference() for t in tensors):
        return None
    return tuple(t._version for t in tensors)

"""The runner's side of example explanations (``examples.py``): the first samples of an
evaluation batch, and the arrays an examples file holds for them.

What draws an input depends on the modality, and the board cannot ask the task (it imports no
task code), so the runner stores it: an image in ``[0, 1]`` display form (each image min-max
scaled, so normalised inputs display as they look), the token strings of a text (from the
task's tokenizer), a graph's edges per sample with node indices local to the sample and the
explained node of a node-level task. A task whose inputs are of another kind (a custom task
with its own input type) gets no examples rather than wrong pictures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .bench import take
from .task import Batch, Task

#: what a graph task's inputs must carry to be drawn (``tasks.graph.GraphInputs`` does)
GRAPH_FIELDS = ("edge_index", "edge_sample", "edge_slot", "center", "node_sample")


def first_samples(task: Task, batch: Batch, count: int) -> Batch:
    """The first ``count`` samples of ``batch`` (all of them if it has fewer), ground truth kept."""
    return sample_range(task, batch, 0, min(count, len(batch)))


def sample_range(task: Task, batch: Batch, start: int, stop: int) -> Batch:
    """Samples ``start .. stop - 1`` of ``batch``, ground truth kept, feature slots cut to the
    sub-batch's own (a shard of ``--shard-samples``, or the examples' first samples)."""
    index = torch.arange(start, stop, device=batch.targets.device)
    inputs = take(task, batch.inputs, index)
    valid = task.valid_features(inputs)
    truth = None if batch.ground_truth is None else crop(batch.ground_truth[index], valid.shape)
    ids = index if batch.ids is None else batch.ids[index]
    return Batch(inputs, batch.targets[index], batch.labels[index], valid, truth, ids)


def crop(values: Tensor, shape: torch.Size) -> Tensor:
    """The leading ``shape`` block of ``values``: a whole batch's rows and feature slots cut to a
    sub-batch's (graphs pad their edge slots to the batch's largest edge count)."""
    return values[tuple(slice(0, size) for size in shape)]


def example_arrays(task: Task, model: nn.Module, first: Batch, explanation: Tensor) -> dict[str, np.ndarray] | None:
    """The arrays of an examples file for ``first`` (``first_samples``) and ``explanation``
    (the first rows of a batch's explanation, or the explanation of ``first`` itself);
    ``None`` when the task's inputs are of a kind that cannot be drawn."""
    drawn = _drawing(task, model, first.inputs)
    if drawn is None:
        return None
    arrays = {
        "sample_ids": first.ids.cpu().numpy().astype(np.int64),
        "targets": first.targets.cpu().numpy().astype(np.int64),
        "valid": first.valid.cpu().numpy(),
        "scores": crop(explanation[: len(first)], first.valid.shape).detach().cpu().float().numpy(),
        **drawn,
    }
    if first.ground_truth is not None:
        arrays["ground_truth"] = first.ground_truth.cpu().bool().numpy()
    return arrays


def _drawing(task: Task, model: nn.Module, inputs: Any) -> dict[str, np.ndarray] | None:
    if task.modality == "image" and isinstance(inputs, Tensor) and inputs.ndim == 4 and inputs.shape[1] in (1, 3):
        return {"images": display_images(inputs)}
    if task.modality == "text" and isinstance(getattr(inputs, "input_ids", None), Tensor) and hasattr(task, "tokenizer"):
        rows = inputs.input_ids.tolist()
        return {"tokens": np.array([task.tokenizer.convert_ids_to_tokens(row) for row in rows], dtype=str)}
    if task.modality == "graph" and all(isinstance(getattr(inputs, name, None), Tensor) for name in GRAPH_FIELDS):
        return graph_arrays(task, model, inputs)
    return None


def display_images(images: Tensor) -> np.ndarray:
    """``[B, C, H, W]`` images as ``[B, H, W, C]`` float32 in ``[0, 1]``, each min-max scaled."""
    x = images.detach().cpu().float()
    low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    scaled = (x - low) / (high - low).clamp(min=torch.finfo(torch.float32).tiny)
    return scaled.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def graph_arrays(task: Task, model: nn.Module, inputs: Any) -> dict[str, np.ndarray]:
    """Each sample's edges with node indices local to it, its node count, and its explained node
    (``-1`` for graph-level tasks, where a sample's first node is only a handle)."""
    counts = torch.bincount(inputs.node_sample, minlength=len(inputs.center))
    start = torch.cumsum(counts, 0) - counts
    call = task.graph_call(model, inputs)
    node_level = call is not None and call.task_level == "node"
    center = inputs.center - start if node_level else torch.full_like(counts, -1)
    numpy = lambda t: t.detach().cpu().numpy().astype(np.int64)  # noqa: E731
    return {
        "edge_index": numpy(inputs.edge_index - start[inputs.edge_sample]),
        "edge_sample": numpy(inputs.edge_sample),
        "edge_slot": numpy(inputs.edge_slot),
        "node_counts": numpy(counts),
        "center": numpy(center),
    }

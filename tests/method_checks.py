"""Checks every method's test runs on a real task: the explanation is well formed."""

from __future__ import annotations

import torch
from torch import nn

from xaiboard.benchmark.task import Batch, Task
from xaiboard.methods.base import Explainer


def assert_well_formed(method: Explainer, task: Task, model: nn.Module, batch: Batch) -> None:
    """Right shape, finite, zero on padding, not all zero, and identical on a second call."""
    scores = method.explain(model, batch.inputs, batch.targets, task)
    assert scores.shape == batch.valid.shape
    assert torch.isfinite(scores).all()
    assert (scores[~batch.valid] == 0).all()
    assert scores.abs().sum() > 0
    assert torch.equal(scores, method.explain(model, batch.inputs, batch.targets, task))

"""Checks every method's test runs on each task it declares: the explanation contract of ``Explainer``."""

from __future__ import annotations

import torch

from xaiboard.benchmark.task import Task
from xaiboard.methods.base import Explainer


def assert_well_formed_and_deterministic(method: Explainer, task: Task, n: int = 4) -> None:
    """On ``n`` test samples: right shape, finite, zero on padding, not all zero, and identical on
    a second call (deterministic under the method's seed)."""
    model, batch = task.model(), task.samples("test", n, seed=0)
    scores = method.explain(model, batch.inputs, batch.targets, task)
    assert scores.shape == batch.valid.shape
    assert torch.isfinite(scores).all()
    assert (scores[~batch.valid] == 0).all()
    assert scores.abs().sum() > 0
    assert torch.equal(scores, method.explain(model, batch.inputs, batch.targets, task))

"""Cost metrics: what one explanation costs, read from the counts the runner takes.

The runner wraps each ``Explainer.explain`` call on a batch in
``xaiboard.benchmark.cost.count_passes`` and hands the result to the metrics as
``MetricContext.cost``. A batched method's cost cannot be split between the samples it
explained together, so every sample gets the batch average (``Cost.per_sample``); the
per-sample spread of these metrics is therefore zero within a batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS


def _per_sample(ctx: MetricContext, value: float) -> Tensor:
    return torch.full((len(ctx.batch),), float(value), device=ctx.explanation.device)


class CostMetric(Metric):
    """Shared metadata: lower is better, no upper bound, every modality."""

    family = "cost"
    direction = "lower"
    value_range = (0.0, float("inf"))
    reference = "Counted by xaiboard.benchmark.cost.count_passes (one pass = one sample row)"
    checked_against = "exact pass counts of known gradient calls (tests/test_metrics_user_proxy.py)"


@METRICS.register("cost_passes")
class CostPasses(CostMetric):
    """Model forward plus backward passes per explanation (batch average).

    A pass is one sample row through the model, so batched and unbatched methods compare:
    Saliency costs 2 (one forward, one backward), Integrated Gradients with 50 steps about 100.
    """

    name = "cost_passes"

    def compute(self, ctx: MetricContext) -> Tensor:
        per_sample = ctx.cost.per_sample(len(ctx.batch))
        return _per_sample(ctx, per_sample["forward_passes"] + per_sample["backward_passes"])


@METRICS.register("cost_seconds")
class CostSeconds(CostMetric):
    """Wall-clock seconds per explanation (batch average), on the device the run records."""

    name = "cost_seconds"

    def compute(self, ctx: MetricContext) -> Tensor:
        return _per_sample(ctx, ctx.cost.per_sample(len(ctx.batch))["seconds"])

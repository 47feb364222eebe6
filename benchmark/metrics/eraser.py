"""Faithfulness: ERASER comprehensiveness and sufficiency, as AOPC over top-k bins.

A rationale is *comprehensive* if the prediction collapses without it and *sufficient* if it
alone keeps the prediction. With the top-k attributed features as the rationale, for each k in
the bins (fractions of the sample's valid features):

    comprehensiveness = mean_k [ p(y|x) - p(y|x without its top-k features) ]   (higher better)
    sufficiency       = mean_k [ p(y|x) - p(y|only its top-k features kept) ]    (lower better)

with ``p`` the target-class probability and features removed by the task's missingness model.

Reference: DeYoung et al., "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL 2020
(bins 1, 5, 10, 20, 50 %; the per-bin drops are aggregated by AOPC, here their mean).

A bin covers ``max(1, round(fraction * n_valid))`` features (round half to even, as
``torch.round``), so a short text still removes one token at 1 %. The ranking is
``perturbation_curves.feature_ranks`` (ties by feature index, padding never ranked), so where a
fraction lies on a deletion/insertion grid the masks are exactly those curves' masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS
from ..removal import RemovalEngine
from .perturbation_curves import Mode, feature_ranks


def bin_keep_masks(explanation: Tensor, valid: Tensor, fractions: Sequence[float], mode: Mode) -> Tensor:
    """Bool keep-masks ``[B, len(fractions), *F]``, one per bin of top-ranked features.

    ``deletion`` keeps everything but each bin's top features (comprehensiveness),
    ``insertion`` keeps only them (sufficiency).
    """
    ranks = feature_ranks(explanation, valid)
    n_valid = valid.flatten(1).sum(dim=1, dtype=torch.float64)
    bins = torch.tensor(fractions, dtype=torch.float64, device=ranks.device)
    covered = torch.round(bins[None, :] * n_valid[:, None]).clamp(min=1).long()
    top = ranks[:, None, :] < covered[:, :, None]
    keep = ~top if mode == "deletion" else top
    return keep.view(keep.shape[0], len(fractions), *explanation.shape[1:])


def aopc(
    engine: RemovalEngine,
    inputs: Any,
    targets: Tensor,
    explanation: Tensor,
    valid: Tensor,
    fractions: Sequence[float],
    mode: Mode,
) -> Tensor:
    """Mean drop ``[B]`` of the target probability over the bins; all bins in one engine stack."""
    full = engine.full(inputs, targets, output="prob")
    kept = engine.scores(inputs, bin_keep_masks(explanation, valid, fractions, mode), targets, output="prob")
    return (full[:, None] - kept).mean(dim=1)


class EraserAOPC(Metric):
    """AOPC over the ERASER bins; subclasses fix ``mode`` (which side of the bins is kept).

    Defined for every modality: the bins are fractions of the task's own features and removal
    is the task's operator (pixels, tokens and edges alike).
    """

    mode: Mode
    family = "faithfulness"
    value_range = (-1.0, 1.0)
    reference = "DeYoung et al., ERASER: A Benchmark to Evaluate Rationalized NLP Models, ACL 2020"
    defaults = {"bins": (0.01, 0.05, 0.1, 0.2, 0.5)}

    def compute(self, ctx: MetricContext) -> Tensor:
        batch = ctx.batch
        return aopc(
            ctx.engine, batch.inputs, batch.targets, ctx.explanation, batch.valid, self.params["bins"], self.mode
        )


@METRICS.register("comprehensiveness")
class Comprehensiveness(EraserAOPC):
    """ERASER comprehensiveness: mean over bins of ``p(y|x) - p(y|x without the top-k)``.
    Higher is better: removing what the explanation ranks first should hurt the prediction."""

    name = "comprehensiveness"
    checked_against = "analytic values (no library implementation is used as reference)"
    mode = "deletion"
    direction = "higher"


@METRICS.register("sufficiency")
class Sufficiency(EraserAOPC):
    """ERASER sufficiency: mean over bins of ``p(y|x) - p(y|only the top-k kept)``.
    Lower is better (may be negative): the top-ranked features alone should keep the prediction."""

    name = "sufficiency"
    checked_against = "analytic values (no library implementation is used as reference)"
    mode = "insertion"
    direction = "lower"

"""User-proxy metrics: how well an explanation recovers a task's ground-truth features.

Every function here takes ``attributions`` (float ``[B, *F]``, higher = more important),
``ground_truth`` and ``valid`` (bool ``[B, *F]``) and returns one score per sample ``[B]``.
Only valid feature slots count: padding never ranks, never hits and never dilutes. A sample
whose ground truth is empty, or covers every valid feature, gets NaN: no ranking of its
features can be told apart from another, so the score would say nothing about the method.

Ties are resolved by their expected value under a uniformly random tie-break, so a constant
(uninformative) explanation scores exactly what a random one scores in expectation, instead
of being rewarded or punished by the sort order. Attributions must be finite.

The registered metrics rank features by attribution *magnitude* (parameter ``abs=True``), a
deliberate deviation from Quantus's default (``abs=False``): a ground-truth feature is relevant
evidence whether it pushes the prediction up or down, and signed methods such as Integrated
Gradients legitimately give evidence negative scores (on BA-Shapes, with degree-only node
features, adding house edges lowers the target logit along IG's path). Ranking by magnitude
follows OpenXAI's ground-truth agreement metrics (Agarwal et al., NeurIPS 2022). ``abs=False``
reproduces Quantus's default; the pure functions below never take the magnitude themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS

ScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _flatten(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[B, N]`` views; ground truth outside the valid slots is dropped."""
    valid = valid.flatten(1).bool()
    return attributions.flatten(1).to(torch.float64), ground_truth.flatten(1).bool() & valid, valid


def _undefined(ground_truth: Tensor, valid: Tensor) -> Tensor:
    """Bool ``[B]``: ground truth is empty or covers every valid feature."""
    n_gt = ground_truth.sum(1)
    return (n_gt == 0) | (n_gt == valid.sum(1))


def gt_auroc(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> Tensor:
    """ROC AUC of the attributions as a score for "feature is in the ground truth".

    Computed as the Mann-Whitney U statistic over average ranks, so a tie between a
    ground-truth and another feature counts 1/2 (as ``sklearn.metrics.roc_auc_score``):
    ``AUC = (sum of GT ranks - P(P+1)/2) / (P * N)`` with ``P`` GT and ``N`` other features.
    """
    a, gt, valid = _flatten(attributions, ground_truth, valid)
    a = a.masked_fill(~valid, torch.inf)
    ordered = a.sort(dim=1).values
    below = torch.searchsorted(ordered, a, side="left")
    at_or_below = torch.searchsorted(ordered, a, side="right")
    ranks = (below + at_or_below + 1).to(torch.float64) / 2
    pos = gt.sum(1).to(torch.float64)
    neg = valid.sum(1) - pos
    u = (ranks * gt).sum(1) - pos * (pos + 1) / 2
    return (u / (pos * neg)).masked_fill(_undefined(gt, valid), torch.nan).float()


def relevance_rank_accuracy(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> Tensor:
    """Share of the ``k = |GT|`` highest-attributed valid features that lie in the ground truth.

    Features tied with the k-th largest value fill the remaining top-k places pro rata, i.e.
    the score is its expectation over random tie-breaks (Arras et al., 2022).
    """
    a, gt, valid = _flatten(attributions, ground_truth, valid)
    a = a.masked_fill(~valid, -torch.inf)
    k = gt.sum(1)
    kth = a.sort(dim=1, descending=True).values.gather(1, (k - 1).clamp(min=0).unsqueeze(1))
    above, tied = valid & (a > kth), valid & (a == kth)
    share_of_tied = (tied & gt).sum(1) / tied.sum(1).clamp(min=1)
    hits = (above & gt).sum(1) + (k - above.sum(1)) * share_of_tied
    return (hits / k).masked_fill(_undefined(gt, valid), torch.nan).float()


def pointing_game(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> Tensor:
    """1 if the highest-attributed valid feature lies in the ground truth, else 0.

    With several features tied at the maximum the score is the share of them in the ground
    truth (the hit probability of a random tie-break), so an all-zero explanation scores the
    ground-truth share rather than a free hit (Zhang et al., 2018).
    """
    a, gt, valid = _flatten(attributions, ground_truth, valid)
    a = a.masked_fill(~valid, -torch.inf)
    at_max = valid & (a == a.max(dim=1, keepdim=True).values)
    score = (at_max & gt).sum(1) / at_max.sum(1)
    return score.masked_fill(_undefined(gt, valid), torch.nan).float()


class GroundTruthMetric(Metric):
    """A user-proxy metric that compares the explanation with the task's ground-truth mask."""

    family = "user_proxy"
    direction = "higher"
    value_range = (0.0, 1.0)
    needs_ground_truth = True
    defaults = {"abs": True}
    score: ClassVar[ScoreFn]

    def compute(self, ctx: MetricContext) -> Tensor:
        batch = ctx.batch
        if batch.ground_truth is None:
            raise ValueError(f"{self.name}: task {ctx.task.name} gave no ground truth for this batch")
        explanation = ctx.explanation.abs() if self.params["abs"] else ctx.explanation
        return type(self).score(explanation, batch.ground_truth, batch.valid)


@METRICS.register("gt_auroc")
class GroundTruthAUROC(GroundTruthMetric):
    """ROC AUC of the attribution scores against the ground-truth mask, per sample.

    Equals ``sklearn.metrics.roc_auc_score(gt, attribution)`` over the valid features and
    ``quantus.AUC``. 1 = every ground-truth feature outranks every other one, 0.5 = chance.
    """

    name = "gt_auroc"
    reference = (
        "Fawcett, 'An introduction to ROC analysis', Pattern Recognition Letters 27 (2006); "
        "as a localisation metric: Hedström et al., 'Quantus', JMLR 24 (2023)"
    )
    score = staticmethod(gt_auroc)


@METRICS.register("relevance_rank_accuracy")
class RelevanceRankAccuracy(GroundTruthMetric):
    """Fraction of the top-|GT| features (by attribution) that lie in the ground truth.

    Equals ``quantus.RelevanceRankAccuracy`` (``abs=False``) when the attributions have no ties
    at the k-th value; Quantus breaks such ties by ``np.argsort`` order, we by their expectation.
    A ground truth that covers every valid feature gives NaN here and 1 in Quantus.
    """

    name = "relevance_rank_accuracy"
    reference = (
        "Arras, Osman and Samek, 'CLEVR-XAI: A benchmark dataset for the ground truth evaluation "
        "of neural network explanations', Information Fusion 81 (2022)"
    )
    score = staticmethod(relevance_rank_accuracy)


@METRICS.register("pointing_game")
class PointingGame(GroundTruthMetric):
    """1 if the maximum of the attribution lies in the ground truth, else 0.

    Equals ``quantus.PointingGame`` (``weighted=False``) when the maximum is unique. Quantus
    counts a hit if *any* tied maximum is in the ground truth (so a constant map always hits);
    we score the share of tied maxima in it.
    """

    name = "pointing_game"
    reference = (
        "Zhang et al., 'Top-down Neural Attention by Excitation Backprop', IJCV 126 (2018)"
    )
    score = staticmethod(pointing_game)

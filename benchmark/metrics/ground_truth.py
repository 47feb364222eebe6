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
from .rank_correlation import average_ranks

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
    ranks = average_ranks(a, valid)
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


def gt_auprc(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> Tensor:
    """Average precision of the attributions as a score for "feature is in the ground truth".

    ``AP = 1/P sum_{i in GT} precision@rank(i)``, the mean precision at each ground-truth
    feature's rank, which is ``sklearn.metrics.average_precision_score`` when no ground-truth
    feature is tied with another feature. A tie group of ``m`` features (``g`` of them in the
    ground truth, ``A`` features and ``T`` ground-truth features above it) is scored by its
    expectation over random orders of the group: a ground-truth feature at group position ``s``
    (uniform on ``1..m``) has precision ``(T + 1 + (s-1)(g-1)/(m-1)) / (A + s)`` in expectation,
    which sums in closed form with harmonic numbers.
    """
    a, gt, valid = _flatten(attributions, ground_truth, valid)
    above, tied, gt_above, gt_tied = _tie_groups(a.masked_fill(~valid, -torch.inf), gt)
    span = _harmonic(above + tied) - _harmonic(above)
    later_hits = (gt_tied - 1) / (tied - 1).clamp(min=1) * (tied - (above + 1) * span)
    precision = ((gt_above + 1) * span + later_hits) / tied
    ap = (precision * gt).sum(1) / gt.sum(1)
    return ap.masked_fill(_undefined(gt, valid), torch.nan).float()


def _tie_groups(a: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per feature of ``a [B, N]``: how many features (and GT features) lie strictly above it
    and how many (and GT) share its value, as float64 ``[B, N]``; ``-inf`` padding is never above."""
    ordered, order = a.sort(dim=1)
    gt_cum = torch.nn.functional.pad(gt.gather(1, order).cumsum(1), (1, 0))
    below = torch.searchsorted(ordered, a, side="left")
    through = torch.searchsorted(ordered, a, side="right")
    gt_below, gt_through = gt_cum.gather(1, below), gt_cum.gather(1, through)
    counts = (a.shape[1] - through, through - below, gt_cum[:, -1:] - gt_through, gt_through - gt_below)
    return tuple(c.to(torch.float64) for c in counts)


def _harmonic(n: Tensor) -> Tensor:
    """Harmonic numbers ``H_n = sum_{k<=n} 1/k`` of a float tensor (``H_0 = 0``)."""
    return torch.digamma(n + 1) + 0.5772156649015329


def relevance_mass_accuracy(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> Tensor:
    """Share of the attribution mass that falls inside the ground truth: ``sum_GT a / sum a``.

    Summed over the valid features. Padding never counts. An all-zero map has no mass to
    place; it is scored as the uniform map it ties with, i.e. the ground-truth share.
    """
    a, gt, valid = _flatten(attributions, ground_truth, valid)
    a = a.masked_fill(~valid, 0.0)
    total = a.sum(1)
    empty = (a == 0).all(1)
    share = gt.sum(1) / valid.sum(1)
    mass = torch.where(empty, share, (a * gt).sum(1) / total.masked_fill(empty, 1.0))
    return mass.masked_fill(_undefined(gt, valid), torch.nan).float()


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
    checked_against = "sklearn.metrics.roc_auc_score and quantus.AUC (1e-5)"
    deviation = (
        "ranks by |attribution| (abs=True; Quantus default signed): evidence counts whether it pushes the "
        "prediction up or down (OpenXAI); ties scored by their expectation"
    )
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
    checked_against = "quantus.RelevanceRankAccuracy (abs=False, no ties at k; 1e-5)"
    deviation = (
        "ranks by |attribution| (abs=True; Quantus default signed): evidence counts whether it pushes the "
        "prediction up or down (OpenXAI); ties at the k-th score counted by their expectation, so a constant "
        "map scores the ground-truth share"
    )
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
    checked_against = "quantus.PointingGame (unique maximum; 1e-5)"
    deviation = (
        "ranks by |attribution| (abs=True; Quantus default signed): evidence counts whether it pushes the "
        "prediction up or down (OpenXAI); a tie for the maximum scores the tied features' ground-truth share "
        "(Quantus gives a constant map a free hit)"
    )
    reference = (
        "Zhang et al., 'Top-down Neural Attention by Excitation Backprop', IJCV 126 (2018)"
    )
    score = staticmethod(pointing_game)


@METRICS.register("gt_auprc")
class GroundTruthAUPRC(GroundTruthMetric):
    """Average precision of the attribution scores against the ground-truth mask, per sample.

    Mean precision at the rank of each ground-truth feature. Unlike AUROC its chance level is
    tied to the ground-truth share, so it rewards putting the (few) evidence features first
    rather than merely above average. Equals ``sklearn.metrics.average_precision_score(gt,
    attribution)`` over the valid features when no ground-truth feature shares its value with
    another; sklearn scores a tie group at its end (every member gets the group's final
    precision), which penalises ties, so a constant map scores the ground-truth share ``P/n``
    there but a random map ``(P-1)/(n-1) + H_n (n-P) / (n (n-1))`` in expectation. We score
    ties by their expectation under a random tie-break, as the other ground-truth metrics do, so
    a constant map scores exactly the random map's expectation.
    """

    name = "gt_auprc"
    reference = (
        "Davis and Goadrich, 'The relationship between precision-recall and ROC curves', ICML "
        "2006; as a localisation metric: Hedström et al., 'Quantus', JMLR 24 (2023)"
    )
    checked_against = "sklearn.metrics.average_precision_score (no ties, 1e-5)"
    deviation = (
        "ranks by |attribution| (abs=True; Quantus default signed): evidence counts whether it pushes the "
        "prediction up or down (OpenXAI); tied scores share the precision of their tie group, where sklearn "
        "orders them arbitrarily"
    )
    score = staticmethod(gt_auprc)


@METRICS.register("relevance_mass_accuracy")
class RelevanceMassAccuracy(GroundTruthMetric):
    """Share of the total attribution mass inside the ground truth (Arras et al., 2022).

    ``RMA = sum_{i in GT} a_i / sum_i a_i`` over the valid features. Equals
    ``quantus.RelevanceMassAccuracy`` with ``abs=False``; Quantus's default is also
    ``abs=False``, ours is ``abs=True`` (mass = magnitude, as the other ground-truth metrics;
    only then is the score a share in ``[0, 1]``: signed sums can cancel and make it unbounded).
    An all-zero map scores the ground-truth share (Quantus: NaN), and a ground truth that covers
    every valid feature gives NaN (Quantus: 1).
    """

    name = "relevance_mass_accuracy"
    reference = (
        "Arras, Osman and Samek, 'CLEVR-XAI: A benchmark dataset for the ground truth evaluation "
        "of neural network explanations', Information Fusion 81 (2022)"
    )
    checked_against = "quantus.RelevanceMassAccuracy (abs=False, 1e-5)"
    deviation = (
        "mass of |attribution| by default (abs=True; Quantus default signed)"
    )
    score = staticmethod(relevance_mass_accuracy)

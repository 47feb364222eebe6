"""User-proxy: agreement of a hard rationale with the human one, ERASER's token F1 and IOU F1.

ERASER (DeYoung et al., ACL 2020) scores *hard* rationales (sets of tokens) against human
rationales. A soft attribution becomes a hard rationale by keeping its top ``k`` tokens; ERASER
leaves ``k`` to the human rationales ("'k' is determined by human rationales", its
``metrics.py``; the paper uses the average human rationale length of a dataset). Per sample we
take ``k`` = that sample's number of ground-truth tokens, so a perfect explainer scores 1. Only
valid tokens are ranked (never ``[CLS]``/``[SEP]``/padding); ties break by token position, as
the perturbation curves do, so the rationale is deterministic.

- ``token_f1``: ``2 |P & T| / (|P| + |T|)`` over tokens, ERASER's per-instance token F1 (its
  "instance macro" F1 is the mean over instances, i.e. our leaderboard mean). With ``|P| = |T|``
  it equals precision and recall, and so equals ``relevance_rank_accuracy`` whenever no token is
  tied with the k-th score (that metric scores ties by their expectation; tested).
- ``iou_f1``: the rationales as maximal runs of contiguous tokens (spans); a predicted span is a
  hit when its best intersection-over-union with a true span is at least 0.5 (ERASER's partial
  match threshold, fixed by the definition); ``precision = hits / #predicted spans``,
  ``recall = hits / #true spans``, F1 their harmonic mean (0 when no hit). ERASER reports the F1
  of the *mean* precision and recall over instances; the per-sample F1 here is its instance
  value, so our mean over samples is the mean instance F1, not that dataset value.

A sample whose ground truth is empty or covers every valid token gets NaN (as every
ground-truth metric): every ranking then yields the same rationale.

Text only: rationales and spans are a reading-order notion; an image's pixel set or a graph's
edge set has no contiguous-span structure (``relevance_rank_accuracy`` is the token-F1 analogue
on every modality).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import METRICS
from .ground_truth import GroundTruthMetric
from .perturbation_curves import feature_ranks

ERASER = "DeYoung et al., ERASER: A Benchmark to Evaluate Rationalized NLP Models, ACL 2020"
IOU_THRESHOLD = 0.5


def top_k_rationale(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Bool ``[B, L]`` hard rationale (top ``|GT|`` valid tokens, ties by position) and the
    ground truth restricted to valid tokens."""
    truth = ground_truth.bool() & valid
    return feature_ranks(attributions, valid) < truth.sum(1, keepdim=True), truth


def _undefined(truth: Tensor, valid: Tensor) -> Tensor:
    """Bool ``[B]``: no token, or every valid token, is in the ground truth."""
    n_truth = truth.sum(1)
    return (n_truth == 0) | (n_truth == valid.sum(1))


def _f1(precision: Tensor, recall: Tensor) -> Tensor:
    """Harmonic mean, 0 where both are 0 (ERASER's ``_f1``)."""
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-12), torch.zeros_like(total))


def token_f1(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> Tensor:
    """Token-level F1 ``[B]`` of the top-``|GT|`` rationale against the ground truth."""
    pred, truth = top_k_rationale(attributions, ground_truth, valid)
    hits = (pred & truth).sum(1).to(torch.float64)
    f1 = 2 * hits / (pred.sum(1) + truth.sum(1)).clamp(min=1)
    return f1.masked_fill(_undefined(truth, valid), torch.nan).float()


def span_ids(mask: Tensor) -> Tensor:
    """Long ``[B, L]``: ``1, 2, ...`` numbering the maximal runs of True in each row, 0 elsewhere."""
    starts = mask & ~F.pad(mask[:, :-1], (1, 0), value=False)
    return starts.cumsum(1) * mask


def span_iou_f1(pred: Tensor, truth: Tensor, threshold: float = IOU_THRESHOLD) -> Tensor:
    """ERASER's partial-match F1 ``[B]`` of two bool ``[B, L]`` token masks, vectorised.

    One scatter counts the tokens of every (predicted span, true span) pair; span lengths are its
    margins, so every IoU of a batch comes from a single ``[B, S, S]`` tensor.
    """
    pred_id, true_id = span_ids(pred), span_ids(truth)
    n_pred, n_true = pred_id.amax(1), true_id.amax(1)
    size = int(max(n_pred.max(), n_true.max(), 1)) + 1
    rows = torch.arange(pred.shape[0], device=pred.device).unsqueeze(1).expand_as(pred_id)
    counts = torch.zeros(pred.shape[0], size, size, dtype=torch.float64, device=pred.device)
    counts.index_put_((rows, pred_id, true_id), torch.ones_like(pred_id, dtype=torch.float64), accumulate=True)
    overlap = counts[:, 1:, 1:]
    union = counts.sum(2)[:, 1:, None] + counts.sum(1)[:, None, 1:] - overlap
    best = (overlap / union.clamp(min=1)).amax(2)
    hits = (best >= threshold).sum(1).to(torch.float64)
    return _f1(hits / n_pred.clamp(min=1), hits / n_true.clamp(min=1))


def iou_f1(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> Tensor:
    """IOU F1 ``[B]`` of the top-``|GT|`` rationale's spans against the ground truth's spans."""
    pred, truth = top_k_rationale(attributions, ground_truth, valid)
    return span_iou_f1(pred, truth).masked_fill(_undefined(truth, valid), torch.nan).float()


class RationaleMetric(GroundTruthMetric):
    """A ground-truth metric on text rationales (ranks by magnitude, ``abs=True``, as the others)."""

    modalities = frozenset({"text"})
    reference = ERASER


@METRICS.register("token_f1")
class TokenF1(RationaleMetric):
    """Token F1 of the top-|GT| tokens against the human/planted rationale (ERASER).

    ``2 |P & T| / (|P| + |T|)``; with ``|P| = |T|`` it is the share of the top-|GT| tokens in the
    ground truth, i.e. ``relevance_rank_accuracy`` up to tie handling (ties by position here).
    """

    name = "token_f1"
    checked_against = "analytic cases; relevance_rank_accuracy without ties at k (1e-7)"
    deviation = (
        "k = the sample's ground-truth size (ERASER: a dataset-level k)"
    )
    score = staticmethod(token_f1)


@METRICS.register("iou_f1")
class IouF1(RationaleMetric):
    """IOU F1 of the top-|GT| tokens' spans against the rationale's spans (ERASER, IoU >= 0.5).

    Rewards explanations whose top tokens form the same phrases as the rationale, not merely the
    same tokens. The per-sample value is ERASER's instance F1 (``partial_match_score``).
    """

    name = "iou_f1"
    checked_against = "analytic cases; a loop transcription of ERASER's partial_match_score per instance (exact)"
    deviation = (
        "per-sample F1 (ERASER combines precision and recall over the dataset); k = the sample's ground-truth"
        " size"
    )
    score = staticmethod(iou_f1)

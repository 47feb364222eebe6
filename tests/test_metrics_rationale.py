"""ERASER token F1 and IOU F1: hand-computed cases, padding, and ERASER's instance formulas."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from xaiboard.benchmark.metrics.ground_truth import relevance_rank_accuracy
from xaiboard.benchmark.metrics.rationale import iou_f1, span_ids, span_iou_f1, token_f1
from xaiboard.benchmark.registry import METRICS


def mask(length: int, *tokens: int) -> Tensor:
    out = torch.zeros(1, length, dtype=torch.bool)
    out[0, list(tokens)] = True
    return out


def scores_for(tokens: list[int], length: int) -> Tensor:
    """An attribution whose top ``len(tokens)`` are ``tokens`` (descending in that order)."""
    a = torch.zeros(1, length)
    a[0, tokens] = torch.arange(len(tokens), 0, -1, dtype=torch.float32)
    return a


def test_perfect_and_disjoint_rationales():
    truth = mask(10, 2, 3, 4, 7)
    valid = torch.ones(1, 10, dtype=torch.bool)
    for fn in (token_f1, iou_f1):
        assert fn(truth.float(), truth, valid).item() == 1.0
        assert fn(scores_for([0, 1, 8, 9], 10), truth, valid).item() == 0.0


@pytest.mark.parametrize(
    "top, token, iou",
    [
        # P spans {2,3} {8,9}; T spans {2,3,4} {7}: IoU 2/3 is a hit, {8,9} misses -> p = r = 1/2
        ([2, 3, 8, 9], 0.5, 0.5),
        # one P span {3..6}: IoU 2/5 with {2,3,4}, 0 with {7} -> no hit
        ([3, 4, 5, 6], 0.5, 0.0),
        # P spans {2,3,4} {6}: {2,3,4} is a hit, {6} misses {7} -> p = r = 1/2; tokens 3 of 4
        ([2, 3, 4, 6], 0.75, 0.5),
        # one P span {1..4}: IoU 3/4 with {2,3,4} -> p = 1/1, r = 1/2, F1 = 2/3
        ([1, 2, 3, 4], 0.75, 2 / 3),
    ],
)
def test_hand_computed_partial_rationales(top, token, iou):
    truth = mask(10, 2, 3, 4, 7)
    valid = torch.ones(1, 10, dtype=torch.bool)
    a = scores_for(top, 10)
    assert token_f1(a, truth, valid).item() == pytest.approx(token)
    assert iou_f1(a, truth, valid).item() == pytest.approx(iou)


def test_padding_and_special_slots_never_count():
    """Slots 0 and 9 are invalid ([CLS], [SEP]) with the largest scores; they are never picked and
    split no span."""
    valid = torch.ones(1, 10, dtype=torch.bool)
    valid[0, [0, 9]] = False
    truth = mask(10, 1, 2, 9)  # ground truth on an invalid slot is dropped
    a = scores_for([0, 9, 1, 2], 10)
    assert token_f1(a, truth, valid).item() == 1.0 and iou_f1(a, truth, valid).item() == 1.0


def test_empty_or_full_ground_truth_is_nan():
    valid = torch.ones(2, 6, dtype=torch.bool)
    truth = torch.tensor([[False] * 6, [True] * 6])
    a = torch.rand(2, 6, generator=torch.Generator().manual_seed(0))
    assert token_f1(a, truth, valid).isnan().all() and iou_f1(a, truth, valid).isnan().all()


def test_token_f1_is_rank_accuracy_without_ties():
    g = torch.Generator().manual_seed(1)
    truth = torch.rand(200, 30, generator=g) < 0.3
    truth[:, 0], truth[:, -1] = True, False
    valid = torch.ones(200, 30, dtype=torch.bool)
    a = torch.randn(200, 30, generator=g)
    # two float32 ratios of the same counts, computed in another order: within a few ulps of values <= 1
    torch.testing.assert_close(token_f1(a, truth, valid), relevance_rank_accuracy(a, truth, valid), atol=1e-6, rtol=0)


def eraser_instance_iou_f1(pred: list[bool], truth: list[bool], threshold: float = 0.5) -> float:
    """ERASER's ``partial_match_score`` for one instance, from its definition with Python sets."""

    def spans(m: list[bool]) -> list[set[int]]:
        out: list[set[int]] = []
        for i, on in enumerate(m):
            if on and (i == 0 or not m[i - 1]):
                out.append(set())
            if on:
                out[-1].add(i)
        return out

    p_spans, t_spans = spans(pred), spans(truth)
    hits = sum(max((len(p & t) / len(p | t) for t in t_spans), default=0.0) >= threshold for p in p_spans)
    precision = hits / len(p_spans) if p_spans else 0.0
    recall = hits / len(t_spans) if t_spans else 0.0
    return 0.0 if precision == 0 or recall == 0 else 2 * precision * recall / (precision + recall)


def test_span_iou_f1_equals_erasers_instance_formula():
    g = torch.Generator().manual_seed(2)
    pred = torch.rand(300, 25, generator=g) < 0.4
    truth = torch.rand(300, 25, generator=g) < 0.35
    ours = span_iou_f1(pred, truth)
    theirs = [eraser_instance_iou_f1(p.tolist(), t.tolist()) for p, t in zip(pred, truth)]
    theirs = torch.tensor(theirs, dtype=torch.float64)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    assert (theirs > 0).sum() > 50 and (theirs < 1).sum() > 50


def test_span_ids_number_runs():
    m = torch.tensor([[True, True, False, True, False, False, True, True]])
    assert span_ids(m).tolist() == [[1, 1, 0, 2, 0, 0, 3, 3]]


def test_metadata():
    for name in ("token_f1", "iou_f1"):
        metric = METRICS.factory(name)
        assert metric.modalities == frozenset({"text"}) and metric.needs_ground_truth
        assert metric.family == "user_proxy" and metric.direction == "higher"

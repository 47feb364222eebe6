"""Grid pointing game: known values, chance level, padding, and quantus.Focus on 2x2 mosaics."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch

from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.grid import grid_pointing_game
from xaiboard.benchmark.metrics.ground_truth import relevance_mass_accuracy
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine


def quadrant_masks(targets: torch.Tensor, size: int) -> torch.Tensor:
    """Bool ``[B, size, size]``: quadrant ``t`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    half = size // 2
    out = torch.zeros(len(targets), size, size, dtype=torch.bool)
    for q in range(4):
        rows, cols = slice(half * (q // 2), half * (q // 2 + 1)), slice(half * (q % 2), half * (q % 2 + 1))
        out[targets == q, rows, cols] = True
    return out


def test_perfect_map_scores_one_whatever_its_negative_part():
    gt = quadrant_masks(torch.tensor([0, 1, 2, 3]), 8)
    a = torch.where(gt, torch.rand(gt.shape) + 0.1, -5 * torch.rand(gt.shape))
    assert torch.equal(grid_pointing_game(a, gt, torch.ones_like(gt)), torch.ones(4))


def test_hand_computed_share():
    a = torch.tensor([[3.0, -2.0, 1.0, 0.0, 4.0, -1.0]])
    gt = torch.tensor([[True, True, False, False, True, False]])
    # positive mass 3 + 1 + 4 = 8, inside 3 + 4 = 7
    assert grid_pointing_game(a, gt, torch.ones_like(gt)).item() == pytest.approx(7 / 8)


def test_uniform_random_map_scores_the_ground_truth_share():
    """n = 64 features, |GT| = 16, a ~ U(-1, 1), 4000 samples. By exchangeability the expectation
    is exactly 16/64. Delta method: a+ has mean 1/4 and variance 5/48, so S_in ~ (4, 5/3) and
    S_out ~ (12, 5); Var(S_in / S) ~ (12/256)^2 5/3 + (4/256)^2 5 = 0.0049, sd 0.070, standard
    error over 4000 samples 0.0011; tolerance 4 standard errors."""
    g = torch.Generator().manual_seed(0)
    gt = torch.zeros(4000, 64, dtype=torch.bool)
    gt.scatter_(1, torch.rand(4000, 64, generator=g).argsort(1)[:, :16], True)
    a = 2 * torch.rand(4000, 64, generator=g) - 1
    score = grid_pointing_game(a, gt, torch.ones_like(gt))
    assert score.mean().item() == pytest.approx(0.25, abs=4 * 0.0011)


def test_no_positive_attribution_scores_the_share_and_padding_never_counts():
    gt = torch.tensor([[True, False, False, False, True, True]])
    valid = torch.tensor([[True, True, True, True, False, False]])
    assert grid_pointing_game(-torch.rand(1, 6), gt, valid).item() == pytest.approx(1 / 4)
    padded = torch.tensor([[1.0, 1.0, 0.0, 2.0, 100.0, 100.0]])
    assert grid_pointing_game(padded, gt, valid).item() == pytest.approx(1 / 4)


def test_is_mass_accuracy_of_the_positive_part_and_signed_by_default(toy_task):
    a = torch.randn(5, 4, 4, generator=torch.Generator().manual_seed(1))
    model, batch = toy_task.model(), toy_task.samples("test", 5, seed=2)
    ctx = MetricContext(toy_task, model, batch, a, RemovalEngine(toy_task, model), 0, torch.device("cpu"))
    expected = relevance_mass_accuracy(a.clamp(min=0), batch.ground_truth, batch.valid)
    torch.testing.assert_close(METRICS.create("grid_pointing_game").compute(ctx), expected)
    metric = METRICS.factory("grid_pointing_game")
    assert metric.defaults == {"abs": False} and metric.modalities == frozenset({"image", "text", "graph"})


def test_equals_quantus_focus_on_2x2_mosaics():
    """Focus: positive relevance in the target's quadrant / total positive relevance (+1e-9)."""
    g = torch.Generator().manual_seed(3)
    targets = torch.randint(0, 4, (16,), generator=g)
    a = torch.randn(16, 12, 12, generator=g)
    ours = grid_pointing_game(a, quadrant_masks(targets, 12), torch.ones(16, 12, 12, dtype=torch.bool))
    positions = [tuple(int(q == t) for q in range(4)) for t in targets.tolist()]
    focus = quantus.Focus(normalise=False, abs=False, disable_warnings=True)
    theirs = np.asarray(focus.evaluate_batch(a_batch=a[:, None].numpy(), c_batch=positions))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-5)

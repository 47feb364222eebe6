"""ERASER comprehensiveness / sufficiency: hand-computed values on the toy task, the
all-features bin, and agreement with the deletion / insertion curves' masks."""

from __future__ import annotations

import math

import pytest
import torch

from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.eraser import aopc, bin_keep_masks
from xaiboard.benchmark.metrics.perturbation_curves import keep_masks, perturbation_curve
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.benchmark.task import Batch


@pytest.fixture
def setup(toy_task):
    model = toy_task.model()
    batch = toy_task.samples("test", 6, seed=3)
    return toy_task, model, batch, RemovalEngine(toy_task, model)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def planted_block_only(toy_task):
    """One class-1 image: 1.0 on the 2x2 block, 0 elsewhere. Toy logits are ``sum(block)`` for
    class 1 and ``0.5 * sum(all)`` for class 0, so ``p(1) = sigmoid(sum(block) - 0.5 sum(all))``."""
    x = toy_task.gt_mask().float().view(1, 1, 4, 4)
    return Batch(x, torch.tensor([1]), torch.tensor([1]), torch.ones(1, 4, 4, dtype=torch.bool))


def test_hand_computed_values_for_a_block_first_ranking(toy_task):
    """Ranking the 4 block pixels first; bins of 1, 4 and 8 of the 16 pixels.
    Comprehensiveness removes 1 block pixel (logit gap 3 - 1.5), then all of them (gap 0);
    sufficiency keeps 1 block pixel (gap 1 - 0.5), then the whole block (gap 2, unchanged)."""
    model, batch = toy_task.model(), planted_block_only(toy_task)
    engine = RemovalEngine(toy_task, model)
    explanation = torch.arange(16, 0, -1, dtype=torch.float32).view(1, 4, 4) + 100 * toy_task.gt_mask()
    bins = (1 / 16, 0.25, 0.5)
    args = (engine, batch.inputs, batch.targets, explanation, batch.valid, bins)
    full = sigmoid(2.0)
    comprehensiveness = ((full - sigmoid(1.5)) + 2 * (full - 0.5)) / 3
    sufficiency = (full - sigmoid(0.5)) / 3
    torch.testing.assert_close(aopc(*args, mode="deletion"), torch.tensor([comprehensiveness]))
    torch.testing.assert_close(aopc(*args, mode="insertion"), torch.tensor([sufficiency]))


def test_default_bins_cover_at_least_one_valid_feature():
    """16 valid features: round(0.16, 0.8, 1.6, 3.2, 8) = 0, 1, 2, 3, 8 -> 1, 1, 2, 3, 8;
    5 valid of 8 slots: round(.05, .25, .5, 1, 2.5) = 0, 0, 0, 1, 2 (half to even) -> 1, 1, 1, 1, 2."""
    bins = METRICS.factory("comprehensiveness").defaults["bins"]
    valid = torch.zeros(2, 16, dtype=torch.bool)
    valid[0], valid[1, :5] = True, True
    explanation = torch.zeros(2, 16)
    explanation[1, 5:] = 1e6  # padding slots with the largest scores are never ranked
    top = bin_keep_masks(explanation, valid, bins, "insertion")
    assert top.sum(-1).tolist() == [[1, 1, 2, 3, 8], [1, 1, 1, 1, 2]]
    assert not top[1, :, 5:].any()
    assert torch.equal(bin_keep_masks(explanation, valid, bins, "deletion"), ~top)


def test_the_all_features_bin_drops_to_the_baseline(setup):
    """Removing every feature gives p(y|x) - p(y|baseline) (the toy baseline scores 0.5);
    keeping every feature gives 0."""
    task, model, batch, engine = setup
    explanation = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(0))
    args = (engine, batch.inputs, batch.targets, explanation, batch.valid, (1.0,))
    full = engine.full(batch.inputs, batch.targets)
    torch.testing.assert_close(aopc(*args, mode="deletion"), full - 0.5)
    # differences of equal float32 probabilities from differently sized batches: a few ulps at most
    torch.testing.assert_close(aopc(*args, mode="insertion"), torch.zeros(6), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_grid_bins_are_the_perturbation_curves_masks(setup, mode):
    """Bins on the grid s / steps are the curves' masks at those steps (padding included), and
    the AOPC is the mean drop from the full input's score along that curve."""
    explanation = torch.zeros(2, 6)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    grid = (0.25, 0.5, 0.75, 1.0)
    assert torch.equal(bin_keep_masks(explanation, valid, grid, mode), keep_masks(explanation, valid, 4, mode)[:, 1:])

    task, model, batch, engine = setup
    explanation = torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(1))
    curve = perturbation_curve(engine, batch.inputs, batch.targets, explanation, batch.valid, steps=8, mode=mode)
    drops = engine.full(batch.inputs, batch.targets)[:, None] - curve[:, 1:]
    bins = tuple(s / 8 for s in range(1, 9))
    ours = aopc(engine, batch.inputs, batch.targets, explanation, batch.valid, bins, mode)
    torch.testing.assert_close(ours, drops.mean(dim=1))


def test_registered_metrics(setup):
    task, model, batch, engine = setup
    explanation = torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(2))
    ctx = MetricContext(task, model, batch, explanation, engine, seed=0, device=torch.device("cpu"))
    bins = (0.01, 0.05, 0.1, 0.2, 0.5)
    for name, mode, direction in [("comprehensiveness", "deletion", "higher"), ("sufficiency", "insertion", "lower")]:
        metric = METRICS.create(name)
        expected = aopc(engine, batch.inputs, batch.targets, explanation, batch.valid, bins, mode)
        torch.testing.assert_close(metric.compute(ctx), expected)
        assert metric.direction == direction and metric.value_range == (-1.0, 1.0)

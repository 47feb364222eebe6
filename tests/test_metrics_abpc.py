"""ABPC and the LeRF deletion order: closed-form properties on the toy task, Quantus equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch

from xaiboard.benchmark.cost import count_passes
from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.perturbation_curves import keep_masks, perturbation_curve
from xaiboard.benchmark.registry import METRICS

# float32 model outputs compared with Quantus running the same float32 model on numpy copies
TOL = 1e-5


def abpc(task, model, batch, engine, explanation, **params):
    ctx = MetricContext(task, model, batch, explanation, engine, seed=0, device=torch.device("cpu"))
    return METRICS.create("abpc", **params).compute(ctx)


def contribution(model, batch):
    """Exact share of each pixel in the target-minus-other logit gap of the toy linear model."""
    weights = model.fc.weight.view(2, 2, 16)[:, 0] - model.fc.weight.view(2, 2, 16)[:, 1]
    gap = weights[batch.targets] - weights[1 - batch.targets]
    return (batch.inputs.flatten(1) * gap).view(-1, 4, 4).detach()


def test_abpc_is_the_difference_of_independently_computed_curve_areas(setup):
    """LeRF on ``e`` is MoRF on ``-e`` when ``e`` has no ties; areas by numpy's trapezoid."""
    task, model, batch, engine = setup
    explanation = torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(0))
    morf = [
        perturbation_curve(engine, batch.inputs, batch.targets, e, batch.valid, steps=8).numpy()
        for e in (explanation, -explanation)
    ]
    expected = np.trapezoid(morf[1], dx=1 / 8, axis=1) - np.trapezoid(morf[0], dx=1 / 8, axis=1)
    np.testing.assert_allclose(abpc(*setup, explanation, steps=8).numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(abpc(*setup, -explanation, steps=8).numpy(), -expected, rtol=0, atol=1e-6)


def test_exact_ranking_is_positive_and_its_reverse_negative(setup):
    task, model, batch, engine = setup
    exact = contribution(model, batch)
    assert (abpc(*setup, exact) > 0.05).all()
    assert (abpc(*setup, -exact) < -0.05).all()


def test_constant_attribution_scores_zero_and_lerf_ties_break_by_index(setup):
    task, model, batch, engine = setup
    np.testing.assert_array_equal(abpc(*setup, torch.zeros(6, 4, 4)).numpy(), 0.0)
    explanation = torch.tensor([[3.0, 1.0, 1.0, 2.0, 9.0, 9.0]])
    valid = torch.tensor([[True] * 5 + [False]])  # the largest score sits on padding
    removed = (~keep_masks(explanation, valid, steps=5, mode="deletion", order="lerf")).int()
    assert removed[0, :, :5].tolist() == [
        [0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ]
    assert not removed[0, :, 5].any()


@pytest.mark.parametrize("order", ["lerf", "morf"])
def test_curves_equal_quantus_region_perturbation(setup, order):
    """One pixel per region and step: Quantus returns ``f(x) - f(x with the first s regions removed)``."""
    task, model, batch, engine = setup
    explanation = torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(2))  # no ties
    ours = perturbation_curve(
        engine, batch.inputs, batch.targets, explanation, batch.valid, steps=16, order=order
    ).numpy()
    metric = quantus.RegionPerturbation(
        patch_size=1, order=order, regions_evaluation=16, perturb_baseline=0.0, normalise=False, disable_warnings=True
    )
    x, y, a = batch.inputs.numpy(), batch.targets.numpy(), explanation[:, None].numpy()
    drops = np.asarray(metric(model, x, y, a_batch=a, channel_first=True, softmax=True, device="cpu"))
    np.testing.assert_allclose(ours[:, 1:], ours[:, :1] - drops, rtol=0, atol=TOL)


def test_abpc_reuses_the_deletion_curve_of_its_context(setup):
    """Deletion AUC and ABPC in one (task, method) context walk 2 curves, not 3; values as alone.
    The LeRF curve's two ends (every feature kept, none kept) are the MoRF curve's, which the
    context's removal engine computed already: 7 new steps per sample, not 9."""
    task, model, batch, engine = setup
    explanation = torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(3))
    ctx = MetricContext(task, model, batch, explanation, engine, seed=0, device=torch.device("cpu"))
    with count_passes(model) as cost:
        deletion = METRICS.create("deletion_auc", steps=8).compute(ctx)
        shared = METRICS.create("abpc", steps=8).compute(ctx)
    assert cost.forward_passes == 6 * (9 + 7)
    assert torch.equal(shared, abpc(*setup, explanation, steps=8))
    other = METRICS.create("abpc", steps=4).compute(ctx)  # another grid: its own curves
    assert torch.equal(other, abpc(*setup, explanation, steps=4))
    fresh = MetricContext(task, model, batch, explanation, engine, seed=0, device=torch.device("cpu"))
    assert torch.equal(deletion, METRICS.create("deletion_auc", steps=8).compute(fresh))

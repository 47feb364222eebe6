"""ROAD: the imputation against Quantus's and in closed form, and the curves against quantus.ROAD."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics import road
from xaiboard.benchmark.metrics.road import linear_imputation, noisy_linear_imputation, road_curve, road_removed_masks
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine

# float64 solves on both sides, float32 images and model outputs
TOL = 1e-5
PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def test_imputation_equals_quantus_on_colour_images_of_any_shape():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 7, 9, generator=g)
    removed = torch.rand(4, 7, 9, generator=g) < 0.6
    ours = linear_imputation(images, removed)
    for image, mask, imputed in zip(images, removed, ours):
        theirs = quantus_imputation(image.numpy(), indices=np.flatnonzero(mask.numpy()), noise=0.0)
        np.testing.assert_allclose(imputed.numpy(), theirs, rtol=0, atol=TOL)


def test_imputation_reproduces_linear_images_and_keeps_kept_pixels():
    """The symmetric neighbour mean of a plane ``a y + b x + c`` is the plane itself, so interior
    holes are filled exactly; kept pixels never change."""
    y, x = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    plane = torch.stack([0.3 * y - 0.2 * x + 1, 0.05 * x, -0.1 * y]).unsqueeze(0).repeat(2, 1, 1, 1)
    removed = torch.zeros(2, 10, 12, dtype=torch.bool)
    removed[0, 2:7, 3:9] = True
    removed[1, 1:9:2, 1:11:3] = True
    torch.testing.assert_close(linear_imputation(plane, removed), plane, atol=1e-5, rtol=0)
    noisy = noisy_linear_imputation(plane, removed, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(noisy.masked_select(~removed.unsqueeze(1)), plane.masked_select(~removed.unsqueeze(1)))


def test_imputation_does_not_depend_on_how_images_are_grouped_per_solve(monkeypatch):
    """A band matrix too small for two images solves one image at a time: the same values (each
    image's system is its own block of the band)."""
    g = torch.Generator().manual_seed(8)
    images = torch.rand(5, 2, 6, 8, generator=g)
    removed = torch.rand(5, 6, 8, generator=g) < 0.7
    removed[:, 0, 0] = False
    together = linear_imputation(images, removed)
    monkeypatch.setattr(road, "SOLVE_BYTES", 1)
    torch.testing.assert_close(linear_imputation(images, removed), together, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="every pixel is removed"):
        linear_imputation(images, torch.ones(5, 6, 8, dtype=torch.bool))


def test_noise_has_the_requested_std_on_removed_pixels_only():
    """3 channels x 2 x 600 removed pixels: the sample std of N(0, 0.2^2) is within 4 standard
    errors (0.2 / sqrt(2 * 3600) = 0.0024) of 0.2."""
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    removed = torch.rand(2, 40, 40, generator=torch.Generator().manual_seed(3)) < 0.375
    noisy = noisy_linear_imputation(images, removed, 0.2, torch.Generator().manual_seed(4))
    diff = noisy - linear_imputation(images, removed)
    assert diff.masked_select(removed.unsqueeze(1)).std().item() == pytest.approx(0.2, abs=4 * 0.2 / np.sqrt(2 * 3600))
    assert not diff.masked_select(~removed.unsqueeze(1)).any()


def test_removed_masks_floor_the_count_and_mirror_the_order():
    explanation = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(5))
    morf = road_removed_masks(explanation, (10, 50, 99), "morf")
    lerf = road_removed_masks(explanation, (10, 50, 99), "lerf")
    assert morf.flatten(2).sum(2).tolist() == [[3, 17, 34]] * 3  # floor(35 p / 100)
    top3 = explanation.flatten(1).topk(3).indices
    assert morf[:, 0].flatten(1).gather(1, top3).all()
    assert torch.equal(road_removed_masks(-explanation, (10, 50, 99), "morf"), lerf)


@pytest.fixture
def road_setup(toy_task):
    """12 toy samples (1 channel, 4x4: Quantus's ROAD works on single-channel images only)."""
    model = toy_task.model()
    batch = toy_task.samples("test", 12, seed=1)
    explanation = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(6))  # no ties
    ctx = MetricContext(toy_task, model, batch, explanation, RemovalEngine(toy_task, model, 40), 0, torch.device("cpu"))
    return ctx


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_accuracy_curve_equals_quantus_road(road_setup, order):
    """Quantus returns ``{p: batch accuracy}``; our per-sample curves average to it, and the batch
    mean of the registered score is the mean of Quantus's curve. LeRF = Quantus on ``1 - a`` (the
    reversed order; Quantus rejects all-negative maps)."""
    ctx = road_setup
    ours = road_curve(ctx, PERCENTAGES, order, noise=0.0, output="accuracy")
    attribution = ctx.explanation if order == "morf" else 1 - ctx.explanation
    metric = quantus.ROAD(percentages=list(PERCENTAGES), noise=0.0, normalise=False, abs=False, disable_warnings=True)
    theirs = metric(
        ctx.model,
        ctx.batch.inputs.numpy(),
        ctx.batch.targets.numpy(),
        a_batch=attribution[:, None].numpy(),
        channel_first=True,
        device="cpu",
    )
    assert list(theirs) == list(PERCENTAGES)
    np.testing.assert_allclose(ours.mean(0).numpy(), np.array(list(theirs.values())), rtol=0, atol=TOL)
    assert 0 < ours.mean() < 1, "the check needs decisions that change along the curve"
    score = METRICS.create(f"road_{order}", noise=0.0).compute(ctx)
    assert score.mean().item() == pytest.approx(np.mean(list(theirs.values())), abs=TOL)


def test_probability_output_and_metadata(road_setup):
    ctx = road_setup
    probs = road_curve(ctx, (25, 75), "morf", noise=0.01, output="prob")
    score = METRICS.create("road_morf", percentages=(25, 75), output="prob").compute(ctx)
    torch.testing.assert_close(score, probs.mean(1))  # same seeded noise: the context's generator
    assert ((probs > 0) & (probs < 1)).all()
    # noise is drawn per percentage group, not per engine chunk: other noise draws would move the
    # probabilities far more than 1e-6; 7-row calls may round differently from larger ones (1.2e-7 on
    # an AVX-512 CPU, where the CNN's kernels block the batch by its size), hence 1e-6
    ctx.engine.chunk_rows = 7
    torch.testing.assert_close(road_curve(ctx, (25, 75), "morf", noise=0.01, output="prob"), probs, atol=1e-6, rtol=0)
    morf, lerf = METRICS.factory("road_morf"), METRICS.factory("road_lerf")
    assert (morf.direction, lerf.direction) == ("lower", "higher")
    assert morf.modalities == lerf.modalities == frozenset({"image"})

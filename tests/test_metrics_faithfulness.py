"""Deletion / insertion curves: closed-form properties on the toy task, and Quantus equivalence."""

from __future__ import annotations

import numpy as np
import quantus
import torch

from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.perturbation_curves import (
    curve_auc,
    feature_ranks,
    keep_masks,
    perturbation_curve,
)
from xaiboard.benchmark.registry import METRICS

# float32 model outputs compared with Quantus running the same float32 model on numpy copies
TOL = 1e-5


def contribution(model, batch):
    """Exact share of each pixel in the target-minus-other logit gap of the toy linear model."""
    weights = model.fc.weight.view(2, 2, 16)[:, 0] - model.fc.weight.view(2, 2, 16)[:, 1]
    gap = weights[batch.targets] - weights[1 - batch.targets]
    return (batch.inputs.flatten(1) * gap).view(-1, 4, 4)


def curve(engine, batch, explanation, **kwargs):
    return perturbation_curve(engine, batch.inputs, batch.targets, explanation, batch.valid, **kwargs)


def test_deletion_curve_runs_from_the_full_input_to_the_baseline(setup):
    task, model, batch, engine = setup
    explanation = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(0))
    deletion = curve(engine, batch, explanation, steps=8)
    baseline_prob = model(torch.zeros_like(batch.inputs)).softmax(-1).gather(1, batch.targets[:, None])[:, 0]
    assert deletion.shape == (6, 9)
    torch.testing.assert_close(deletion[:, 0], engine.full(batch.inputs, batch.targets))
    torch.testing.assert_close(deletion[:, -1], baseline_prob.detach())
    assert torch.allclose(deletion[:, -1], torch.tensor(0.5))  # toy logits are 0 on a zero image


def test_insertion_curve_mirrors_deletion(setup):
    task, model, batch, engine = setup
    explanation = torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(1))
    deletion = curve(engine, batch, explanation, steps=16)
    insertion = curve(engine, batch, explanation, steps=16, mode="insertion")
    torch.testing.assert_close(insertion[:, 0], deletion[:, -1])
    torch.testing.assert_close(insertion[:, -1], deletion[:, 0])
    keep_del = keep_masks(explanation, batch.valid, 16, "deletion")
    keep_ins = keep_masks(explanation, batch.valid, 16, "insertion")
    assert torch.equal(keep_ins, ~keep_del)


def test_logit_output_starts_at_the_target_logit(setup):
    task, model, batch, engine = setup
    logits = curve(engine, batch, contribution(model, batch), steps=4, output="logit")
    torch.testing.assert_close(logits[:, 0], model(batch.inputs).gather(1, batch.targets[:, None])[:, 0].detach())
    torch.testing.assert_close(logits[:, -1], torch.zeros(6))


def test_exact_attribution_beats_its_reverse(setup):
    """Removing the largest logit-gap contributions first is the optimal deletion order."""
    task, model, batch, engine = setup
    exact = contribution(model, batch)
    best_del, worst_del = curve(engine, batch, exact), curve(engine, batch, -exact)
    best_ins, worst_ins = curve(engine, batch, exact, mode="insertion"), curve(engine, batch, -exact, mode="insertion")
    assert (best_del <= worst_del + 1e-7).all() and (best_ins >= worst_ins - 1e-7).all()
    assert (curve_auc(best_del) < curve_auc(worst_del) - 0.05).all()
    assert (curve_auc(best_ins) > curve_auc(worst_ins) + 0.05).all()


def test_ties_break_by_feature_index_and_padding_is_never_ranked_or_removed():
    explanation = torch.zeros(2, 6)
    explanation[1, 4:] = 100.0  # padding slots with the largest scores
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    assert torch.equal(feature_ranks(explanation, valid), torch.tensor([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]]))
    keep = keep_masks(explanation, valid, steps=4, mode="deletion")
    removed_valid = (~keep & valid[:, None]).sum(-1)
    # round(t * n) for t = 0, .25, .5, .75, 1 with n = 6 and n = 4 (half to even: 1.5 -> 2)
    assert removed_valid.tolist() == [[0, 2, 3, 4, 6], [0, 1, 2, 3, 4]]
    assert keep[1, :, 4:].all()
    assert not keep_masks(explanation, valid, steps=4, mode="insertion")[1, :, 4:].any()


def test_registered_metrics_are_the_curve_areas(setup):
    task, model, batch, engine = setup
    explanation = contribution(model, batch)
    ctx = MetricContext(task, model, batch, explanation, engine, seed=0, device=torch.device("cpu"))
    deletion = METRICS.create("deletion_auc", steps=10).compute(ctx)
    insertion = METRICS.create("insertion_auc", steps=10).compute(ctx)
    expected_del = np.trapezoid(curve(engine, batch, explanation, steps=10).numpy(), dx=0.1, axis=1)
    expected_ins = np.trapezoid(curve(engine, batch, explanation, steps=10, mode="insertion").numpy(), dx=0.1, axis=1)
    np.testing.assert_allclose(deletion.numpy(), expected_del, rtol=0, atol=1e-6)
    np.testing.assert_allclose(insertion.numpy(), expected_ins, rtol=0, atol=1e-6)
    assert METRICS.factory("deletion_auc").direction == "lower"
    assert METRICS.factory("insertion_auc").direction == "higher"


def pixel_flipping(model, x, targets, attribution, steps, **kwargs):
    """Quantus' Pixel-Flipping curve with ``n / steps`` features per step, no normalisation."""
    metric = quantus.PixelFlipping(
        features_in_step=x[0].size // steps, normalise=False, abs=False, disable_warnings=True, **kwargs
    )
    return np.asarray(metric(model, x, targets, a_batch=attribution, channel_first=True, softmax=True, device="cpu"))


def test_deletion_equals_quantus_pixel_flipping(setup):
    task, model, batch, engine = setup
    explanation = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(2))  # no ties
    ours = curve(engine, batch, explanation, steps=8).numpy()
    theirs = pixel_flipping(
        model, batch.inputs.numpy(), batch.targets.numpy(), explanation[:, None].numpy(), 8, perturb_baseline=0.0
    )
    assert theirs.shape == (6, 8)  # Quantus omits t = 0
    np.testing.assert_allclose(ours[:, 1:], theirs, rtol=0, atol=TOL)


def write_back(arr: np.ndarray, indices: np.ndarray, source: np.ndarray, **_) -> np.ndarray:
    """A Quantus perturb_func that restores ``source``'s values at ``indices`` (insertion)."""
    restored = arr.copy()
    rows = np.arange(arr.shape[0])[:, None]
    restored[rows, indices] = source.reshape(arr.shape)[rows, indices]
    return restored


def test_insertion_equals_quantus_pixel_flipping_from_the_removed_input(setup):
    task, model, batch, engine = setup
    explanation = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(4))
    ours = curve(engine, batch, explanation, steps=16, mode="insertion").numpy()
    x = batch.inputs.numpy()
    theirs = pixel_flipping(
        model,
        np.zeros_like(x),
        batch.targets.numpy(),
        explanation[:, None].numpy(),
        16,
        perturb_func=write_back,
        perturb_func_kwargs={"source": x},
    )
    np.testing.assert_allclose(ours[:, 1:], theirs, rtol=0, atol=TOL)

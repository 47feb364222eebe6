"""Infidelity: closed-form values on the toy linear task, and Captum equivalence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from captum.metrics import infidelity as captum_infidelity

from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.infidelity import (
    INFIDELITY_SALT,
    infidelity_score,
    predicted_drops,
    random_keep_masks,
    removal_drops,
)
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.methods.gradients import InputXGradientExplainer

# float32 forwards of the same model on the same rows; Captum aggregates a^2, ab, b^2 separately
TOL = 1e-5
N_PERTURBATIONS = 16


@pytest.fixture
def setup(toy_task):
    model = toy_task.model()
    batch = toy_task.samples("test", 6, seed=3)
    return toy_task, model, batch, RemovalEngine(toy_task, model)


def context(setup, explanation, seed=0):
    task, model, batch, engine = setup
    return MetricContext(task, model, batch, explanation, engine, seed=seed, device=torch.device("cpu"))


def drops(setup, explanation, keep):
    """(predicted, actual) drops ``[B, n]`` for fixed keep-masks."""
    task, model, batch, engine = setup
    return predicted_drops(explanation, keep), removal_drops(engine, batch.inputs, batch.targets, keep)


def fixed_masks(batch, seed=5):
    return random_keep_masks(batch.valid, N_PERTURBATIONS, 0.75, torch.Generator().manual_seed(seed))


def test_input_x_gradient_is_exact_on_the_linear_model(setup):
    """Zero removal of a linear, bias-free model drops the logit by exactly sum x * grad."""
    task, model, batch, engine = setup
    explanation = InputXGradientExplainer().explain(model, batch.inputs, batch.targets, task)
    ctx = context(setup, explanation)
    for name in ("infidelity", "infidelity_raw"):
        np.testing.assert_allclose(METRICS.create(name).compute(ctx).numpy(), 0.0, atol=1e-10)


def test_scaled_attributions_cost_only_the_raw_variant(setup):
    """With phi = c * (exact contributions): raw = (c - 1)^2 E[d^2], normalised = 0;
    a zero attribution misses every drop in full under both variants."""
    task, model, batch, engine = setup
    exact = InputXGradientExplainer().explain(model, batch.inputs, batch.targets, task)
    keep = fixed_masks(batch)
    predicted, actual = drops(setup, 3.0 * exact, keep)
    energy = actual.pow(2).mean(dim=1)
    torch.testing.assert_close(infidelity_score(predicted, actual, normalise=False), 4.0 * energy)
    torch.testing.assert_close(infidelity_score(predicted, actual, normalise=True), torch.zeros(6), atol=1e-6, rtol=0)
    zero, _ = drops(setup, torch.zeros_like(exact), keep)
    for normalise in (False, True):
        torch.testing.assert_close(infidelity_score(zero, actual, normalise), energy)


def test_masks_never_remove_padding_and_padding_attributions_never_count():
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    keep = random_keep_masks(valid, 200, 0.5, torch.Generator().manual_seed(0))
    assert keep.shape == (2, 200, 6) and keep[1, :, 4:].all()
    assert 0.4 < keep[0].float().mean() < 0.6
    explanation = torch.tensor([[1.0, 2, 3, 4, 5, 6], [1.0, 2, 3, 4, 1e6, 1e6]])
    manual = ((~keep).float() * explanation[:, None]).sum(-1)
    torch.testing.assert_close(predicted_drops(explanation, keep), manual)
    assert predicted_drops(explanation, keep)[1].max() <= 10


def test_registered_metrics_use_one_set_of_seeded_masks(setup):
    task, model, batch, engine = setup
    explanation = torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(1))
    ctx = context(setup, explanation, seed=7)
    keep = random_keep_masks(batch.valid, 32, 0.75, ctx.generator(INFIDELITY_SALT))
    predicted, actual = drops(setup, explanation, keep)
    normalised, raw = METRICS.create("infidelity").compute(ctx), METRICS.create("infidelity_raw").compute(ctx)
    torch.testing.assert_close(normalised, infidelity_score(predicted, actual, normalise=True))
    torch.testing.assert_close(raw, infidelity_score(predicted, actual, normalise=False))
    assert (normalised <= raw + 1e-6).all()
    torch.testing.assert_close(METRICS.create("infidelity").compute(ctx), normalised)  # reproducible
    assert METRICS.factory("infidelity").direction == METRICS.factory("infidelity_raw").direction == "lower"


def captum_reference(model, batch, attributions, keep, perturbation, normalize):
    """``captum.metrics.infidelity`` fed the same keep-masks (row ``b * n + i``, as Captum
    repeat-interleaves the inputs) and zero removal ``x - I = x * keep``."""
    flat_keep = keep.reshape(-1, 1, 4, 4).float()

    def perturb_func(repeated):
        return perturbation(repeated, flat_keep), repeated * flat_keep

    return captum_infidelity(
        model,
        perturb_func,
        batch.inputs,
        attributions,
        target=batch.targets,
        n_perturb_samples=keep.shape[1],
        normalize=normalize,
    )


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("form", ["indicator", "input"])
def test_equals_captum_infidelity(setup, normalize, form):
    """Captum with the binary perturbation ``1 - keep`` (global attributions) takes our
    attributions as they are; with Yeh et al.'s input-space ``I = x * (1 - keep)`` it takes
    ``phi / x`` (toy inputs are positive). Both equal our feature-space infidelity."""
    task, model, batch, engine = setup
    explanation = torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(2))
    keep = fixed_masks(batch, seed=3)
    ours = infidelity_score(*drops(setup, explanation, keep), normalise=normalize)
    if form == "indicator":
        theirs = captum_reference(model, batch, explanation[:, None], keep, lambda x, k: 1 - k, normalize)
    else:
        per_input = explanation[:, None] / batch.inputs
        theirs = captum_reference(model, batch, per_input, keep, lambda x, k: x * (1 - k), normalize)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=TOL)


def test_perturbations_are_computed_once_per_task(setup, monkeypatch):
    """Another method's pair on the same task (the runner hands every pair of a task the same
    ``task_memo``) reuses the drops; a new task memo (another task or run) does not."""
    task, model, batch, engine = setup
    calls = []
    scores = engine.scores
    monkeypatch.setattr(engine, "scores", lambda *a, **k: calls.append(1) or scores(*a, **k))
    first = torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(4))
    metric, memo = METRICS.create("infidelity_raw"), {}
    pair = lambda explanation, memo: replace(context(setup, explanation), task_memo=memo)  # noqa: E731
    before = metric.compute(pair(first, memo))
    second = metric.compute(pair(2 * first, memo))
    METRICS.create("infidelity").compute(pair(first, memo))
    assert len(calls) == 1
    torch.testing.assert_close(metric.compute(pair(first, memo)), before)
    assert not torch.allclose(second, before)
    torch.testing.assert_close(metric.compute(pair(first, {})), before)  # recomputed, same draws
    assert len(calls) == 2

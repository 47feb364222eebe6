"""random_logit and class_sensitivity: the other class each picks, closed-form values, and
equivalence with Quantus RandomLogit and scipy's Spearman."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import scipy.stats
import torch
from test_metrics_robustness_sanity import (
    CNNTask,
    context,
    model_free,
    run_quantus,
    saliency,
)
from torch import Tensor
from xaiboard.benchmark.metrics.class_sensitivity import (
    RANDOM_LOGIT_SALT,
    random_other_classes,
    runner_up_classes,
)
from xaiboard.benchmark.registry import METRICS


def test_random_other_classes_are_uniform_over_the_other_classes() -> None:
    targets = torch.randint(0, 5, (20000,), generator=torch.Generator().manual_seed(0))
    others = random_other_classes(targets, 5, torch.Generator().manual_seed(1))
    assert not (others == targets).any()
    counts = torch.zeros(5, 5).index_put_((targets, others), torch.ones(20000), accumulate=True)
    share = counts / counts.sum(1, keepdim=True)
    off_diagonal = share[~torch.eye(5, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, 0.25), atol=0.03)  # ~4000 draws a row: se 0.007


def test_runner_up_is_the_best_class_besides_the_target() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0], [1.0, 0.0, 9.0]])
    assert runner_up_classes(logits, torch.tensor([0, 1, 1])).tolist() == [2, 2, 2]


def signed_by_class(model, inputs: Tensor, targets: Tensor) -> Tensor:
    """The input for class 0, its negation for every other class: reversed ranks across classes."""
    sign = torch.where(targets == 0, 1.0, -1.0).view(-1, 1, 1)
    return sign * inputs.sum(dim=1)


def test_class_independent_explanation_fails_and_reversed_one_passes() -> None:
    task = CNNTask()
    independent = context(task, model_free, n=6)
    assert torch.equal(METRICS.create("random_logit").compute(independent), torch.ones(6))
    assert torch.equal(METRICS.create("class_sensitivity").compute(independent), torch.zeros(6))
    # targets 0 only, so every other class (random or runner-up) sees the reversed map
    batch = task.samples("test", 6, seed=1)
    batch.targets = torch.zeros(6, dtype=torch.long)
    reversed_ctx = context(task, signed_by_class, batch=batch)
    torch.testing.assert_close(METRICS.create("random_logit").compute(reversed_ctx), torch.full((6,), -1.0))
    torch.testing.assert_close(METRICS.create("class_sensitivity").compute(reversed_ctx), torch.full((6,), 2.0))


def test_constant_explanation_is_nan() -> None:
    ctx = context(CNNTask(), lambda m, x, t: torch.ones(x.shape[0], 8, 8))
    assert METRICS.create("random_logit").compute(ctx).isnan().all()
    assert METRICS.create("class_sensitivity").compute(ctx).isnan().all()


def test_precomputed_explanations_fail_clearly() -> None:
    ctx = context(CNNTask(), saliency)
    ctx.explain = None
    with pytest.raises(ValueError, match="re-runs the explainer"):
        METRICS.create("class_sensitivity").compute(ctx)


def test_class_sensitivity_is_one_minus_scipy_spearman_with_the_runner_up() -> None:
    task = CNNTask()
    ctx = context(task, saliency, n=6)
    runner_up = task.logits(ctx.model, ctx.batch.inputs).detach().topk(2, dim=1).indices
    second = torch.where(runner_up[:, 0] == ctx.batch.targets, runner_up[:, 1], runner_up[:, 0])
    other = saliency(ctx.model, ctx.batch.inputs, second)
    expected = [1 - scipy.stats.spearmanr(a.flatten(), b.flatten())[0] for a, b in zip(ctx.explanation, other)]
    ours = METRICS.create("class_sensitivity").compute(ctx)
    assert (ours > 0.1).all()
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-5)


def test_random_logit_equals_quantus(monkeypatch) -> None:
    """Quantus draws ``np.random.randint(0, C - 1, B)`` and skips the target; it is fed our draws."""
    task = CNNTask()
    ctx = context(task, saliency, n=8)
    draws = torch.randint(0, task.num_classes - 1, (8,), generator=ctx.generator(RANDOM_LOGIT_SALT))
    monkeypatch.setattr(np.random, "randint", lambda low, high, size: draws.numpy())
    metric = quantus.RandomLogit(
        similarity_func=quantus.similarity_func.correlation_spearman,
        num_classes=task.num_classes,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    theirs = run_quantus(metric, ctx)
    ours = METRICS.create("random_logit").compute(ctx)
    assert np.ptp(theirs) > 0.2  # a non-degenerate comparison
    # float32 Pearson of identical ranks: torch vs scipy's float64
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=0, atol=1e-5)

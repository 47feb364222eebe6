"""Faithfulness and monotonicity correlation: closed forms on the toy task, Quantus equivalence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import quantus
import scipy.stats
import torch

from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.correlation import (
    faithfulness_correlation,
    feature_groups,
    monotonicity_correlation,
    random_subsets,
    smallest_keys,
)
from xaiboard.benchmark.metrics.rank_correlation import average_ranks, spearman
from xaiboard.benchmark.registry import METRICS

# float32 model outputs compared with Quantus running the same float32 model on numpy copies
TOL = 1e-5


def logit_contribution(model, inputs, targets):
    """Exact share of each pixel in the toy model's target logit (it is linear, zero removal)."""
    weights = model.fc.weight.view(2, 2, 16)[:, 0] - model.fc.weight.view(2, 2, 16)[:, 1]
    return (inputs.flatten(1) * weights[targets]).view(-1, 4, 4).detach()


def faithfulness(engine, batch, explanation, subsets):
    return faithfulness_correlation(engine, batch.inputs, batch.targets, explanation, subsets, "logit")


def test_exact_contributions_correlate_perfectly_and_their_negation_anti(setup):
    """Removing S drops the target logit by exactly sum_S c: Pearson 1, and -1 for -c."""
    task, model, batch, engine = setup
    exact = logit_contribution(model, batch.inputs, batch.targets)
    subsets = random_subsets(batch.valid, 32, 0.25, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(faithfulness(engine, batch, exact, subsets).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(faithfulness(engine, batch, -exact, subsets).numpy(), -1.0, atol=1e-6)
    # every subset has the same size, so a constant shift of the attribution changes nothing
    np.testing.assert_allclose(faithfulness(engine, batch, exact + 3.0, subsets).numpy(), 1.0, atol=1e-6)


def test_constant_attribution_is_undefined(setup):
    task, model, batch, engine = setup
    subsets = random_subsets(batch.valid, 8, 0.25, torch.Generator().manual_seed(0))
    assert faithfulness(engine, batch, torch.ones(6, 4, 4), subsets).isnan().all()


def test_random_subsets_have_the_right_size_skip_padding_and_follow_the_seed():
    valid = torch.tensor([[True] * 10, [True] * 3 + [False] * 7])
    subsets = random_subsets(valid, 50, 0.25, torch.Generator().manual_seed(5))
    assert subsets.shape == (2, 50, 10)
    # round(2.5) = 2 (half to even); round(0.75) = 1
    assert subsets.sum(-1)[0].eq(2).all() and subsets.sum(-1)[1].eq(1).all()
    assert not subsets[1, :, 3:].any()
    assert subsets[1].any(0)[:3].all()  # every valid feature gets drawn
    assert torch.equal(subsets, random_subsets(valid, 50, 0.25, torch.Generator().manual_seed(5)))
    assert random_subsets(torch.ones(1, 5, dtype=torch.bool), 3, 0.01, torch.Generator()).sum(-1).eq(1).all()


@pytest.mark.parametrize("levels", [2, 16, None])
def test_smallest_keys_are_the_double_argsort_subsets_even_on_ties(levels):
    """``topk`` plus the double argsort on rows whose cut falls in a tie: the same subsets as
    ranking every row by two sorts, however many keys tie (``levels`` distinct values)."""
    g = torch.Generator().manual_seed(7)
    keys = torch.rand(16, 8, 50, generator=g)
    keys = keys if levels is None else (keys * levels).floor()
    keys[:2, :, 40:] = 2.0  # padding
    sizes = torch.randint(1, 51, (16, 1, 1), generator=g)
    expected = keys.argsort(dim=2).argsort(dim=2) < sizes
    assert torch.equal(smallest_keys(keys, sizes), expected)


def test_exact_contributions_are_perfectly_monotone_and_inverse_ones_anti(setup):
    """Class-0 logit is 0.5 * sum(x): a group's removal changes it by its contribution."""
    task, model, batch, engine = setup
    targets = torch.zeros(6, dtype=torch.long)
    exact = logit_contribution(model, batch.inputs, targets)
    for groups in (16, 6, 4):
        score = monotonicity_correlation(engine, batch.inputs, targets, exact, batch.valid, groups)
        np.testing.assert_allclose(score.numpy(), 1.0, atol=1e-12)
    inverse = monotonicity_correlation(engine, batch.inputs, targets, 1.0 / exact, batch.valid, 16)
    np.testing.assert_allclose(inverse.numpy(), -1.0, atol=1e-12)


def test_feature_groups_cut_ascending_magnitudes_and_skip_padding():
    explanation = torch.tensor([[5.0, -1.0, 3.0, -4.0, 2.0], [9.0, -8.0, 7.0, 0.0, 0.0]])
    valid = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    # sample 0: |a| ascending = idx 1, 4, 2, 3, 0 in steps of ceil(5/2) = 3; sample 1: steps of 1
    members, exists = feature_groups(explanation, valid, max_groups=2)
    assert members[0].int().tolist() == [[0, 1, 1, 0, 1], [1, 0, 0, 1, 0]]
    assert members[1].int().tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert exists.all()
    members, exists = feature_groups(explanation, valid, max_groups=4)  # steps of 2 and 1
    assert members[0].int().tolist() == [[0, 1, 0, 0, 1], [0, 0, 1, 1, 0], [1, 0, 0, 0, 0]]
    assert exists.tolist() == [[True, True, True], [True, True, False]]
    assert not members[1, 2].any() and not members[1, :, 2:].any()


def test_ranks_and_spearman_match_scipy_with_ties_and_a_mask():
    a = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0, 7.0], [1.0, 1.0, 0.0, 5.0, 2.0, -1.0]])
    b = torch.tensor([[0.5, 0.1, 0.2, 0.2, 0.9, 4.0], [2.0, 3.0, 3.0, 1.0, 0.0, 9.0]])
    mask = torch.tensor([[True] * 6, [True] * 5 + [False]])
    np.testing.assert_allclose(average_ranks(a, mask)[0].numpy(), scipy.stats.rankdata(a[0]))
    np.testing.assert_allclose(average_ranks(a, mask)[1, :5].numpy(), scipy.stats.rankdata(a[1, :5]))
    expected = [scipy.stats.spearmanr(a[0], b[0])[0], scipy.stats.spearmanr(a[1, :5], b[1, :5])[0]]
    np.testing.assert_allclose(spearman(a, b, mask).numpy(), expected, atol=1e-12)


def test_ranks_equal_scipys_on_many_tied_rows_and_propagate_nan():
    """Every row ranked exactly as ``scipy.stats.rankdata`` over its valid slots (ties of +-0,
    infinities, padding anywhere); a NaN in a valid slot makes its row NaN, as scipy's default."""
    generator = torch.Generator().manual_seed(8)
    values = torch.randint(-4, 5, (40, 30), generator=generator).double() * 0.25
    zeros = values == 0
    values[zeros] = torch.tensor([0.0, -0.0], dtype=torch.float64).repeat(int(zeros.sum()))[: int(zeros.sum())]
    values[::7, :2] = float("inf")
    values[::5, 3] = float("-inf")
    valid = torch.rand(40, 30, generator=generator) < 0.8
    ranks = average_ranks(values, valid)
    for row, keep, ranked in zip(values, valid, ranks):
        np.testing.assert_array_equal(ranked[keep].numpy(), scipy.stats.rankdata(row[keep].numpy()))
    values[3, valid[3].nonzero()[0, 0]] = float("nan")
    values[4, (~valid[4]).nonzero()[0, 0]] = float("nan")  # in padding: ignored
    ranks = average_ranks(values, valid)
    assert ranks[3].isnan().all() and not ranks[4].isnan().any()
    np.testing.assert_array_equal(ranks[4][valid[4]].numpy(), scipy.stats.rankdata(values[4][valid[4]].numpy()))


def test_registered_metrics_equal_the_pure_functions(setup):
    task, model, batch, engine = setup
    explanation = torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(7))
    ctx = MetricContext(task, model, batch, explanation, engine, seed=2, device=torch.device("cpu"))
    subsets = random_subsets(batch.valid, 32, 0.1, ctx.generator())
    torch.testing.assert_close(
        METRICS.create("faithfulness_correlation").compute(ctx),
        faithfulness(engine, batch, explanation, subsets).float(),
    )
    torch.testing.assert_close(
        METRICS.create("monotonicity_correlation").compute(ctx),
        monotonicity_correlation(engine, batch.inputs, batch.targets, explanation, batch.valid).float(),
    )
    for name in ("faithfulness_correlation", "monotonicity_correlation"):
        assert METRICS.factory(name).direction == "higher"


def test_faithfulness_correlation_equals_quantus_on_the_same_subsets(setup, monkeypatch):
    task, model, batch, engine = setup
    explanation = torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(11))
    subsets = random_subsets(batch.valid, 20, 0.25, torch.Generator().manual_seed(1))
    ours = faithfulness(engine, batch, explanation, subsets).numpy()
    # Quantus draws np.random.choice(n_features, subset_size) per run, then per sample
    drawn = iter([subsets[b, r].flatten().nonzero()[:, 0].numpy() for r in range(20) for b in range(6)])
    monkeypatch.setattr(np.random, "choice", lambda *args, **kwargs: next(drawn))
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=20,
        subset_size=4,
        perturb_baseline=0.0,
        abs=False,
        normalise=False,
        return_aggregate=False,
        disable_warnings=True,
    )
    x, y, a = batch.inputs.numpy(), batch.targets.numpy(), explanation[:, None].numpy()
    theirs = np.asarray(metric(model, x, y, a_batch=a, channel_first=True, softmax=False, device="cpu"))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)


@pytest.mark.parametrize("max_groups", [16, 4])
def test_monotonicity_correlation_equals_quantus(setup, max_groups):
    """Quantus with ``features_in_step = ceil(16 / max_groups)`` and one zero-baseline removal."""
    task, model, batch, engine = setup
    explanation = torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(13))  # no ties
    ours = monotonicity_correlation(engine, batch.inputs, batch.targets, explanation, batch.valid, max_groups)
    metric = quantus.MonotonicityCorrelation(
        nr_samples=1,
        features_in_step=math.ceil(16 / max_groups),
        perturb_baseline=0.0,
        abs=True,
        normalise=False,
        disable_warnings=True,
    )
    x, y, a = batch.inputs.numpy(), batch.targets.numpy(), explanation[:, None].numpy()
    theirs = np.asarray(metric(model, x, y, a_batch=a, channel_first=True, softmax=False, device="cpu"))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=TOL)

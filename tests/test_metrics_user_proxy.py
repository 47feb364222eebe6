"""User-proxy (ground truth, sparseness) and cost metrics: analytic values, chance levels,
padding, and equivalence with scikit-learn and Quantus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import quantus
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from xaiboard.benchmark.cost import Cost, count_passes
from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.complexity import gini_sparseness
from xaiboard.benchmark.metrics.ground_truth import gt_auroc, pointing_game, relevance_rank_accuracy
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine

GT_FUNCTIONS = (gt_auroc, relevance_rank_accuracy, pointing_game)


def random_masks(b: int, shape: tuple[int, ...], share: float, seed: int) -> Tensor:
    """Ground truths with at least one feature in and one feature out of each mask."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, *shape, generator=g) < share
    flat = gt.view(b, -1)
    flat[:, 0], flat[:, -1] = True, False
    return gt


def all_valid(shape: tuple[int, ...]) -> Tensor:
    return torch.ones(shape, dtype=torch.bool)


# ---- analytic values ------------------------------------------------------------------------


def test_perfect_explainer_scores_one() -> None:
    gt = random_masks(32, (8, 8), 0.3, seed=0)
    noise = torch.rand(gt.shape, generator=torch.Generator().manual_seed(1))
    attributions = gt.float() + 1e-3 * noise
    for fn in GT_FUNCTIONS:
        assert torch.equal(fn(attributions, gt, all_valid(gt.shape)), torch.ones(32)), fn.__name__


def test_random_explainer_scores_chance() -> None:
    """n = 20 features, |GT| = 5 (share 1/4), 4000 samples of uniform random attributions.

    Tolerances are 4 standard errors of the mean over the 4000 samples:
    AUROC under the null has variance (P + N + 1) / (12 P N) = 21 / 900, se = 0.0024;
    pointing game is Bernoulli(1/4), se = sqrt(3/16 / 4000) = 0.0068;
    rank accuracy is hypergeometric hits / 5 with variance 0.25 * 0.75 * 15/19 / 5 = 0.0296,
    se = 0.0027.
    """
    b, n, k = 4000, 20, 5
    g = torch.Generator().manual_seed(2)
    gt = torch.zeros(b, n, dtype=torch.bool)
    gt.scatter_(1, torch.rand(b, n, generator=g).argsort(1)[:, :k], True)
    attributions = torch.rand(b, n, generator=g)
    valid = all_valid((b, n))
    assert gt_auroc(attributions, gt, valid).mean().item() == pytest.approx(0.5, abs=4 * 0.0024)
    assert pointing_game(attributions, gt, valid).mean().item() == pytest.approx(0.25, abs=4 * 0.0068)
    assert relevance_rank_accuracy(attributions, gt, valid).mean().item() == pytest.approx(0.25, abs=4 * 0.0027)


def test_constant_explanation_scores_chance_exactly() -> None:
    """Ties are scored by their expectation, so a constant map gets exactly the chance level."""
    gt = random_masks(16, (6, 6), 0.4, seed=3)
    share = gt.flatten(1).float().mean(1)
    constant = torch.zeros(gt.shape)
    valid = all_valid(gt.shape)
    assert torch.allclose(gt_auroc(constant, gt, valid), torch.full((16,), 0.5))
    assert torch.allclose(pointing_game(constant, gt, valid), share)
    assert torch.allclose(relevance_rank_accuracy(constant, gt, valid), share)


def test_rank_accuracy_splits_ties_at_the_cut() -> None:
    # GT = {0, 1}; top-2: feature 0 (in GT), then one of features 1, 2, 3 tied at 0.5.
    attributions = torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1]])
    gt = torch.tensor([[True, True, False, False, False]])
    score = relevance_rank_accuracy(attributions, gt, all_valid((1, 5)))
    assert score.item() == pytest.approx((1 + 1 / 3) / 2)


def test_auroc_matches_sklearn_with_ties() -> None:
    g = torch.Generator().manual_seed(4)
    attributions = torch.randint(0, 4, (50, 30), generator=g).float()
    gt = random_masks(50, (30,), 0.3, seed=5)
    ours = gt_auroc(attributions, gt, all_valid(gt.shape))
    expected = torch.tensor([roc_auc_score(m.numpy(), a.numpy()) for m, a in zip(gt, attributions)])
    assert torch.allclose(ours, expected.float(), atol=1e-6)


@pytest.mark.parametrize("fn", GT_FUNCTIONS, ids=lambda fn: fn.__name__)
def test_empty_or_full_ground_truth_is_nan(fn) -> None:
    attributions = torch.rand(3, 10, generator=torch.Generator().manual_seed(6))
    gt = torch.zeros(3, 10, dtype=torch.bool)
    gt[1] = True
    gt[2, :3] = True
    scores = fn(attributions, gt, all_valid(gt.shape))
    assert scores[:2].isnan().all() and not scores[2].isnan()


@pytest.mark.parametrize("n", [2, 7, 64])
def test_gini_of_one_hot_and_uniform(n: int) -> None:
    one_hot = torch.zeros(3, n)
    one_hot[torch.arange(3), torch.tensor([0, n - 1, n // 2])] = torch.tensor([1.0, -5.0, 0.2])
    valid = all_valid((3, n))
    assert torch.allclose(gini_sparseness(one_hot, valid), torch.full((3,), 1 - 1 / n))
    uniform = torch.full((3, n), -2.0)
    assert torch.allclose(gini_sparseness(uniform, valid), torch.zeros(3), atol=1e-6)  # float32 sums of n terms <= 1
    assert torch.equal(gini_sparseness(torch.zeros(3, n), valid), torch.zeros(3))


# ---- padding --------------------------------------------------------------------------------


def test_padding_never_counts() -> None:
    """Padded rows with huge attributions (and ground truth) in the padding score exactly
    as the unpadded rows do."""
    lengths = [5, 12, 9, 20]
    f = max(lengths)
    g = torch.Generator().manual_seed(7)
    attributions = torch.randn(len(lengths), f, generator=g)
    gt = random_masks(len(lengths), (f,), 0.4, seed=8)
    valid = torch.arange(f) < torch.tensor(lengths).unsqueeze(1)
    for i, n in enumerate(lengths):
        gt[i, n - 1] = False  # keep at least one valid feature outside the ground truth
    padded_a = attributions.masked_fill(~valid, 1e6)
    padded_gt = gt | ~valid
    for fn in (*GT_FUNCTIONS, lambda a, m, v: gini_sparseness(a, v)):
        padded = fn(padded_a, padded_gt, valid)
        trimmed = torch.cat(
            [fn(attributions[i : i + 1, :n], gt[i : i + 1, :n], all_valid((1, n))) for i, n in enumerate(lengths)]
        )
        assert torch.equal(padded, trimmed)


# ---- metric classes on a task ----------------------------------------------------------------


def make_context(task, explanation: Tensor | None = None, cost: Cost | None = None) -> MetricContext:
    model = task.model()
    batch = task.samples("test", 8, seed=0)
    explanation = batch.ground_truth.float() if explanation is None else explanation
    return MetricContext(
        task, model, batch, explanation, RemovalEngine(task, model), 0, torch.device("cpu"), cost=cost or Cost()
    )


def test_registered_metrics_on_toy_task(toy_task) -> None:
    ctx = make_context(toy_task)
    for name in ("gt_auroc", "relevance_rank_accuracy", "pointing_game"):
        metric = METRICS.create(name)
        assert (metric.family, metric.direction, metric.needs_ground_truth) == ("user_proxy", "higher", True)
        assert torch.equal(metric.compute(ctx), torch.ones(8))
    # 4 of the 16 pixels carry equal mass: Gini = 12 / 16.
    assert torch.allclose(METRICS.create("sparseness").compute(ctx), torch.full((8,), 0.75))


def test_ground_truth_metric_without_ground_truth_fails_clearly(toy_task) -> None:
    ctx = make_context(toy_task)
    ctx.batch.ground_truth = None
    with pytest.raises(ValueError, match="no ground truth"):
        METRICS.create("pointing_game").compute(ctx)


def test_cost_metrics_read_the_batch_average(toy_task) -> None:
    ctx = make_context(toy_task, cost=Cost(forward_passes=64, backward_passes=32, seconds=2.0))
    assert torch.equal(METRICS.create("cost_passes").compute(ctx), torch.full((8,), 12.0))
    assert torch.equal(METRICS.create("cost_seconds").compute(ctx), torch.full((8,), 0.25))
    assert METRICS.factory("cost_passes").direction == "lower"


def test_cost_passes_of_a_gradient(toy_task) -> None:
    """One forward and one backward over the batch is 2 passes per explanation."""
    ctx = make_context(toy_task)
    x = ctx.batch.inputs.clone().requires_grad_()
    with count_passes(ctx.model) as cost:
        ctx.model(x)[:, 1].sum().backward()
    ctx.cost = cost
    assert torch.equal(METRICS.create("cost_passes").compute(ctx), torch.full((8,), 2.0))
    assert (METRICS.create("cost_seconds").compute(ctx) > 0).all()


# ---- Quantus equivalence ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantus_inputs() -> dict:
    """Image-shaped [B, 1, 8, 8] arrays; Quantus needs a model and x/y even for these metrics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)).eval()
    g = torch.Generator().manual_seed(9)
    x = torch.rand(16, 1, 8, 8, generator=g)
    attributions = torch.randn(16, 1, 8, 8, generator=g)
    gt = random_masks(16, (1, 8, 8), 0.25, seed=10)
    return {
        "model": model,
        "x_batch": x.numpy(),
        "y_batch": np.zeros(16, dtype=np.int64),
        "a_batch": attributions.numpy(),
        "s_batch": gt.float().numpy(),
        "device": "cpu",
    }


@pytest.mark.parametrize(
    ("quantus_metric", "ours"),
    [
        (quantus.AUC(normalise=False, abs=False, disable_warnings=True), gt_auroc),
        (quantus.RelevanceRankAccuracy(normalise=False, abs=False, disable_warnings=True), relevance_rank_accuracy),
        (quantus.PointingGame(normalise=False, abs=False, weighted=False, disable_warnings=True), pointing_game),
    ],
    ids=["AUC", "RelevanceRankAccuracy", "PointingGame"],
)
def test_matches_quantus_localisation(quantus_inputs: dict, quantus_metric, ours) -> None:
    inputs = {**quantus_inputs, "a_batch": quantus_inputs["a_batch"].copy()}
    expected = np.asarray(quantus_metric(**inputs), dtype=np.float64)
    a, gt = torch.from_numpy(quantus_inputs["a_batch"]), torch.from_numpy(quantus_inputs["s_batch"]).bool()
    scores = ours(a, gt, all_valid(gt.shape)).double().numpy()
    assert 0 < expected.mean() < 1  # a non-degenerate comparison
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_matches_quantus_sparseness(quantus_inputs: dict) -> None:
    """Quantus adds 1e-7 to every |a| (64 features, total mass ~50): a 1e-7 relative change."""
    inputs = {**quantus_inputs, "a_batch": quantus_inputs["a_batch"].copy()}
    expected = quantus.Sparseness(normalise=False, abs=True, disable_warnings=True)(**inputs)
    a = torch.from_numpy(quantus_inputs["a_batch"])
    scores = gini_sparseness(a, all_valid(a.shape)).double().numpy()
    np.testing.assert_allclose(scores, np.asarray(expected, dtype=np.float64), atol=1e-5)


def test_quantus_pointing_game_rewards_ties_and_ours_does_not(quantus_inputs: dict) -> None:
    """The documented difference: Quantus hits if any tied maximum is in the ground truth.

    Quantus refuses an all-constant batch, so sample 0 gets one lower pixel (outside its
    ground truth); samples 1.. are constant maps.
    """
    constant = np.full_like(quantus_inputs["a_batch"], 0.5)
    constant[0, 0, 7, 7] = 0.0
    expected = quantus.PointingGame(normalise=False, disable_warnings=True)(**{**quantus_inputs, "a_batch": constant})
    gt = torch.from_numpy(quantus_inputs["s_batch"]).bool()
    ours = pointing_game(torch.from_numpy(constant), gt, all_valid(gt.shape))[1:]
    assert np.all(np.asarray(expected, dtype=float) == 1.0)
    assert torch.allclose(ours, gt[1:].flatten(1).float().mean(1))
    assert not math.isclose(ours.mean().item(), 1.0)

"""gt_auprc, relevance_mass_accuracy and complexity: analytic values, chance levels, ties,
padding, and equivalence with scikit-learn and Quantus."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import quantus
import torch
from sklearn.metrics import average_precision_score
from torch import Tensor, nn
from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.complexity import attribution_entropy
from xaiboard.benchmark.metrics.ground_truth import gt_auprc, relevance_mass_accuracy
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine


def random_masks(b: int, n: int, share: float, seed: int) -> Tensor:
    """``[b, n]`` ground truths with at least one feature in and one out of each mask."""
    gt = torch.rand(b, n, generator=torch.Generator().manual_seed(seed)) < share
    gt[:, 0], gt[:, -1] = True, False
    return gt


def all_valid(shape: tuple[int, ...]) -> Tensor:
    return torch.ones(shape, dtype=torch.bool)


def expected_random_ap(n: int, p: int) -> float:
    """E[AP] of a uniformly random ranking of n features, p of them positive:
    ``(p-1)/(n-1) + H_n (n-p) / (n (n-1))`` (the positive at rank r has expected precision
    ``(1 + (r-1)(p-1)/(n-1)) / r``, averaged over r uniform on 1..n)."""
    harmonic = sum(1 / k for k in range(1, n + 1))
    return (p - 1) / (n - 1) + harmonic * (n - p) / (n * (n - 1))


# ---- gt_auprc ---------------------------------------------------------------------------------


def test_auprc_of_a_perfect_explainer_is_one() -> None:
    gt = random_masks(16, 40, 0.3, seed=0)
    attributions = gt.float() + 1e-3 * torch.rand(gt.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(gt_auprc(attributions, gt, all_valid(gt.shape)), torch.ones(16))


def test_auprc_equals_sklearn_without_ties() -> None:
    g = torch.Generator().manual_seed(2)
    attributions = torch.randn(40, 30, generator=g)
    gt = random_masks(40, 30, 0.3, seed=3)
    expected = [average_precision_score(m.numpy(), a.numpy()) for m, a in zip(gt, attributions)]
    np.testing.assert_allclose(gt_auprc(attributions, gt, all_valid(gt.shape)).numpy(), expected, atol=1e-6)


def test_auprc_scores_ties_by_their_expectation_over_tie_breaks() -> None:
    """The documented deviation from sklearn: a tie group scores the mean of sklearn's AP over
    every order of it (here all 7! orders of the first 7 features, as tiny jitter)."""
    attributions = torch.tensor([[0.5, 0.5, 0.5, 0.9, 0.1, 0.5, 0.1, 0.3]])
    gt = torch.tensor([[1, 0, 1, 0, 1, 0, 0, 1]]).bool()
    orders = [attributions[0] + 1e-6 * torch.tensor([*order, 0.0]) for order in itertools.permutations(range(7))]
    expected = np.mean([average_precision_score(gt[0].numpy(), a.numpy()) for a in orders])
    ours = gt_auprc(attributions, gt, all_valid(gt.shape)).item()
    assert ours == pytest.approx(expected, abs=1e-6)
    assert ours != pytest.approx(average_precision_score(gt[0].numpy(), attributions[0].numpy()), abs=1e-3)


def test_constant_map_scores_the_random_expectation_and_sklearn_the_share() -> None:
    n, p = 20, 5
    gt = torch.zeros(1, n, dtype=torch.bool)
    gt[0, :p] = True
    constant = torch.zeros(1, n)
    assert gt_auprc(constant, gt, all_valid(gt.shape)).item() == pytest.approx(expected_random_ap(n, p), abs=1e-6)
    assert average_precision_score(gt[0].numpy(), constant[0].numpy()) == pytest.approx(p / n)


def test_random_explainer_auprc_is_near_the_ground_truth_share() -> None:
    """n = 1024 features (an image/shapes-sized map), |GT| = 128 (share 1/8), 1000 samples.

    The exact chance level exceeds the share by ``(H_n - 1)(n - p) / (n (n - 1))`` = 0.0055
    (the luck of the first positives), so the mean is within that plus 4 standard errors of
    the share; against the exact level the tolerance is 4 standard errors of the mean.
    """
    b, n, p = 1000, 1024, 128
    g = torch.Generator().manual_seed(4)
    gt = torch.zeros(b, n, dtype=torch.bool).scatter_(1, torch.rand(b, n, generator=g).argsort(1)[:, :p], True)
    scores = gt_auprc(torch.rand(b, n, generator=g), gt, all_valid((b, n)))
    four_se = 4 * scores.std().item() / math.sqrt(b)
    excess = expected_random_ap(n, p) - p / n
    assert excess == pytest.approx(0.0055, abs=1e-4)
    assert scores.mean().item() == pytest.approx(expected_random_ap(n, p), abs=four_se)
    assert scores.mean().item() == pytest.approx(p / n, abs=excess + four_se)


# ---- relevance mass accuracy ----------------------------------------------------------------


def test_mass_accuracy_known_values() -> None:
    gt = torch.tensor([[True, True, False, False]])
    valid = all_valid(gt.shape)
    assert relevance_mass_accuracy(torch.tensor([[3.0, 1.0, 0.0, 0.0]]), gt, valid).item() == 1.0
    assert relevance_mass_accuracy(torch.tensor([[3.0, 1.0, 2.0, 2.0]]), gt, valid).item() == 0.5
    assert relevance_mass_accuracy(torch.tensor([[1.0, 0.0, 0.0, 3.0]]), gt, valid).item() == 0.25
    # an all-zero map scores the ground-truth share, like the uniform map it ties with
    assert relevance_mass_accuracy(torch.zeros(1, 4), gt, valid).item() == 0.5
    assert relevance_mass_accuracy(torch.ones(1, 4), gt, valid).item() == 0.5


# ---- complexity -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 7, 1024])
def test_entropy_of_uniform_one_hot_and_zero_maps(n: int) -> None:
    valid = all_valid((3, n))
    uniform = torch.full((3, n), -0.3)
    torch.testing.assert_close(attribution_entropy(uniform, valid), torch.full((3,), math.log(n)))
    one_hot = torch.zeros(3, n)
    one_hot[torch.arange(3), torch.tensor([0, n - 1, n // 2])] = torch.tensor([1.0, -5.0, 0.2])
    assert torch.equal(attribution_entropy(one_hot, valid), torch.zeros(3))
    torch.testing.assert_close(attribution_entropy(torch.zeros(3, n), valid), torch.full((3,), math.log(n)))


def test_entropy_of_two_equal_features_is_ln2() -> None:
    a = torch.tensor([[0.0, 2.0, 0.0, -2.0]])
    assert attribution_entropy(a, all_valid(a.shape)).item() == pytest.approx(math.log(2))


# ---- padding ----------------------------------------------------------------------------------


def test_padding_never_counts() -> None:
    lengths = [5, 12, 9, 20]
    f = max(lengths)
    attributions = torch.randn(len(lengths), f, generator=torch.Generator().manual_seed(5))
    gt = random_masks(len(lengths), f, 0.4, seed=6)
    valid = torch.arange(f) < torch.tensor(lengths).unsqueeze(1)
    for i, n in enumerate(lengths):
        gt[i, n - 1] = False
    padded_a, padded_gt = attributions.masked_fill(~valid, 1e6), gt | ~valid
    functions = (gt_auprc, relevance_mass_accuracy, lambda a, m, v: attribution_entropy(a, v))
    for fn in functions:
        trimmed = [fn(attributions[i : i + 1, :n], gt[i : i + 1, :n], all_valid((1, n))) for i, n in enumerate(lengths)]
        assert torch.equal(fn(padded_a, padded_gt, valid), torch.cat(trimmed))


@pytest.mark.parametrize("fn", [gt_auprc, relevance_mass_accuracy])
def test_empty_or_full_ground_truth_is_nan(fn) -> None:
    attributions = torch.rand(3, 10, generator=torch.Generator().manual_seed(7))
    gt = torch.zeros(3, 10, dtype=torch.bool)
    gt[1] = True
    gt[2, :3] = True
    scores = fn(attributions, gt, all_valid(gt.shape))
    assert scores[:2].isnan().all() and not scores[2].isnan()


# ---- registered metrics ---------------------------------------------------------------------


def test_registered_metrics_on_toy_task(toy_task) -> None:
    """Explanation = minus the ground truth: magnitude (abs=True, our default) finds it, signed
    ranking puts it last."""
    model, batch = toy_task.model(), toy_task.samples("test", 8, seed=0)
    ctx = MetricContext(
        toy_task, model, batch, -batch.ground_truth.float(), RemovalEngine(toy_task, model), 0, torch.device("cpu")
    )
    for name in ("gt_auprc", "relevance_mass_accuracy"):
        metric = METRICS.create(name)
        assert (metric.family, metric.direction, metric.params) == ("user_proxy", "higher", {"abs": True})
        assert torch.equal(metric.compute(ctx), torch.ones(8))
    assert METRICS.create("gt_auprc", abs=False).compute(ctx).max() < 0.5
    complexity = METRICS.create("complexity")
    assert (complexity.family, complexity.direction) == ("user_proxy", "lower")
    torch.testing.assert_close(complexity.compute(ctx), torch.full((8,), math.log(4)))  # 4 equal pixels


# ---- Quantus equivalence ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantus_inputs() -> dict:
    """Image-shaped [B, 1, 8, 8] arrays; Quantus needs a model and x/y even for these metrics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)).eval()
    g = torch.Generator().manual_seed(8)
    gt = random_masks(16, 64, 0.25, seed=9).view(16, 1, 8, 8)
    return {
        "model": model,
        "x_batch": torch.rand(16, 1, 8, 8, generator=g).numpy(),
        "y_batch": np.zeros(16, dtype=np.int64),
        "a_batch": torch.randn(16, 1, 8, 8, generator=g).numpy(),
        "s_batch": gt.float().numpy(),
        "device": "cpu",
    }


def test_mass_accuracy_matches_quantus_signed(quantus_inputs: dict) -> None:
    """Signed attributions (Quantus's default abs=False), shifted to mostly positive so that no
    sample's total is near 0, where the ratio is ill-conditioned in float32."""
    a = quantus_inputs["a_batch"] + 1.5
    metric = quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True)
    expected = np.asarray(metric(**{**quantus_inputs, "a_batch": a.copy()}), dtype=np.float64)
    gt = torch.from_numpy(quantus_inputs["s_batch"]).bool()
    ours = relevance_mass_accuracy(torch.from_numpy(a), gt, all_valid(gt.shape)).double().numpy()
    assert (a < 0).any() and 0 < expected.mean() < 1
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_complexity_matches_quantus(quantus_inputs: dict) -> None:
    """Quantus adds 1e-12 inside the log: at most n * 1e-12 in the entropy."""
    metric = quantus.Complexity(normalise=False, abs=True, disable_warnings=True)
    expected = np.asarray(metric(**{**quantus_inputs, "a_batch": quantus_inputs["a_batch"].copy()}), dtype=np.float64)
    a = torch.from_numpy(quantus_inputs["a_batch"])
    ours = attribution_entropy(a, all_valid(a.shape)).double().numpy()
    assert 3 < expected.mean() < math.log(64)
    np.testing.assert_allclose(ours, expected, atol=1e-5)

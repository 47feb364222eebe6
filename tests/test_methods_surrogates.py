"""Feature ablation, RISE, LIME and KernelSHAP: known answers, and Captum on the same inputs.

The toy task removes a pixel by zeroing it, so Captum's perturbation methods (which overwrite
input elements with a baseline of 0) ask the model exactly what the task's removal asks.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import FeatureAblation, LimeBase
from torch import Tensor, nn

import xaiboard.tasks  # noqa: F401  (register the built-in tasks)
from toy_task import ToyTask
from xaiboard.benchmark.registry import METHODS, TASKS
from xaiboard.methods import occlusion, rise, surrogates  # noqa: F401  (register)
from xaiboard.methods.surrogates import coalition_keep

FLOAT_TOL = 1e-5  # float32 logits summed over 4-16 features; the fits themselves run in float64
GROUP_METHODS = ("feature_ablation", "rise", "lime", "kernel_shap")


class QuadrantTask(ToyTask):
    """The toy task whose feature groups are the four 2x2 quadrants (with ``mixed``, the odd
    samples of a batch are grouped by rows instead)."""

    def __init__(self, mixed: bool = False) -> None:
        self.mixed = mixed

    def feature_groups(self, inputs: Tensor) -> Tensor:
        rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
        quadrants, lines = 2 * (rows // 2) + cols // 2, rows
        odd = (torch.arange(len(inputs)) % 2 == 1).view(-1, 1, 1) & self.mixed
        return torch.where(odd, lines, quadrants)


class QuadrantTanh(nn.Module):
    """Additive in the quadrants, nonlinear inside each: ``logit_c = sum_q tanh(c_q * sum(x_q))``."""

    def forward(self, x: Tensor) -> Tensor:
        sums = x.view(-1, 2, 2, 2, 2).sum(dim=(2, 4)).flatten(1)  # [B, 4] quadrant sums
        weights = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 2.0, 1.5, 0.25]])
        return torch.tanh(sums[:, None, :] * weights).sum(dim=2)


@pytest.fixture
def quadrants():
    task = QuadrantTask()
    batch = task.samples("test", 6, seed=1)
    return task, batch.inputs, batch.targets


def explain(name: str, task, model, inputs, targets, **params) -> Tensor:
    return METHODS.create(name, **params).explain(model, inputs, targets, task)


def test_kernel_shap_recovers_exact_shapley_values_of_an_additive_model(quadrants):
    """For ``f = sum_q g_q(x_q)`` and zero removal, quadrant q's Shapley value is
    ``g_q(x_q) - g_q(0)``, whatever the coalitions drawn: the regression is exact."""
    task, x, targets = quadrants
    model = QuadrantTanh()
    scores = explain("kernel_shap", task, model, x, targets, n_samples=64)
    sums = x.view(-1, 2, 2, 2, 2).sum(dim=(2, 4)).flatten(1)
    weights = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 2.0, 1.5, 0.25]])[targets]
    shapley = torch.tanh(sums * weights)  # g_q(0) = tanh(0) = 0
    per_quadrant = scores[:, ::2, ::2].flatten(1)  # one pixel per quadrant carries its group's score
    torch.testing.assert_close(per_quadrant, shapley.view(-1, 2, 2).flatten(1), atol=FLOAT_TOL, rtol=0)


def test_kernel_shap_matches_enumerated_shapley_values_of_a_curved_model():
    """On a non-additive model, with many coalitions KernelSHAP converges to the Shapley values
    enumerated over all 2^4 coalitions. With 4000 draws the estimates' standard deviation over
    20 seeds was at most 0.004 per quadrant (their mean within 0.001 of the exact values), so
    0.02 is five standard deviations."""
    task = QuadrantTask()
    x, targets = task.samples("test", 2, seed=3).inputs[:1], torch.tensor([1])
    model = nn.Sequential(QuadrantTanh(), nn.Tanh())
    scores = explain("kernel_shap", task, model, x, targets, n_samples=4000)[0, ::2, ::2].flatten()

    def value(coalition: tuple[int, ...]) -> float:
        keep = torch.zeros(1, 1, 4, dtype=torch.bool)
        keep[0, 0, list(coalition)] = True
        full_keep = coalition_keep(keep, task.feature_groups(x).flatten(1), torch.Size([1, 4, 4]))
        with torch.no_grad():
            return float(model(task.remove(x, full_keep))[0, 1])

    players = range(4)
    exact = []
    for i in players:
        others = [p for p in players if p != i]
        total = 0.0
        for size in range(4):
            for subset in itertools.combinations(others, size):
                weight = 1 / (4 * len(list(itertools.combinations(others, size))))
                total += weight * (value((*subset, i)) - value(subset))
        exact.append(total)
    torch.testing.assert_close(scores, torch.tensor(exact), atol=0.02, rtol=0)


def test_lime_equals_captum_limebase_on_the_same_coalitions(quadrants):
    """Same coalitions, kernel, ridge and targets: our batched fit equals Captum's ``LimeBase``
    with sklearn's ``Ridge`` (float64 on both sides; 1e-5 covers float32 logits)."""
    task, x, targets = quadrants
    model = QuadrantTanh()
    lime = METHODS.create("lime", n_samples=40, seed=5)
    ours = lime.explain(model, x, targets, task)
    groups = task.feature_groups(x).flatten(1)
    present = torch.ones(len(x), 4, dtype=torch.bool)
    drawn = lime.coalitions(present, torch.Generator().manual_seed(5))
    weights = lime.weights(drawn.double(), present)
    for b in range(len(x)):
        rows = iter(drawn[b].float())
        similarity = dict(zip(range(len(drawn[b])), weights[b].tolist()))
        step = itertools.count()

        def perturb(_original, **_kwargs):
            return next(rows).view(1, -1)

        def to_input(sample, original, **_kwargs):
            return original * sample[0][groups[b]].view(1, 1, 4, 4)

        captum = LimeBase(
            lambda inp: model(inp),
            SkLearnRidge(alpha=1.0),
            similarity_func=lambda *args, **kwargs: similarity[next(step)],
            perturb_func=perturb,
            perturb_interpretable_space=True,
            from_interp_rep_transform=to_input,
            to_interp_rep_transform=None,
        ).attribute(x[b : b + 1], target=int(targets[b]), n_samples=len(drawn[b]), perturbations_per_eval=1)
        torch.testing.assert_close(ours[b, ::2, ::2].flatten(), captum.view(-1).float(), atol=FLOAT_TOL, rtol=0)


def test_feature_ablation_matches_captum_with_per_sample_groups():
    """Captum's ``FeatureAblation`` with each sample's own feature mask (quadrants or rows)."""
    task = QuadrantTask(mixed=True)
    batch = task.samples("test", 6, seed=1)
    model = QuadrantTanh()
    ours = explain("feature_ablation", task, model, batch.inputs, batch.targets)
    mask = task.feature_groups(batch.inputs).unsqueeze(1)
    reference = FeatureAblation(model).attribute(batch.inputs, target=batch.targets, baselines=0.0, feature_mask=mask)
    torch.testing.assert_close(ours, reference.sum(dim=1), atol=FLOAT_TOL, rtol=0)


class ReadsOnePixel(nn.Module):
    """Class 1's logit is ``8 * x[1, 2] - 4``; class 0's is 0: only pixel (1, 2) matters."""

    def forward(self, x: Tensor) -> Tensor:
        one = 8 * x[:, 0, 1, 2] - 4
        return torch.stack([torch.zeros_like(one), one], dim=1)


def test_rise_ranks_first_the_only_feature_the_model_reads():
    task = ToyTask()
    x = torch.full((5, 1, 4, 4), 0.5)
    x[:, 0, 1, 2] = 1.0
    targets = torch.ones(5, dtype=torch.long)
    scores = explain("rise", task, ReadsOnePixel(), x, targets, n_masks=400)
    assert (scores.flatten(1).argmax(dim=1) == 1 * 4 + 2).all()
    # a pixel the model ignores scores E[p(target)] = mean over masks, about the same everywhere
    others = scores.flatten(1)[:, [i for i in range(16) if i != 6]]
    assert (others.amax(dim=1) - others.amin(dim=1)).max() < 0.15


def test_rise_masks_keep_features_at_rate_p_in_cells():
    image = TASKS.create("image/digits")
    generator = torch.Generator().manual_seed(0)
    masks = METHODS.create("rise", n_masks=2000, p=0.3, cells=8).masks(image, torch.Size([32, 32]), generator)
    # 2000 masks x ~64 cells: the kept share's standard error is ~0.001; 0.01 is 10 of them
    assert masks.shape == (2000, 32, 32) and abs(masks.float().mean().item() - 0.3) < 0.01
    # within a 4x4 cell (shifted) neighbours agree far more often than chance (0.3^2 + 0.7^2)
    agree = (masks[:, :, 1:] == masks[:, :, :-1]).float().mean().item()
    assert agree > 0.75


@pytest.mark.parametrize("task_name", ["image/shapes", "text/planted", "graph/ba-2motifs@1", "graph/ba-shapes@1"])
@pytest.mark.parametrize("name", GROUP_METHODS)
def test_group_methods_on_every_declared_modality(task_name, name):
    """Right shape, finite, zero on padding, deterministic under the seed, on 3 samples."""
    task = TASKS.create(task_name)
    method = METHODS.create(name)
    if not method.supports(task):
        assert name == "feature_ablation" and task.modality != "image"
        return
    model, batch = task.model(), task.samples("test", 3, seed=0)
    scores = method.explain(model, batch.inputs, batch.targets, task)
    assert scores.shape == batch.valid.shape and torch.isfinite(scores).all()
    assert (scores[~batch.valid] == 0).all() and scores.abs().sum() > 0
    assert torch.equal(scores, method.explain(model, batch.inputs, batch.targets, task))

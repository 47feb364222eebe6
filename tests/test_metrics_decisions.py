"""Per-group decisions (``benchmark/decisions.py``): a task whose outputs are several classifiers
side by side (``image/digit-grid``: one per cell) has its argmax-based metrics decide within the
target's group; every other task keeps the plain argmax.

The toy bench: ``TwoCellTask`` puts the toy model's two logits (cell 0) beside two constant
logits (cell 1) that outrank them on every input, so the global argmax is always class 2 while
the per-cell decision is the toy model's own. Every metric must then give, for cell-0 targets,
exactly what it gives on the toy task itself.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import Tensor, nn

from toy_task import ToyTask
from xaiboard.benchmark import decisions
from xaiboard.benchmark.decisions import group_classes, in_target_group, predicted
from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.class_sensitivity import random_other_classes
from xaiboard.benchmark.metrics.road import road_curve
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.tasks.digit_grid import DigitGridTask

#: cell 1's constant logits: far above any toy logit (inputs in [0, 1.3], 16 weights <= 1)
CELL_ONE = torch.tensor([50.0, 0.0])
#: the metrics whose score depends on a decision (and so derive from ``DecisionMetric``)
DECIDING = (
    "road_morf", "road_lerf", "fidelity_plus", "fidelity_minus", "characterization_score", "random_logit",
    "class_sensitivity",
)
FIDELITIES = ("fidelity_plus", "fidelity_minus", "characterization_score")


class TwoCellModel(nn.Module):
    """The toy model's logits as cell 0, ``CELL_ONE`` as cell 1."""

    def __init__(self, toy: nn.Module) -> None:
        super().__init__()
        self.toy = toy

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.toy(x), CELL_ONE.expand(x.shape[0], 2)], dim=1)


class TwoCellTask(ToyTask):
    """The toy task with a second, constant cell: 4 outputs, decisions in groups of 2."""

    name = "toy/two-cell"
    num_classes = 4
    decision_group_size = 2

    def model(self, device="cpu") -> nn.Module:
        return TwoCellModel(super().model(device)).eval()


class TwoCellGlobal(TwoCellTask):
    """The same outputs under one global argmax (what every metric did before groups)."""

    name = "toy/two-cell-global"
    decision_group_size = 4


def context(task: ToyTask, explanation: Tensor, n: int = 12, explain=None) -> MetricContext:
    """Metric context on the toy samples (targets 0 and 1: cell 0), seed 0."""
    model = task.model()
    batch = ToyTask().samples("test", n, seed=1)
    return MetricContext(task, model, batch, explanation, RemovalEngine(task, model), 0, torch.device("cpu"), explain)


def random_explanation(n: int = 12) -> Tensor:
    return torch.rand(n, 4, 4, generator=torch.Generator().manual_seed(6))  # continuous: no ties


# ---- the decision rule ----------------------------------------------------------------------


def test_decision_is_the_argmax_of_the_targets_group():
    """Sample 0: cell 0 says class 1 (right) while cell 1's output is the largest overall."""
    logits = torch.tensor([[1.0, 2.0, 9.0, 0.0], [1.0, 2.0, 9.0, 0.0], [5.0, 0.0, 4.0, 3.0]])
    targets = torch.tensor([1, 0, 3])
    assert predicted(TwoCellTask(), logits, targets).tolist() == [1, 1, 2]
    assert predicted(TwoCellGlobal(), logits, targets).tolist() == [2, 2, 0] == logits.argmax(1).tolist()
    assert group_classes(TwoCellTask(), targets).tolist() == [[0, 1], [0, 1], [2, 3]]
    # leading dimensions: n copies [n, B, C] against targets [B]
    stacked = torch.stack([logits, logits.flip(1)])
    assert predicted(TwoCellTask(), stacked, targets).tolist() == [[1, 1, 2], [1, 1, 3]]
    assert in_target_group(TwoCellTask(), logits, targets)[2, :2].eq(-torch.inf).all()


def test_one_group_is_the_plain_argmax_ties_included():
    """Integer logits in 0..2 tie often: the first maximal index either way."""
    logits = torch.randint(0, 3, (200, 2), generator=torch.Generator().manual_seed(0)).float()
    targets = torch.randint(0, 2, (200,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(predicted(ToyTask(), logits, targets), logits.argmax(dim=1))
    assert in_target_group(ToyTask(), logits, targets) is logits


def test_group_size_must_divide_the_classes():
    class Uneven(TwoCellTask):
        decision_group_size = 3

    with pytest.raises(ValueError, match="toy/two-cell: decision_group_size must be a positive divisor of num_classes"):
        predicted(Uneven(), torch.zeros(1, 4), torch.zeros(1, dtype=torch.long))


def test_digit_grid_declares_one_decision_per_cell():
    task = DigitGridTask()
    assert decisions.group_size(task) == 10
    assert group_classes(task, torch.tensor([0, 17, 39])).tolist() == [list(range(c, c + 10)) for c in (0, 10, 30)]


# ---- metrics on the two-cell toy ------------------------------------------------------------


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_decides_per_cell(order):
    """Per cell: the toy task's own ROAD curve (same images, same noise); globally, class 2 wins
    every decision, so the accuracy is 0 everywhere."""
    percentages = (10, 30, 50, 70, 90)
    explanation = random_explanation()
    per_cell = road_curve(context(TwoCellTask(), explanation), percentages, order, 0.01, "accuracy")
    toy = road_curve(context(ToyTask(), explanation), percentages, order, 0.01, "accuracy")
    assert torch.equal(per_cell, toy)
    assert 0 < per_cell.mean() < 1, "the check needs decisions that change along the curve"
    assert not road_curve(context(TwoCellGlobal(), explanation), percentages, order, 0.01, "accuracy").any()


@pytest.mark.parametrize("name", FIDELITIES)
def test_fidelity_decides_per_cell(name):
    """Per cell: the toy task's own fidelities (the planted block is necessary and sufficient for
    the class-1 samples); globally, every decision is class 2 and every fidelity 0."""
    explanation = ToyTask().samples("test", 12, seed=1).ground_truth.float()
    metric = METRICS.create(name, top_k_share=0.25)
    per_cell = metric.compute(context(TwoCellTask(), explanation))
    assert torch.equal(per_cell, metric.compute(context(ToyTask(), explanation)))
    assert per_cell.abs().sum() > 0, "the check needs samples whose decision the removal changes"
    assert not metric.compute(context(TwoCellGlobal(), explanation)).any()


def test_other_classes_come_from_the_targets_cell():
    """A group of two leaves one other class, ``1 - y``, for the random draw and the runner-up
    alike; globally the runner-up is cell 1's class 2."""
    ctx = context(TwoCellTask(), random_explanation())
    other = 1 - ctx.batch.targets
    assert torch.equal(METRICS.create("random_logit").other_classes(ctx), other)
    assert torch.equal(METRICS.create("class_sensitivity").other_classes(ctx), other)
    runner_up = METRICS.create("class_sensitivity").other_classes(context(TwoCellGlobal(), random_explanation()))
    assert runner_up.eq(2).all()


def test_random_other_classes_are_uniform_within_the_group():
    """Groups of 4 among 12 classes: never the target, never outside its group, each of the 3
    others ~1/3 of ~1700 draws a class (standard error 0.011, tolerance 0.04)."""
    targets = torch.randint(0, 12, (20000,), generator=torch.Generator().manual_seed(0))
    others = random_other_classes(targets, 4, torch.Generator().manual_seed(1))
    assert not (others == targets).any() and torch.equal(others // 4, targets // 4)
    counts = torch.zeros(12, 12).index_put_((targets, others), torch.ones(20000), accumulate=True)
    share = counts / counts.sum(1, keepdim=True)
    same_group = (torch.arange(12)[:, None] // 4 == torch.arange(12) // 4) & ~torch.eye(12, dtype=torch.bool)
    assert torch.allclose(share[same_group], torch.full((36,), 1 / 3), atol=0.04)


# ---- image/digit-grid ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid():
    """8 digit-grid test samples, its model, and the ground truth (the target cell) ranked first
    with a random order inside and outside it (no ties)."""
    task = DigitGridTask()
    model = task.model()
    batch = task.samples("test", 8, seed=0)
    explanation = batch.ground_truth.float() + 0.5 * torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(2))
    ctx = MetricContext(task, model, batch, explanation, RemovalEngine(task, model), 0, torch.device("cpu"))
    return ctx


def cell_correct(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Float ``[B]``: 1 where the target cell's 10 outputs pick the target's digit."""
    with torch.no_grad():
        per_cell = model(inputs).view(len(targets), 4, 10)
    return (per_cell[torch.arange(len(targets)), targets // 10].argmax(dim=1) == targets % 10).float()


def test_grid_targets_span_several_cells(grid):
    assert len(set((grid.batch.targets // 10).tolist())) >= 2


def test_road_on_digit_grid_decides_in_the_target_cell(grid):
    """LeRF up to 70 % imputes only pixels outside the target cell (768 of 1024), and the target
    cell's outputs depend on its own pixels only: every decision is the clean cell's decision,
    whatever the imputation did to the other cells."""
    curve = road_curve(grid, (10, 30, 50, 70), "lerf", 0.01, "accuracy")
    expected = cell_correct(grid.model, grid.batch.inputs, grid.batch.targets)
    assert torch.equal(curve, expected[:, None].expand_as(curve))


def test_fidelity_on_digit_grid_decides_in_the_target_cell(grid):
    """``S`` = the target cell (top 25 %): ``S`` alone leaves the cell's decision as it was
    (fid- = 0), and without ``S`` the cell is the removal baseline, whose decision is the blank
    cell's digit."""
    batch = grid.batch
    correct = cell_correct(grid.model, batch.inputs, batch.targets)
    blank = grid.task.remove(batch.inputs[:1], torch.zeros(1, 1, 32, 32, dtype=torch.bool))
    with torch.no_grad():
        blank_digits = grid.model(blank).view(4, 10).argmax(dim=1)
    blank_correct = (blank_digits[batch.targets // 10] == batch.targets % 10).float()
    plus = METRICS.create("fidelity_plus", top_k_share=0.25).compute(grid)
    minus = METRICS.create("fidelity_minus", top_k_share=0.25).compute(grid)
    assert torch.equal(plus, correct - blank_correct)
    assert not minus.any()


# ---- code hashes -----------------------------------------------------------------------------


def test_editing_the_decision_rule_makes_the_deciding_metrics_stale(monkeypatch):
    """Every deciding metric's code hash covers ``decisions.py`` (simulated edit, as the method
    hash test does); metrics that take no decision keep theirs."""
    names = (*DECIDING, "local_lipschitz", "relative_input_stability", "robust_fidelity_plus", "infidelity")
    before = {name: METRICS.create(name).code_hash() for name in names}
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: real(obj) + ("# edited" if obj is decisions else ""))
    after = {name: METRICS.create(name).code_hash() for name in names}
    assert [n for n in names if after[n] != before[n]] == list(DECIDING)

"""Version 3 of the generated graph tasks: no model-free prior finds the ground truth (issue 13).

Version 2 hung motifs on trees, whose edges are all bridges, so "edges on a cycle" found the
motifs (0.87-1.00). Version 3 drops the base graph: hubs carry motifs drawn from pools that
straddle the target on every prior (``tasks/motif_hubs.py``). Versions 1 and 2 stay loadable as
``NAME@1`` and ``NAME@2`` (archived; ``test_task_graph_v2.py``).
"""

from __future__ import annotations

import pytest
import torch

from xaiboard.benchmark.cli import suite_tasks
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task_check import check_task
from xaiboard.tasks.ba_shapes import HubMotifTask
from xaiboard.tasks.weights import weights_meta

NODE_TASKS = ("graph/ba-shapes", "graph/tree-cycles")
V3_TASKS = (*NODE_TASKS, "graph/ba-2motifs")
#: the issue's bar: a model-free prior above it finds the ground truth without the model
PRIOR_BAR = 0.65
#: the issue's bars for the committed model: test accuracy, and saliency's or integrated
#: gradients' ground-truth AUROC where the faithfulness check passes
ACCURACY_FLOOR, GRADIENT_FLOOR = 0.95, 0.85


@pytest.fixture(scope="module", params=V3_TASKS)
def board_check(request):
    """``xaiboard task check`` of a version-3 task at the board's settings (n = 64, seed 0)."""
    return check_task(TASKS.create(request.param), n=64, seed=0)


@pytest.fixture(scope="module", params=NODE_TASKS)
def node_task(request) -> HubMotifTask:
    return TASKS.create(request.param)


def test_version_3_is_the_default_and_the_others_are_archived():
    default, full = suite_tasks("default"), suite_tasks("full")
    for name in V3_TASKS:
        current = TASKS.create(name)
        assert (current.version, current.tier) == ("3", "built-in") and name in default
        assert weights_meta(current.weights_stem)["task_version"] == "3"
        for old in ("1", "2"):
            archived = TASKS.create(f"{name}@{old}")
            assert (archived.version, archived.tier) == (old, "archived") and archived.name not in full
            assert archived.weights_stem != current.weights_stem


def test_no_prior_finds_the_truth_and_the_check_passes(board_check):
    """Every model-free prior of ``benchmark/priors.py`` and the input-magnitude control at most
    0.65 (version 2: cycle 0.87-1.00), and removing the ground truth drops the target probability
    at least twice as much as removing as many other edges."""
    reach = {score.prior: score.reach for score in board_check.priors}
    assert not board_check.flagged and all(value is None or value <= PRIOR_BAR for value in reach.values()), reach
    assert {"input_magnitude", "degree", "cycle", "triangle"} <= {p for p, v in reach.items() if v is not None}
    faithful = board_check.faithfulness
    assert faithful.passed, f"ground-truth drop {faithful.gt_drop:.3f}, random drop {faithful.random_drop:.3f}"


@pytest.mark.parametrize("name", V3_TASKS)
def test_committed_model_is_accurate_and_gradients_find_the_truth(name):
    from xaiboard.benchmark.metrics.ground_truth import gt_auroc
    from xaiboard.benchmark.registry import METHODS

    task = TASKS.create(name)
    model, batch = task.model(), task.samples("test", 64, seed=0)
    # accuracies are float32 means (0.95 may be stored as 0.9499999881): a round-off margin
    assert task.card.test_accuracy == weights_meta(task.weights_stem)["test_accuracy"] >= ACCURACY_FLOOR - 1e-6
    best = max(
        gt_auroc(METHODS.create(method).explain(model, batch.inputs, batch.targets, task).abs(), batch.ground_truth,
                 batch.valid).mean().item()  # fmt: skip
        for method in ("saliency", "integrated_gradients")
    )
    assert best >= GRADIENT_FLOOR


def test_every_hub_carries_as_many_motifs_and_positives_one_target(node_task):
    """Each hub's degree is ``slots`` (no base edges), so degree says nothing about the label; a
    positive hub carries exactly one target motif, and half the hubs are positive."""
    data, hubs = node_task.data, node_task.base_nodes
    src, dst = data.edge_index
    assert not ((src < hubs) & (dst < hubs)).any()
    assert torch.equal(torch.bincount(src[src < hubs], minlength=hubs), torch.full((hubs,), node_task.slots))
    hung = data.motif[dst[src < hubs]].view(hubs, node_task.slots)
    is_target = hung == data.target[:hubs, None]
    assert torch.equal(is_target.sum(1), data.y[:hubs]) and int(data.y[:hubs].sum()) == hubs // 2


def test_ba_2motifs_graphs_all_have_equal_counts():
    """House, bowtie and K(2,3) all have 5 nodes, 6 edges and degree sum 12: every graph of both
    classes has 16 nodes and 42 directed edges, and class 0's ground truth is the house's 12 and
    its joining edge's 2."""
    task = TASKS.create("graph/ba-2motifs")
    labels = task.dataset.y
    assert (task.graphs.edge_counts() == 42).all() and (task.graphs.node_counts() == 16).all()
    truth = torch.bincount(task.graphs.edge_sample[task.dataset.edge_mask.bool()], minlength=len(labels))
    assert torch.equal(truth, torch.where(labels == 0, 14, 0))


@pytest.mark.slow  # 2-3 minutes on a loaded 2-core machine
def test_recipe_reproduces_the_committed_accuracy():
    """BA-Shapes retrained by its recipe, within two points of the committed accuracy (float
    round-off of other CPUs' kernels moved BA-Shapes v2 by up to 2.5 points). Tree-Cycles trains
    by the same code and BA-2Motifs by version 1's (``test_task_ba_2motifs.py``); their v3 weights
    were reproduced bit for bit by hand (README): three retrainings would take CI past its budget."""
    task = TASKS.create("graph/ba-shapes")
    _, accuracy = task.train_model(seed=0)
    assert accuracy == pytest.approx(weights_meta(task.weights_stem)["test_accuracy"], abs=0.02)

"""``graph/tree-cycles``: the generated graph, ground truth, committed weights and their recipe.

Removal identities, determinism and an end-to-end run are in ``test_task_graph.py`` (every graph task).
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from sklearn.metrics import roc_auc_score

from xaiboard.benchmark.registry import TASKS
from xaiboard.tasks.graph import edge_checksum
from xaiboard.tasks.tree_cycles import TreeCyclesTask
from xaiboard.tasks.weights import weights_meta


@pytest.fixture(scope="module")
def task() -> TreeCyclesTask:
    return TreeCyclesTask()


@pytest.fixture(scope="module")
def model(task):
    return task.model()


def test_registered_built_in_and_carded(task):
    assert isinstance(TASKS.create("graph/tree-cycles@1"), TreeCyclesTask) and task.tier == "archived"
    assert task.card.test_accuracy == weights_meta("graph_tree_cycles")["test_accuracy"]
    assert edge_checksum(task.data.edge_index) == weights_meta("graph_tree_cycles")["checksum"]


def test_graph_is_a_binary_tree_with_six_node_cycles(task):
    data = task.data
    assert task.base_nodes == 511 and data.num_nodes == 511 + 80 * 6
    assert torch.equal(data.y, (torch.arange(data.num_nodes) >= 511).long())
    src, dst = data.edge_index
    in_tree = (src < 511) & (dst < 511)
    assert int(in_tree.sum()) == 2 * 510, "a tree on 511 nodes has 510 undirected edges"
    same_cycle = (task.motif_of(src) == task.motif_of(dst)) & (task.motif_of(src) >= 0)
    assert torch.equal(data.edge_mask.bool(), same_cycle)


def test_ground_truth_is_the_nodes_own_cycle(task):
    batch = task.samples("test", 32, seed=0)
    inputs, gt = batch.inputs, batch.ground_truth
    assert (batch.labels == 1).all()
    assert gt.sum(1).tolist() == [12] * len(batch), "a six-cycle has 12 directed edges"
    src, dst = inputs.node_id[inputs.edge_index]
    on_gt = gt[inputs.edge_sample, inputs.edge_slot]
    own = task.motif_of(batch.ids)[inputs.edge_sample[on_gt]]
    assert torch.equal(task.motif_of(src[on_gt]), own) and torch.equal(task.motif_of(dst[on_gt]), own)
    assert task.samples("test", 1000, seed=0).ids.numel() == task.motif_nodes("test").numel() == 96


def test_committed_weights_accuracy(task, model):
    test = task.split["test"]
    with torch.no_grad():
        predicted = model(task.data.x, task.data.edge_index)[test].argmax(1)
    accuracy = (predicted == task.data.y[test]).float().mean().item()
    assert accuracy >= 0.9
    assert accuracy == pytest.approx(weights_meta("graph_tree_cycles")["test_accuracy"], abs=1e-6)


def test_saliency_finds_the_cycle(task, model):
    batch = task.samples("test", 64, seed=0)
    spec = task.gradient_spec(model, batch.inputs)
    saliency = Saliency(spec.forward).attribute(
        spec.inputs.clone().requires_grad_(), target=batch.targets, additional_forward_args=spec.additional_args
    )
    rows = zip(saliency.detach().abs(), batch.ground_truth, batch.valid)
    assert sum(roc_auc_score(g[v].numpy(), s[v].numpy()) for s, g, v in rows) / len(batch) > 0.7


@pytest.mark.slow  # ~10 s alone, ~25 s on a loaded 2-core machine
def test_recipe_reproduces_the_committed_accuracy(task):
    _, accuracy = task.train_model(seed=0)
    assert accuracy == pytest.approx(weights_meta("graph_tree_cycles")["test_accuracy"], abs=0.01)

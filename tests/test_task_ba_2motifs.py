"""``graph/ba-2motifs``: generated graphs, motif ground truth, committed weights and their recipe.

Removal identities, determinism and an end-to-end run are in ``test_task_graph.py`` (every graph task).
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from sklearn.metrics import roc_auc_score

from xaiboard.benchmark.registry import TASKS
from xaiboard.tasks.ba_2motifs import BASE_NODES, BA2MotifsTask
from xaiboard.tasks.graph import edge_checksum
from xaiboard.tasks.weights import weights_meta


@pytest.fixture(scope="module")
def task() -> BA2MotifsTask:
    return BA2MotifsTask()


@pytest.fixture(scope="module")
def model(task):
    return task.model()


def test_registered_built_in_and_carded(task):
    assert isinstance(TASKS.create("graph/ba-2motifs@1"), BA2MotifsTask) and task.tier == "archived"
    assert task.card.test_accuracy == weights_meta("graph_ba_2motifs")["test_accuracy"]


def test_generation_is_deterministic_and_leaves_global_state(task):
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    fresh = BA2MotifsTask()
    assert torch.equal(fresh.graphs.edge_index, task.graphs.edge_index)
    assert torch.rand(1) == before
    assert edge_checksum(fresh.graphs.edge_index) == weights_meta("graph_ba_2motifs")["checksum"]


def test_graphs_and_classes(task):
    data = task.dataset
    assert data.num_graphs == 1000 and data.y.bincount().tolist() == [500, 500]
    assert task.graphs.node_counts().eq(BASE_NODES + 5).all()
    assert task.split["test"].numel() == 200 and task.evaluated("test").numel() == 200


def test_ground_truth_is_the_motif(task):
    """House: 6 undirected edges, cycle: 5; all between motif nodes (appended after the BA tree)."""
    batch = task.samples("test", 64, seed=0)
    inputs, gt = batch.inputs, batch.ground_truth
    assert torch.equal(gt.sum(1), torch.where(batch.labels == 0, 12, 10))
    src, dst = inputs.node_id[inputs.edge_index]
    on_gt = gt[inputs.edge_sample, inputs.edge_slot]
    motif_edge = (src >= BASE_NODES) & (dst >= BASE_NODES)
    assert torch.equal(on_gt, motif_edge), "the edge joining the motif to the tree is not ground truth"


def test_committed_weights_accuracy(task, model):
    accuracy = task.accuracy(model, task.split["test"])
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(weights_meta("graph_ba_2motifs")["test_accuracy"], abs=1e-6)


def test_saliency_finds_the_motif(task, model):
    """Not the edge count: a house graph has one edge more, but gradients point at the motif."""
    batch = task.samples("test", 64, seed=0)
    spec = task.gradient_spec(model, batch.inputs)
    saliency = Saliency(spec.forward).attribute(
        spec.inputs.clone().requires_grad_(), target=batch.targets, additional_forward_args=spec.additional_args
    )
    rows = zip(saliency.detach().abs(), batch.ground_truth, batch.valid)
    assert sum(roc_auc_score(g[v].numpy(), s[v].numpy()) for s, g, v in rows) / len(batch) > 0.8


@pytest.mark.slow  # ~8 s alone, ~20 s on a loaded 2-core machine
def test_recipe_reproduces_the_committed_accuracy(task):
    _, accuracy = task.train_model(seed=0)
    assert accuracy == pytest.approx(weights_meta("graph_ba_2motifs")["test_accuracy"], abs=0.01)

"""``graph/mutagenicity``: the real TU loader on the offline copy, derived ground truth, committed GIN.

Removal identities, determinism and an end-to-end run are in ``test_task_graph.py`` (every graph task).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirror_graph import raw_file, tu_data_root
from xaiboard.benchmark.registry import TASKS
from xaiboard.tasks.mutagenicity import ATOMS, MUTAGEN, MutagenicityTask, toxicophore_edges
from xaiboard.tasks.weights import weights_meta


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tu_data_root(tmp_path_factory)


@pytest.fixture(scope="module")
def task(root) -> MutagenicityTask:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XAIBOARD_DATA", str(root))
        task = MutagenicityTask()
        task.dataset  # noqa: B018  (load while the variable points at the copy)
    return task


def test_registered_hub_task_and_card(task):
    assert isinstance(TASKS.create("graph/mutagenicity"), MutagenicityTask) and task.tier == "hub"
    meta = weights_meta("graph_mutagenicity")
    assert task.card.test_accuracy == meta["test_accuracy"] and meta["checksum"] in task.card.dataset_revision
    assert task.dataset.num_graphs == 4337 and task.dataset.x.shape[1] == len(ATOMS)


def test_ground_truth_equals_pgexplainers_edge_labels(task, root):
    """Derived from atom labels vs the published ``edge_gt`` file, matched by node pair (u, v)."""
    pairs = np.loadtxt(raw_file(root, "A"), delimiter=",", dtype=np.int64) - 1
    published = np.loadtxt(raw_file(root, "edge_gt"), dtype=np.int64).astype(bool)
    ours = {tuple(e) for e in task.dataset.edge_index[:, task.dataset.edge_mask].T.tolist()}
    theirs = {tuple(e) for e in pairs[published].tolist()}
    all_edges = {tuple(e) for e in task.dataset.edge_index.T.tolist()}
    assert {tuple(e) for e in pairs.tolist()} == all_edges, "TUDataset keeps every bond, node ids unchanged"
    assert ours == theirs and len(ours) == 7352


def test_toxicophore_rule_on_a_toy_molecule():
    """C-NO2 and C-NH2 count; a bare N bonded only to two O does not."""
    atom = torch.tensor([ATOMS.index(a) for a in ["C", "N", "O", "O", "C", "N", "H", "H", "N", "O", "O"]])
    bonds = torch.tensor([[0, 1], [1, 2], [1, 3], [4, 5], [5, 6], [5, 7], [8, 9], [8, 10]]).T
    marked = toxicophore_edges(atom, torch.cat([bonds, bonds.flip(0)], dim=1))
    assert marked.view(2, -1).all(0).tolist() == [False, True, True, False, True, True, False, False]


def test_evaluated_samples_are_mutagens_with_a_group(task):
    batch = task.samples("test", 1000, seed=0)
    assert len(batch) == task.evaluated("test").numel() == 205
    assert (batch.labels == MUTAGEN).all() and batch.ground_truth.any(1).all()
    assert not set(batch.ids.tolist()) & set(task.split["train"].tolist())
    inputs = batch.inputs
    atom = inputs.x.argmax(1)[inputs.edge_index]
    on_gt = batch.ground_truth[inputs.edge_sample, inputs.edge_slot]
    assert ((atom[0, on_gt] == ATOMS.index("N")) | (atom[1, on_gt] == ATOMS.index("N"))).all()


def test_committed_weights_accuracy(task):
    model = task.model()
    accuracy = task.accuracy(model, task.split["test"])
    assert accuracy >= 0.80
    assert accuracy == pytest.approx(weights_meta("graph_mutagenicity")["test_accuracy"], abs=1e-6)


def test_checksum_drift_is_a_clear_error(task, monkeypatch):
    from xaiboard.tasks import graph

    monkeypatch.setattr(graph, "weights_meta", lambda stem: {"checksum": "0000"})
    with pytest.raises(RuntimeError, match="graph_mutagenicity.json.*checksum 0000"):
        task.model()

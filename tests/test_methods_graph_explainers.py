"""PGExplainer and GNNExplainer on the real graph tasks: ground truth found, contract kept, caching.

Known answers use ground-truth AUROC on few samples. PGExplainer trains here on a handful of
train samples for a few epochs (the defaults train on 128 for 30 epochs, 0.5-4 s per task): the contract
needs a trained MLP, not a good one, and the floors below hold with margin at these sizes.
"""

from __future__ import annotations

import copy

import pytest
import torch

import xaiboard.methods  # noqa: F401  (registers the methods)
from test_task_graph import any_graph_task  # noqa: F401  (fixture: every graph task, 6 test samples)
from xaiboard.benchmark.metrics.ground_truth import gt_auroc
from xaiboard.benchmark.registry import METHODS, TASKS
from xaiboard.methods.pgexplainer import PGExplainerExplainer

#: enough training for the contract tests: an MLP that has taken a few steps
FAST_PG = dict(epochs=3, train_samples=8)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """PGExplainer stores its trained MLP under the cache folder: a fresh one per test."""
    monkeypatch.setenv("XAIBOARD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def auroc(method: str, task_name: str, n: int, labels: tuple[int, ...] | None = None, **params) -> float:
    """Mean ground-truth AUROC of ``method`` on ``n`` test samples (only ``labels``, if given)."""
    task = TASKS.create(task_name)
    batch = task.samples("test", n, seed=0)
    attributions = METHODS.create(method, **params).explain(task.model(), batch.inputs, batch.targets, task)
    scores = gt_auroc(attributions, batch.ground_truth, batch.valid)
    keep = torch.ones_like(scores, dtype=torch.bool) if labels is None else torch.isin(batch.labels, torch.tensor(labels))
    return scores[keep].nanmean().item()


# ---- known answers ------------------------------------------------------------------------------


def test_pgexplainer_finds_ba_shapes_houses():
    """1.00 with the defaults on all 80 test motif nodes, and with this short training. BA-Shapes is
    easy for PGExplainer (house nodes' embeddings stand out: even one step scored 0.90-1.00 over
    four seeds), so this checks the plumbing (edge slots, per-edge centre embeddings); the graph-
    level test below is the one that separates settings."""
    assert auroc("pgexplainer", "graph/ba-shapes@1", 16, epochs=10, train_samples=32) > 0.9


def test_pgexplainer_graph_level_starts_near_the_full_graph():
    """BA-2Motifs' GIN reads a house only at edge weights near 1: from masks near the full graph
    PGExplainer finds the motifs (0.96 measured here), from PyG's start (bias 0, masks near 0.5) it
    ranks them last (0.02): the floor and the ceiling are far from both."""
    assert auroc("pgexplainer", "graph/ba-2motifs@1", 16, train_samples=32) > 0.8
    assert auroc("pgexplainer", "graph/ba-2motifs@1", 16, train_samples=32, init_logit=0.0) < 0.3


def test_pgexplainer_node_level_starts_near_the_full_graph():
    """BA-Shapes' GIN reads a house only at edge weights near 1: from the full graph PGExplainer
    finds the houses (1.00 measured here on version 3, as on version 2), from a zero bias it does
    not (0.31; version 2: 0.42). On version 2's GIN trained before the role feature, PyG's node-level size 0.05 also failed (0.32: the
    entropy's pull towards 1 won and nothing was pruned); on the current one it scores 1.00 as
    the pinned 0.5 does, so only the start is tested."""
    assert auroc("pgexplainer", "graph/ba-shapes", 16, train_samples=32) > 0.9
    assert auroc("pgexplainer", "graph/ba-shapes", 16, train_samples=32, init_logit=0.0) < 0.75


def test_gnnexplainer_graph_level_finds_the_houses():
    """On house graphs of BA-2Motifs v1 (cycle graphs need no edge to stay "cycle"): 1.00 measured
    with the defaults, 0.38 with PyG's (start near 0.5, lr 0.01, size 0.005); the fit is seeded,
    so the floor's margin is against code changes, not against noise."""
    assert auroc("gnnexplainer", "graph/ba-2motifs@1", 16, labels=(0,)) > 0.75
    pyg = dict(init_logit=0.0, lr=0.01, edge_size=0.005)
    assert auroc("gnnexplainer", "graph/ba-2motifs@1", 16, labels=(0,), **pyg) < 0.5


def test_gnnexplainer_prunes_from_near_the_full_graph():
    """Tree-Cycles' GIN reads a cycle only at edge weights near 1: PyG's start near 0.5 loses it
    (0.59 measured on version 3; version 2: 0.57), and from near 1 a size penalty weaker than the
    entropy's pull towards 1 (PyG's 0.005) prunes nothing (0.50: every edge stays near 1; on
    version 2 the cycle edges, which rose least, ranked last: 0.02); the default size prunes
    everything else first (0.98; version 2: 1.00)."""
    assert auroc("gnnexplainer", "graph/tree-cycles", 16) > 0.9
    assert auroc("gnnexplainer", "graph/tree-cycles", 16, init_logit=0.0, lr=0.01, edge_size=0.005) < 0.7
    assert auroc("gnnexplainer", "graph/tree-cycles", 16, edge_size=0.005) < 0.6


# ---- the contract on every graph task -------------------------------------------------------------


@pytest.mark.parametrize("method, params", [("pgexplainer", FAST_PG), ("gnnexplainer", {})])
def test_runs_on_every_graph_task(any_graph_task, method, params, tmp_path, monkeypatch):  # noqa: F811
    """Right shape, finite, in [0, 1], zero on padding, not constant; the same on a second call and
    from a fresh object with an empty cache (deterministic under its seed)."""
    task, model, batch = any_graph_task
    explainer = METHODS.create(method, **params)
    attributions = explainer.explain(model, batch.inputs, batch.targets, task)
    assert attributions.shape == batch.valid.shape and torch.isfinite(attributions).all()
    assert (attributions[~batch.valid] == 0).all() and (attributions >= 0).all() and (attributions <= 1).all()
    assert attributions[batch.valid].std() > 0
    assert not model.training, "PyG's Explainer restores its wrapper's mode: the task's model must stay in eval mode"
    assert torch.equal(attributions, explainer.explain(model, batch.inputs, batch.targets, task))
    monkeypatch.setenv("XAIBOARD_CACHE", str(tmp_path / "other-cache"))
    assert torch.equal(attributions, METHODS.create(method, **params).explain(model, batch.inputs, batch.targets, task))


# ---- PGExplainer's training cache -----------------------------------------------------------------


def test_pgexplainer_trains_once_per_model(monkeypatch):
    """Perturbed inputs and a fresh object (disk cache) reuse the MLP; a randomised model (MPRT)
    has another fingerprint and gets its own training."""
    trained = []
    train = PGExplainerExplainer._train
    monkeypatch.setattr(PGExplainerExplainer, "_train", lambda self, model, task: trained.append(1) or train(self, model, task))
    task = TASKS.create("graph/ba-2motifs@1")
    model, batch = task.model(), task.samples("test", 4, seed=0)
    first = METHODS.create("pgexplainer", **FAST_PG)
    attributions = first.explain(model, batch.inputs, batch.targets, task)
    noisy = task.perturb(batch.inputs, 0.1, torch.Generator().manual_seed(0))
    first.explain(model, noisy, batch.targets, task)
    again = METHODS.create("pgexplainer", **FAST_PG).explain(model, batch.inputs, batch.targets, task)
    assert len(trained) == 1 and torch.equal(again, attributions)
    randomised = copy.deepcopy(model)
    randomised.head.reset_parameters()
    first.explain(randomised, batch.inputs, batch.targets, task)
    assert len(trained) == 2

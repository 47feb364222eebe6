"""PyG references: ``groundtruth_metrics`` for gt_auroc and ``unfaithfulness`` (GEF).

The graph comparisons reuse the fidelity tests' setting (``graph/ba-shapes`` samples as one
disjoint union, a small ``GraphConv`` model without degree normalisation, for which PyG's
message masking equals the task's ``zero-weight`` removal). Probabilities at 1e-5.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_metrics_fidelity import pyg_explanation, trained_sum_gnn, union_mask
from torch_geometric.explain.metric import groundtruth_metrics
from torch_geometric.explain.metric import unfaithfulness as pyg_unfaithfulness

from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.fidelity import top_k_mask
from xaiboard.benchmark.metrics.unfaithfulness import unfaithfulness
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.tasks.ba_shapes import BAShapesTask

TOL = 1e-5


@pytest.fixture(scope="module")
def graph_setup():
    task = BAShapesTask()
    batch = task.samples("test", 10, seed=0)
    model = trained_sum_gnn(task)
    noise = torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(3))
    explanation = (noise * batch.valid).round(decimals=1)
    ctx = MetricContext(task, model, batch, explanation, RemovalEngine(task, model), 0, torch.device("cpu"))
    return task, model, batch, ctx


def test_gt_auroc_equals_pyg_groundtruth_auroc_per_sample(graph_setup):
    """PyG flattens whatever it is given into one AUROC (torchmetrics, ties count 1/2), so the
    per-sample reference is one call per sample on its valid edges. Our default ranks by
    magnitude (``abs=True``): it equals PyG on ``|a|``; ``abs=False`` equals PyG on ``a``. The
    attributions are rounded to 0.1, so there are ties."""
    pytest.importorskip("torchmetrics", reason="PyG's groundtruth_metrics needs torchmetrics")
    _, _, batch, ctx = graph_setup
    for abs_, attribution in ((True, ctx.explanation.abs()), (False, ctx.explanation)):
        ours = METRICS.create("gt_auroc", abs=abs_).compute(ctx)
        theirs = [
            groundtruth_metrics(a[v], gt[v].float(), "auroc")
            for a, gt, v in zip(attribution, batch.ground_truth, batch.valid)
        ]
        torch.testing.assert_close(ours, torch.tensor(theirs), atol=TOL, rtol=0)


def test_unfaithfulness_equals_pyg_per_sample_and_on_the_batch(graph_setup):
    task, model, batch, ctx = graph_setup
    ours = METRICS.create("unfaithfulness").compute(ctx)
    assert (ours > 1e-3).sum() >= 3, "the check needs non-trivial values"

    explainer, explanation_pyg = pyg_explanation(task, model, batch)
    explanation_pyg.edge_mask = union_mask(top_k_mask(ctx.explanation, batch.valid, 0.25), batch)
    centers = explanation_pyg.index
    per_sample = []
    for b in range(len(batch)):
        explanation_pyg.index = centers[b : b + 1]
        per_sample.append(pyg_unfaithfulness(explainer, explanation_pyg))
    torch.testing.assert_close(ours, torch.tensor(per_sample), atol=TOL, rtol=0)

    explanation_pyg.index = centers
    mean_kl = -torch.log1p(-ours.double()).mean().item()
    assert pyg_unfaithfulness(explainer, explanation_pyg) == pytest.approx(1 - math.exp(-mean_kl), abs=TOL)


def test_kl_runs_from_the_masked_to_the_original_distribution():
    """Original (1/2, 1/2), masked ~(1, 0): KL(masked || original) = log 2, so GEF = 1/2; the other
    direction would be ~50 (GEF ~1)."""
    value = unfaithfulness(torch.tensor([[0.0, 0.0]]), torch.tensor([[100.0, 0.0]]))
    assert value.item() == pytest.approx(0.5, abs=1e-6)
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(unfaithfulness(logits, logits), torch.zeros(4))


def test_keeping_every_feature_is_perfectly_faithful(setup):
    task, model, batch, engine = setup
    explanation = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(1))
    ctx = MetricContext(task, model, batch, explanation, engine, 0, torch.device("cpu"))
    assert torch.equal(METRICS.create("unfaithfulness", top_k_share=1.0).compute(ctx), torch.zeros(len(batch)))
    assert (METRICS.create("unfaithfulness").compute(ctx) > 0).all()
    metric = METRICS.factory("unfaithfulness")
    assert metric.direction == "lower" and metric.modalities == frozenset({"image", "text", "graph"})

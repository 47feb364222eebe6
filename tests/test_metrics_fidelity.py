"""Fidelity+/-, characterization and robust fidelity: known values on the toy task, PyG equivalence.

The PyG comparisons run on ``graph/ba-shapes`` samples (the batch's disjoint union from
``task.graph_call``) with a small ``GraphConv`` model: PyG masks an edge by scaling its message,
which equals the task's ``zero-weight`` removal for a layer without degree normalisation (not for
the task's GCN, whose ``gcn_norm`` still counts a masked edge). Class decisions compare exactly;
probabilities at 1e-5 (float32 sums in the same order up to the engine's chunking).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch_geometric.explain import Explainer, Explanation
from torch_geometric.explain.algorithm import DummyExplainer
from torch_geometric.explain.metric import characterization_score, fidelity
from torch_geometric.nn import GraphConv

from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.fidelity import robust_keep_masks, top_k_mask
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.tasks.ba_shapes import BAShapesTask

TOL = 1e-5
NAMES = ("fidelity_plus", "fidelity_minus", "characterization_score", "robust_fidelity_plus", "robust_fidelity_minus")


def context(task, model, batch, explanation, seed: int = 0) -> MetricContext:
    return MetricContext(task, model, batch, explanation, RemovalEngine(task, model), seed, torch.device("cpu"))


def scores(ctx: MetricContext, name: str, **params) -> Tensor:
    return METRICS.create(name, **params).compute(ctx)


@pytest.fixture
def toy(toy_task):
    model = toy_task.model()
    batch = toy_task.samples("test", 12, seed=5)
    return toy_task, model, batch


def test_planted_block_is_necessary_and_sufficient(toy):
    """Toy class 1 = bright top-left block: removing it flips the prediction, keeping it alone keeps it."""
    task, model, batch = toy
    ctx = context(task, model, batch, batch.ground_truth.float())  # top 4 of 16 = the block
    ones = batch.labels == 1
    assert ones.sum() >= 3 and (model(batch.inputs).argmax(1)[ones] == 1).all()
    for name, expected in [("fidelity_plus", 1.0), ("fidelity_minus", 0.0), ("characterization_score", 1.0)]:
        assert scores(ctx, name, top_k_share=0.25)[ones].tolist() == [expected] * int(ones.sum()), name


def test_explanation_covering_everything(toy):
    """S = all features: S alone is the input (fid- = 0) and x without S is the zero image, whose
    toy logits are 0 = a tie that argmax resolves to class 0."""
    task, model, batch = toy
    ctx = context(task, model, batch, torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(0)))
    correct = (model(batch.inputs).argmax(1) == batch.targets).float()
    assert scores(ctx, "fidelity_minus", top_k_share=1.0).tolist() == [0.0] * len(batch)
    torch.testing.assert_close(scores(ctx, "fidelity_plus", top_k_share=1.0), correct - (batch.targets == 0).float())
    robust_minus = scores(ctx, "robust_fidelity_minus", top_k_share=1.0, alpha2=0.0)
    # the same float32 probabilities (ulp 6e-8 near 1) computed in batches of different sizes,
    # whose matmuls may sum in another order: a few ulps apart (1.8e-7 seen on one CPU); 1e-5
    # is far above that and far below a real effect (one sample flipping moves a score by ~1)
    torch.testing.assert_close(robust_minus, torch.zeros(len(batch)), atol=1e-5, rtol=0)


def test_a_model_that_ignores_its_input_scores_zero_everywhere(toy):
    task, model, batch = toy
    with torch.no_grad():
        model.fc.weight.zero_()
    ctx = context(task, model, batch, torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(1)))
    for name in NAMES:
        assert scores(ctx, name).abs().max() == 0.0, name


def test_robust_fidelity_limits_are_plain_probability_fidelity(toy):
    """alpha1 = 1 removes all of S; alpha2 = 0 keeps S only; alpha1 = 0 removes nothing."""
    task, model, batch = toy
    explanation = torch.randn(batch.valid.shape, generator=torch.Generator().manual_seed(2))
    ctx = context(task, model, batch, explanation)
    hard = top_k_mask(explanation, batch.valid, 0.2)
    full = ctx.engine.full(batch.inputs, batch.targets)
    without, alone = ctx.engine.scores(batch.inputs, torch.stack([~hard, hard], 1), batch.targets).unbind(1)
    torch.testing.assert_close(scores(ctx, "robust_fidelity_plus", alpha1=1.0, n_samples=3), full - without)
    torch.testing.assert_close(scores(ctx, "robust_fidelity_minus", alpha2=0.0, n_samples=3), full - alone)
    # equal float32 probabilities from differently sized batches: a few ulps (6e-8) apart at most
    torch.testing.assert_close(scores(ctx, "robust_fidelity_plus", alpha1=0.0), torch.zeros(len(batch)), atol=1e-5, rtol=0)


def test_robust_masks_touch_only_their_side_and_never_padding():
    valid = torch.tensor([[True] * 10, [True] * 6 + [False] * 4])
    hard = top_k_mask(torch.arange(10.0).flip(0).expand(2, 10), valid, 0.5)
    assert hard.sum(1).tolist() == [5, 3]  # round(0.5 * 6) = 3 on the padded sample
    plus = robust_keep_masks(hard, valid, "plus", 0.3, 4000, torch.Generator().manual_seed(0))
    minus = robust_keep_masks(hard, valid, "minus", 0.9, 4000, torch.Generator().manual_seed(0))
    assert (plus | hard[:, None])[:, :, :6].all() and not (plus | minus)[1, :, 6:].any()
    assert (minus | ~hard[:, None]).all()
    assert abs(1 - plus[0][:, hard[0]].float().mean().item() - 0.3) < 0.02
    assert abs(minus[0][:, ~hard[0]].float().mean().item() - 0.9) < 0.02
    again = robust_keep_masks(hard, valid, "plus", 0.3, 4000, torch.Generator().manual_seed(0))
    assert torch.equal(plus, again)


def test_registered_metadata():
    for name in NAMES:
        metric = METRICS.factory(name)
        assert metric.family == "faithfulness" and metric.modalities == frozenset({"image", "text", "graph"})
    assert [METRICS.factory(n).direction for n in NAMES] == ["higher", "lower", "higher", "higher", "lower"]


# ---- PyG reference on a graph ----------------------------------------------------------------


class SumGNN(nn.Module):
    """Three ``GraphConv`` layers (sum aggregation, no degree normalisation)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([GraphConv(1, 16), GraphConv(16, 16), GraphConv(16, num_classes)])

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, batch: Tensor | None = None) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index, edge_weight)
            x = x.relu() if i < len(self.convs) - 1 else x
        return x


def trained_sum_gnn(task: BAShapesTask, epochs: int = 100) -> SumGNN:
    """Trained briefly (0.4 s, ~74% test accuracy), so that removals change its decisions both
    ways: an untrained one predicts one class everywhere and every fidelity is 0."""
    data, train = task.data, task.split["train"]
    torch.manual_seed(0)
    model = SumGNN(task.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.x, data.edge_index)[train], data.y[train]).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def graph_setup():
    task = BAShapesTask()
    batch = task.samples("test", 10, seed=0)
    model = trained_sum_gnn(task)
    explanation = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(3)) * batch.valid
    return task, model, batch, explanation


def pyg_explanation(task, model, batch) -> tuple[Explainer, Explanation]:
    """A PyG phenomenon explanation over the batch's disjoint union (its masks are replaced)."""
    call = task.graph_call(model, batch.inputs)
    explainer = Explainer(
        model,
        DummyExplainer(),
        explanation_type="phenomenon",
        edge_mask_type="object",
        model_config={"mode": "multiclass_classification", "task_level": "node", "return_type": "raw"},
    )
    target = torch.zeros(call.x.shape[0], dtype=torch.long)
    target[call.index] = batch.targets
    return explainer, explainer(call.x, call.edge_index, target=target, index=call.index, **call.kwargs)


def union_mask(per_slot: Tensor, batch) -> Tensor:
    """Float per-edge mask of the union from a ``[B, E_max]`` slot mask."""
    return per_slot[batch.inputs.edge_sample, batch.inputs.edge_slot].float()


def test_top_k_is_pyg_topk_hard_per_sample(graph_setup):
    _, _, batch, explanation = graph_setup
    hard = top_k_mask(explanation, batch.valid, 0.2)
    for b, n in enumerate(batch.valid.sum(1).tolist()):
        k = max(1, round(0.2 * n))
        theirs = Explanation(edge_mask=explanation[b, :n]).threshold(threshold_type="topk_hard", value=k).edge_mask
        assert torch.equal(hard[b, :n], theirs.bool()) and not hard[b, n:].any()


def test_fidelity_equals_pyg_per_sample_and_on_the_batch(graph_setup):
    task, model, batch, explanation = graph_setup
    ctx = context(task, model, batch, explanation)
    plus, minus = scores(ctx, "fidelity_plus"), scores(ctx, "fidelity_minus")
    char = scores(ctx, "characterization_score")
    assert plus.abs().sum() > 0 and minus.abs().sum() > 0, "the check needs non-trivial fidelities"

    explainer, explanation_pyg = pyg_explanation(task, model, batch)
    explanation_pyg.edge_mask = union_mask(top_k_mask(explanation, batch.valid, 0.2), batch)
    centers = explanation_pyg.index
    per_sample = []
    for b in range(len(batch)):
        explanation_pyg.index = centers[b : b + 1]
        per_sample.append(fidelity(explainer, explanation_pyg))
    theirs = torch.tensor(per_sample)
    assert torch.equal(plus.abs(), theirs[:, 0]) and torch.equal(minus.abs(), theirs[:, 1])

    explanation_pyg.index = centers
    batch_plus, batch_minus = fidelity(explainer, explanation_pyg)
    assert (batch_plus, batch_minus) == pytest.approx((plus.abs().mean().item(), minus.abs().mean().item()), abs=1e-6)  # float32 means of values <= 1
    pyg_char = characterization_score(torch.tensor(batch_plus), torch.tensor(batch_minus))
    ours_char = characterization_score(plus.abs().mean(), minus.abs().mean())
    torch.testing.assert_close(ours_char, pyg_char, atol=TOL, rtol=0)

    correct = model(batch.inputs.x, batch.inputs.edge_index)[batch.inputs.center].argmax(1) == batch.targets
    assert torch.equal(plus[correct], theirs[correct, 0]) and torch.equal(minus[correct], theirs[correct, 1])
    on_correct = characterization_score(plus[correct].mean(), minus[correct].mean())
    assert char[correct].mean() <= on_correct + 1e-7
    assert torch.equal(char, ((plus == 1) & (minus == 0)).float())


@pytest.mark.parametrize("name, side, alpha", [("robust_fidelity_plus", "plus", 0.1), ("robust_fidelity_minus", "minus", 0.9)])
def test_robust_fidelity_equals_the_same_draws_through_pyg(graph_setup, name, side, alpha):
    task, model, batch, explanation = graph_setup
    ctx = context(task, model, batch, explanation, seed=7)
    ours = scores(ctx, name, n_samples=6)
    keep = robust_keep_masks(top_k_mask(explanation, batch.valid, 0.2), batch.valid, side, alpha, 6, ctx.generator())

    explainer, _ = pyg_explanation(task, model, batch)
    call = task.graph_call(model, batch.inputs)

    def target_prob(edge_mask: Tensor | None) -> Tensor:
        logits = explainer.get_masked_prediction(call.x, call.edge_index, None, edge_mask, **call.kwargs)
        return logits.softmax(-1)[call.index].gather(1, batch.targets[:, None])[:, 0]

    with torch.no_grad():
        draws = torch.stack([target_prob(union_mask(keep[:, s], batch)) for s in range(6)], dim=1)
        theirs = target_prob(None) - draws.mean(1)
    assert ours.abs().sum() > 0
    torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)

"""The graph modality and ``graph/ba-shapes``: subgraph locality, removal, gradient rows, ground truth;
and checks every graph task passes (removal identities, determinism, an end-to-end run).

Logit comparisons use ``atol=1e-5``: the same GCN sums the same messages in a different order
on a subgraph copy than on the full graph, so float32 results agree to rounding, not bitwise.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from captum.attr import Saliency
from sklearn.metrics import roc_auc_score

from xaiboard.benchmark.cost import count_passes
from xaiboard.benchmark.metrics.perturbation_curves import keep_masks
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.tasks import ba_shapes
from xaiboard.tasks.ba_shapes import BASE_NODES, BAShapesTask, edge_checksum, motif_of
from xaiboard.tasks.graph import union_of_subgraphs
from xaiboard.tasks.weights import weights_meta

ATOL = 1e-5


@pytest.fixture(scope="module")
def task() -> BAShapesTask:
    return BAShapesTask()


@pytest.fixture(scope="module")
def model(task):
    return task.model()


@pytest.fixture(scope="module")
def batch(task):
    return task.samples("test", 8, seed=0)


def full_graph_logits(task, model, nodes):
    with torch.no_grad():
        return model(task.data.x, task.data.edge_index)[nodes]


def test_registered_and_card(task):
    assert isinstance(TASKS.create("graph/ba-shapes@1"), BAShapesTask) and task.tier == "archived"
    assert task.card.test_accuracy == weights_meta("graph_ba_shapes")["test_accuracy"]
    with pytest.raises(ValueError, match="unknown graph removal"):
        BAShapesTask(removal="blur")


def test_all_ones_removal_is_the_full_graph(task, model, batch):
    """k-hop locality: the node's subgraph gives the same logits as the whole graph."""
    keep = batch.valid.unsqueeze(1)
    with torch.no_grad():
        kept = task.predict(model, task.remove(batch.inputs, keep))
        plain = task.logits(model, batch.inputs)
    full = full_graph_logits(task, model, batch.ids)
    torch.testing.assert_close(kept, plain, atol=ATOL, rtol=0)
    torch.testing.assert_close(plain, full, atol=ATOL, rtol=0)
    assert batch.inputs.node_id[batch.inputs.center].tolist() == batch.ids.tolist()


def test_zero_weight_equals_drop_edge_for_gcn(task, model, batch):
    keep = torch.rand(len(batch), 5, batch.valid.shape[1], generator=torch.Generator().manual_seed(1)) < 0.5
    dropping = BAShapesTask(removal="drop-edge")
    with torch.no_grad():
        zero = task.predict(model, task.remove(batch.inputs, keep))
        dropped_rows = dropping.remove(batch.inputs, keep)
        drop = dropping.predict(model, dropped_rows)
    torch.testing.assert_close(zero, drop, atol=ATOL, rtol=0)
    assert dropped_rows.edge_index.shape[1] == int((keep & batch.valid.unsqueeze(1)).sum())
    assert not torch.allclose(zero, zero[:1].expand_as(zero)), "masks must change the logits"


def test_rows_are_ordered_sample_major(task, model, batch):
    """Row ``b*K + k`` is sample ``b`` under mask ``k``, checked against one-node batches."""
    k = 3
    keep = torch.rand(len(batch), k, batch.valid.shape[1], generator=torch.Generator().manual_seed(2)) < 0.7
    with torch.no_grad():
        rows = task.predict(model, task.remove(batch.inputs, keep))
        for b in (0, 5):
            alone = union_of_subgraphs(task.data.x, task.data.edge_index, batch.ids[b : b + 1], task.num_hops)
            width = int(alone.edge_counts()[0])
            expected = task.predict(model, task.remove(alone, keep[b : b + 1, :, :width]))
            torch.testing.assert_close(rows[b * k : (b + 1) * k], expected, atol=ATOL, rtol=0)


def test_removal_reuses_one_union_per_k_and_rebuilds_it_when_the_graphs_change(task, model, batch):
    """``remove`` builds the union of ``k`` copies once per inputs and ``k`` (the engine's chunks
    only write edge weights): the rows equal the builder's, bit for bit, for every chunk; a graph
    changed in place gets a new union; gradients still reach node features through the rows."""
    keep = torch.rand(len(batch), 4, batch.valid.shape[1], generator=torch.Generator().manual_seed(4)) < 0.5
    inputs = replace(batch.inputs)
    sample_idx = torch.arange(len(batch)).repeat_interleave(2)
    with torch.inference_mode():  # as the engine calls it; the plan must outlive inference mode
        first = [task.remove(inputs, keep[:, k : k + 2]) for k in (0, 2)]
    assert len(inputs.__dict__["_copies"]) == 1
    for k, rows in zip((0, 2), first):
        built = task.select(inputs, sample_idx, keep[:, k : k + 2].reshape(2 * len(batch), -1).float())
        for field in ("x", "edge_index", "edge_sample", "edge_slot", "center", "node_sample", "node_id", "edge_weight"):
            assert torch.equal(getattr(rows, field), getattr(built, field)), field
    plan = task.copies(inputs, 2)
    assert task.copies(inputs, 2) is plan and task.copies(replace(inputs), 2) is not plan
    inputs.edge_index.add_(0)  # the same tensor, changed in place
    assert task.copies(inputs, 2) is not plan
    x = inputs.x.clone().requires_grad_()
    rows = task.remove(replace(inputs, x=x), keep[:, :2])
    task.predict(model, rows).sum().backward()
    assert x.grad.abs().sum() > 0


def test_engine_computes_the_ends_of_removal_paths_and_the_full_input_once(task, model, batch):
    """Deletion's and insertion's ends (every valid edge kept, none kept; the two curves differ
    on padding there) and the unmodified logits are computed once per engine and inputs, bit for
    bit as a fresh engine computes them; inputs changed in place, or made in inference mode, are
    computed again."""
    assert not batch.valid.all(), "the check needs padding"
    explanation = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(5))
    inputs = replace(batch.inputs, x=batch.inputs.x.clone())
    engine = RemovalEngine(task, model, 64)

    def run(engine, inputs):
        curves = [keep_masks(explanation, batch.valid, 4, mode) for mode in ("deletion", "insertion")]
        scores = [engine.scores(inputs, keep, batch.targets, "logit") for keep in curves]
        return [*scores, engine.full(inputs, batch.targets), engine.full(inputs, batch.targets, "logit")]

    with count_passes(model) as cost:
        shared = run(engine, inputs)
    alone = [run(RemovalEngine(task, model, 64), inputs)[i] for i in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(shared, alone))
    assert cost.forward_passes == len(batch) * (5 + 3 + 1)  # insertion: 3 new steps; one full pass
    with count_passes(model) as cost:
        again = run(engine, inputs)
    assert cost.forward_passes == len(batch) * (3 + 3) and all(torch.equal(a, b) for a, b in zip(again, shared))
    inputs.x.mul_(2.0)  # changed in place: every row again, and other values
    with count_passes(model) as cost:
        changed = run(engine, inputs)
    assert cost.forward_passes == len(batch) * 9 and not torch.equal(changed[0], shared[0])
    with torch.inference_mode():
        frozen = replace(inputs, x=inputs.x.clone())
    with count_passes(model) as cost:
        run(engine, frozen)
        run(engine, frozen)
    assert cost.forward_passes == 2 * len(batch) * (5 + 5 + 2)


@pytest.mark.parametrize("expand", ["tile", "interleave"])
def test_gradient_forward_accepts_captum_expansions(task, model, batch, expand):
    spec = task.gradient_spec(model, batch.inputs)
    assert torch.equal(spec.inputs.bool(), batch.valid)
    assert not spec.baselines.any()
    gates = spec.inputs * torch.rand(spec.inputs.shape, generator=torch.Generator().manual_seed(3))
    (sample_idx,) = spec.additional_args
    if expand == "tile":
        many_gates, many_idx = gates.repeat(3, 1), sample_idx.repeat(3)
    else:
        many_gates, many_idx = gates.repeat_interleave(3, dim=0), sample_idx.repeat_interleave(3)
    with torch.no_grad():
        once = spec.forward(gates, sample_idx)
        many = spec.forward(many_gates, many_idx)
    expected = once.repeat(3, 1) if expand == "tile" else once.repeat_interleave(3, dim=0)
    torch.testing.assert_close(many, expected, atol=ATOL, rtol=0)


def test_gradients_reach_the_gates(task, model, batch):
    spec = task.gradient_spec(model, batch.inputs)
    gates = spec.inputs.clone().requires_grad_()
    spec.forward(gates, *spec.additional_args).gather(1, batch.targets.view(-1, 1)).sum().backward()
    assert gates.grad[batch.valid].abs().sum() > 0
    assert gates.grad[~batch.valid].abs().sum() == 0


def test_motif_numbering_matches_pyg(task):
    """ExplainerDataset appends motif m as nodes 300+5m..300+5m+4 with roles 1,1,2,2,3."""
    data = task.data
    ids = torch.arange(data.num_nodes)
    assert torch.equal(data.node_mask.bool(), ids >= BASE_NODES)
    src, dst = data.edge_index
    same_motif = (motif_of(src) == motif_of(dst)) & (motif_of(src) >= 0)
    assert torch.equal(data.edge_mask.bool(), same_motif)
    assert data.y[BASE_NODES:].view(-1, 5).eq(torch.tensor([1, 1, 2, 2, 3])).all()


def test_ground_truth_is_the_nodes_own_house(task, batch):
    gt, inputs = batch.ground_truth, batch.inputs
    assert gt.sum(1).tolist() == [12] * len(batch), "a house has 6 undirected = 12 directed edges"
    assert not (gt & ~batch.valid).any()
    src, dst = inputs.node_id[inputs.edge_index]
    on_gt = gt[inputs.edge_sample, inputs.edge_slot]
    own = motif_of(batch.ids)[inputs.edge_sample[on_gt]]
    assert torch.equal(motif_of(src[on_gt]), own) and torch.equal(motif_of(dst[on_gt]), own)
    assert (batch.labels > 0).all()


def test_generation_and_sampling_are_deterministic(task, batch):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    fresh = BAShapesTask()
    assert torch.equal(fresh.data.edge_index, task.data.edge_index), "the graph must not depend on global state"
    assert torch.rand(1) == before, "generation must restore the global generator"
    assert edge_checksum(fresh.data.edge_index) == weights_meta("graph_ba_shapes")["checksum"]
    again = fresh.samples("test", 8, seed=0)
    assert torch.equal(again.ids, batch.ids) and torch.equal(again.ground_truth, batch.ground_truth)
    assert not torch.equal(fresh.samples("test", 8, seed=1).ids, batch.ids)


def test_samples_are_capped_at_the_test_motif_nodes(task):
    pool = task.motif_nodes("test")
    assert pool.numel() == 80
    everything = task.samples("test", 1000, seed=0)
    assert sorted(everything.ids.tolist()) == pool.tolist()
    assert not set(pool.tolist()) & set(task.split["train"].tolist())


def test_checksum_drift_is_a_clear_error(task, monkeypatch):
    monkeypatch.setattr(ba_shapes, "weights_meta", lambda stem: {"checksum": "0000"})
    with pytest.raises(RuntimeError, match="graph_ba_shapes.json.*checksum 0000"):
        task.model()


def test_committed_weights_accuracy(task, model):
    test = task.split["test"]
    predicted = full_graph_logits(task, model, test).argmax(1)
    accuracy = (predicted == task.data.y[test]).float().mean().item()
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(weights_meta("graph_ba_shapes")["test_accuracy"], abs=1e-6)


def test_saliency_finds_the_house_and_random_does_not(task, model):
    """The CI sanity bar: gradient edge saliency beats random by far on ground-truth ROC AUC."""
    batch = task.samples("test", 64, seed=0)
    spec = task.gradient_spec(model, batch.inputs)
    saliency = Saliency(spec.forward).attribute(
        spec.inputs.clone().requires_grad_(), target=batch.targets, additional_forward_args=spec.additional_args
    )
    noise = torch.rand(batch.valid.shape, generator=torch.Generator().manual_seed(0))

    def auroc(scores):
        rows = zip(scores.detach(), batch.ground_truth, batch.valid)
        return sum(roc_auc_score(g[v].numpy(), s[v].numpy()) for s, g, v in rows) / len(batch)

    assert auroc(saliency) > 0.9
    assert auroc(noise) == pytest.approx(0.5, abs=0.05), "64 samples of ~400 edges: chance is 0.5 +- ~0.02"


def test_model_free_control_ranks_by_distance(task, batch):
    scores = task.model_free_attribution(batch.inputs)
    inputs = batch.inputs
    into_center = inputs.edge_index[1] == inputs.center[inputs.edge_sample]
    slot_scores = scores[inputs.edge_sample, inputs.edge_slot]
    assert (slot_scores[into_center] >= 1.0).all() and (slot_scores[~into_center] < 1.0).all()
    assert (scores[~batch.valid] == 0).all()


def test_graph_call_and_perturb(task, model, batch):
    call = task.graph_call(model, batch.inputs)
    with torch.no_grad():
        torch.testing.assert_close(call.model_fn(call.x, call.edge_index)[call.index], task.logits(model, batch.inputs))
    assert torch.equal(call.edge_slot[:, 0], batch.inputs.edge_sample) and call.task_level == "node"
    noisy = task.perturb(batch.inputs, 0.1, torch.Generator().manual_seed(0))
    delta = noisy.x - batch.inputs.x
    assert delta.abs().max() <= 0.1 and delta.abs().max() > 0.05
    assert torch.equal(noisy.edge_index, batch.inputs.edge_index)


# ---- every graph task: removal identities, determinism, one end-to-end run ----------------------
GRAPH_TASKS = [
    "graph/ba-shapes", "graph/tree-cycles", "graph/ba-2motifs", "graph/mutagenicity",
    "graph/ba-shapes@1", "graph/tree-cycles@1", "graph/ba-2motifs@1",
]


@pytest.fixture(scope="module", params=GRAPH_TASKS)
def any_graph_task(request, tmp_path_factory):
    """Each graph task with its model and 6 test samples (Mutagenicity from the offline TU copy)."""
    from mirror_graph import tu_data_root

    with pytest.MonkeyPatch.context() as env:
        if request.param == "graph/mutagenicity":
            env.setenv("XAIBOARD_DATA", str(tu_data_root(tmp_path_factory)))
        task = TASKS.create(request.param)
        model = task.model()
        yield task, model, task.samples("test", 6, seed=0)


def without_edges(inputs):
    """The same samples with no edges at all: what removing every edge must amount to."""
    none = inputs.edge_index[:, :0]
    return replace(inputs, edge_index=none, edge_sample=inputs.edge_sample[:0], edge_slot=inputs.edge_slot[:0])


def test_removing_nothing_or_everything(any_graph_task):
    """Keeping every edge gives the original logits; removing every edge gives the edgeless graph's."""
    task, model, batch = any_graph_task
    keep = torch.stack([batch.valid, torch.zeros_like(batch.valid)], dim=1)
    with torch.no_grad():
        rows = task.predict(model, task.remove(batch.inputs, keep)).view(len(batch), 2, -1)
        original = task.logits(model, batch.inputs)
        edgeless = task.predict(model, without_edges(batch.inputs))
    torch.testing.assert_close(rows[:, 0], original, atol=ATOL, rtol=0)
    torch.testing.assert_close(rows[:, 1], edgeless, atol=ATOL, rtol=0)
    assert not torch.allclose(original, edgeless, atol=1e-3)


def test_zero_weight_equals_drop_edge(any_graph_task):
    """GCN normalises by weighted degree and the weighted GIN scales messages: weight 0 = no edge."""
    task, model, batch = any_graph_task
    keep = torch.rand(len(batch), 4, batch.valid.shape[1], generator=torch.Generator().manual_seed(1)) < 0.5
    dropping = type(task)(removal="drop-edge")
    with torch.no_grad():
        zero = task.predict(model, task.remove(batch.inputs, keep))
        drop = dropping.predict(model, dropping.remove(batch.inputs, keep))
    torch.testing.assert_close(zero, drop, atol=ATOL, rtol=0)


def test_samples_are_deterministic_and_have_ground_truth(any_graph_task):
    task, _, batch = any_graph_task
    again = task.samples("test", 6, seed=0)
    assert torch.equal(again.ids, batch.ids) and torch.equal(again.ground_truth, batch.ground_truth)
    assert torch.equal(again.inputs.edge_index, batch.inputs.edge_index)
    assert not torch.equal(task.samples("test", 6, seed=1).ids, batch.ids)
    assert batch.ground_truth.any(1).all() and not (batch.ground_truth & ~batch.valid).any()
    assert task.card.test_accuracy is not None and task.card.splits and task.card.removal_baseline


def test_graph_call_matches_the_logits(any_graph_task):
    task, model, batch = any_graph_task
    call = task.graph_call(model, batch.inputs)
    with torch.no_grad():
        out = call.model_fn(call.x, call.edge_index, **call.kwargs)[call.index]
    torch.testing.assert_close(out, task.logits(model, batch.inputs))
    assert torch.equal(call.edge_slot[:, 0], batch.inputs.edge_sample)


def test_saliency_and_gnnexplainer_run_end_to_end(any_graph_task, tmp_path):
    """Through the runner: explanations, a ground-truth metric and a removal metric, no errors."""
    import xaiboard.benchmark.metrics  # registers the metrics
    import xaiboard.methods  # noqa: F401  (registers the methods)
    from xaiboard.benchmark.cache import ExplanationCache
    from xaiboard.benchmark.runner import run
    from xaiboard.benchmark.store import ResultStore

    task, _, _ = any_graph_task
    records = run(
        [task],
        ["saliency", "gnnexplainer"],
        ["gt_auroc", "deletion_auc"],
        n=4,
        device="cpu",
        store=ResultStore(tmp_path / "results"),
        cache=ExplanationCache(tmp_path / "cache"),
        progress=False,
    )
    assert len(records) == 4
    for record in records:
        assert record.status == "ok", record.error
        assert len(record.scores) == 4 and all(0 <= s <= 1 for s in record.scores)

"""The FastDnX BA-Shapes and robust-fidelity reproductions: their pieces against closed forms, and
each table at a tiny size (one seed, a few samples)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from xaiboard.benchmark.reproductions import REPRODUCTIONS, run_reproduction
from xaiboard.benchmark.reproductions import fastdnx_bashapes as fdx
from xaiboard.benchmark.reproductions import robust_fidelity as rfid
from xaiboard.benchmark.task import GraphCall
from xaiboard.tasks.graph import GraphInputs

#: float32 sums of < 10 products of numbers below 10: round-off is ~1e-6, far below this
FLOAT_TOL = 1e-4


def two_paths() -> tuple[Tensor, Tensor]:
    """Two undirected paths, 0-1-2-3 and 4-5-6, as one union (both directions of every edge)."""
    pairs = torch.tensor([[0, 1], [1, 2], [2, 3], [4, 5], [5, 6]]).T
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    return edge_index, torch.tensor([0, 0, 0, 0, 1, 1, 1])


# ---- FastDnX -------------------------------------------------------------------------------
def test_authors_scores_are_walk_weight_times_inner_product_and_the_centre_gets_the_sum():
    torch.manual_seed(0)
    edge_index, batch = two_paths()
    x = torch.rand(7, 3)
    surrogate = nn.Linear(3, 2)
    call = GraphCall(model_fn=None, x=x, edge_index=edge_index, index=torch.tensor([1, 4]),
                     edge_slot=torch.zeros(0, 2, dtype=torch.long), kwargs={"batch": batch})
    index, coef = gcn_norm(edge_index, None, 7, add_self_loops=True)
    adjacency = torch.zeros(7, 7).index_put_((index[1], index[0]), coef, accumulate=True)
    walks = torch.linalg.matrix_power(adjacency, 2)  # (Â^2)[v, u]
    per_class = x @ surrogate.weight.T
    expected = torch.zeros(7)
    for sample, v in enumerate((1, 4)):
        nodes = (batch == sample).nonzero().flatten()
        z_less_bias = walks[v] @ per_class
        expected[nodes] = walks[v, nodes] * (per_class[nodes] @ z_less_bias)
        expected[v] = expected[nodes].sum()
    torch.testing.assert_close(fdx.authors_scores(surrogate, call, 2), expected.detach(), atol=FLOAT_TOL, rtol=0)


def test_top_k_accuracy_counts_the_explained_nodes_house_among_the_top_five(monkeypatch):
    """Path 0-1-2-3 explaining node 1, 'house' = nodes {0, 1, 2}: top 2 by score = {3, 2} -> 1/3."""
    edge_index, batch = two_paths()
    inputs = GraphInputs(x=torch.ones(7, 1), edge_index=edge_index, edge_sample=batch[edge_index[0]],
                         edge_slot=torch.zeros(edge_index.shape[1], dtype=torch.long), center=torch.tensor([1, 4]),
                         node_sample=batch, node_id=torch.arange(7))
    call = GraphCall(model_fn=None, x=inputs.x, edge_index=edge_index, index=inputs.center,
                     edge_slot=torch.zeros(0, 2, dtype=torch.long), kwargs={"batch": batch})
    motif = lambda nodes: torch.where(nodes <= 2, 0, torch.where(nodes >= 4, 1, -1))  # noqa: E731
    monkeypatch.setattr(fdx, "TOP_K", 2)
    scores = torch.tensor([0.0, 1, 2, 3, 5, 4, 3])
    accuracy = fdx.top_k_accuracy(scores, inputs, call, 3, motif)
    torch.testing.assert_close(accuracy, torch.tensor([1 / 3, 2 / 3]))  # sample 1: top {4, 5} of house {4, 5, 6}


def test_fastdnx_bashapes_quick_table(tmp_path, monkeypatch):
    """The table's structure at a tiny size: 5 nodes, a 5-epoch model."""
    monkeypatch.setattr(fdx, "QUICK_NODES", 5)
    monkeypatch.setattr(fdx, "QUICK_EPOCHS", 5)
    record = run_reproduction(REPRODUCTIONS.create("fastdnx-bashapes"), 1, True, tmp_path, progress=False, log=lambda _: None)
    rows = {r["method"]: r for r in record["rows"]}
    assert rows["fastdnx"]["paper"] == "0.995" and 0 <= rows["fastdnx"]["ours_mean"] <= 1
    assert rows["dnx"]["verdict"] == "skipped"
    assert {fdx.BOARD_SIGNED, fdx.BOARD_ABS, "fastdnx, board model", "model accuracy"} <= set(rows)


# ---- robust fidelity ---------------------------------------------------------------------------
def test_undirected_pairs_join_both_directions():
    edge_index, batch = two_paths()
    sample = batch[edge_index[0]]
    slot = torch.tensor([0, 1, 2, 0, 1, 3, 4, 5, 2, 3])  # each sample's edges take slots 0..E_b-1
    inputs = GraphInputs(x=torch.ones(7, 1), edge_index=edge_index, edge_sample=sample, edge_slot=slot,
                         center=torch.tensor([0, 4]), node_sample=batch, node_id=torch.arange(7))
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    slots, pair_valid = rfid.undirected_pairs(inputs, valid)
    assert pair_valid.tolist() == [[True, True, True], [True, True, False]]
    assert slots[sample, slot].tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 0, 1]  # u->v and v->u: one pair


def test_corruptions_remove_and_add_the_stated_shares_nested():
    truth = torch.tensor([[True] * 10 + [False] * 20])
    cells = rfid.corrupted(truth, torch.ones_like(truth), torch.Generator().manual_seed(0))
    kept = (cells & truth[:, None, None]).sum(-1)[0]
    added = (cells & ~truth[:, None, None]).sum(-1)[0]
    assert kept[:, 0].tolist() == [10, 9, 7, 5, 3, 1] and added[0].tolist() == [0, 2, 6, 10, 14, 18]
    assert (cells[0, 0, 0] == truth[0]).all()
    assert (cells[0, 2, 3] <= cells[0, 1, 4] | ~truth[0]).all() and (cells[0, 2, 3] & ~truth[0] <= cells[0, 2, 4]).all()


def test_truth_beats_counts_strict_wins_only():
    grid = np.arange(36.0).reshape(6, 6)[::-1, ::-1].copy()  # (0, 0) the largest
    assert rfid.truth_beats(grid, higher=True) == 1.0 and rfid.truth_beats(grid, higher=False) == 0.0
    grid[5, 5] = grid[0, 0]  # a tie is no win
    assert rfid.truth_beats(grid, higher=True) == pytest.approx(34 / 35)
    rows = np.repeat([[5.0], [4], [3], [2], [1], [0]], 6, axis=1)  # row means 5 > 4 > ... > 0
    assert rfid.truth_row_beats(rows, higher=True) == 1.0 and rfid.truth_row_beats(rows, higher=False) == 0.0
    rows[3] = 5.0  # a removal row tying with the truth's is no win
    assert rfid.truth_row_beats(rows, higher=True) == pytest.approx(4 / 5)


def test_robust_fidelity_quick_table(tmp_path, monkeypatch):
    """The table's structure at a tiny size: BA-2Motifs only, a 2 x 2 grid, 4 graphs, 2 draws."""
    monkeypatch.setattr(rfid, "DATASETS", {"BA-2Motifs": "graph/ba-2motifs@1"})
    monkeypatch.setattr(rfid, "GRID", (0.0, 0.5))
    monkeypatch.setattr(rfid, "QUICK_SAMPLES", 4)
    monkeypatch.setattr(rfid, "QUICK_DRAWS", 2)
    record = run_reproduction(REPRODUCTIONS.create("robust-fidelity"), 1, True, tmp_path, progress=False, log=lambda _: None)
    rows = [r for r in record["rows"] if "BA-2Motifs" in r["metric"]]
    assert len(rows) == len(rfid.FORMS) * len(rfid.FIDELITIES) * len(rfid.CHECKS)
    assert all(r["verdict"] in ("holds", "fails") and 0 <= r["ours_mean"] <= 1 for r in rows)
    assert all(np.shape(r["evidence"]["grid"]) == (2, 2) for r in rows)
    assert (tmp_path / "reproductions" / "robust-fidelity-ba-2motifs.png").stat().st_size > 0


# ---- PGExplainer -------------------------------------------------------------------------------
def test_pgexplainer_auc_quick_table(tmp_path, monkeypatch):
    """The table's structure at a tiny size: 2 nodes, a 20-epoch model, 1 explainer epoch."""
    from xaiboard.benchmark.reproductions import gnnexplainer_table1 as table1
    from xaiboard.benchmark.reproductions import pgexplainer_auc as pg

    monkeypatch.setattr(table1, "QUICK_NODES", 2)  # the models and nodes are table 1's (seeded_models)
    monkeypatch.setattr(table1, "QUICK_EPOCHS", 20)
    monkeypatch.setattr(pg, "QUICK_EPOCHS", 1)
    record = run_reproduction(REPRODUCTIONS.create("pgexplainer-auc"), 1, True, tmp_path, progress=False, log=lambda _: None)
    rows = {(r["method"], r["metric"]): r for r in record["rows"]}
    assert set(rows) == {("pgexplainer", "AUC BA-Shapes"), ("pgexplainer", "AUC Tree-Cycles"),
                         ("model accuracy", "BA-Shapes"), ("model accuracy", "Tree-Cycles")}
    assert rows[("pgexplainer", "AUC BA-Shapes")]["paper"] == "0.963 ± 0.011"
    assert 0 <= rows[("pgexplainer", "AUC Tree-Cycles")]["ours_mean"] <= 1


def test_syn4_graph_is_gen_syn4s_tree_with_cycles_attached_by_their_first_node():
    """The paper's Tree-Cycles: a breadth-first binary tree of 511 nodes, 60 six-cycles, cycle k
    attached by node 511 + 6k to tree node 8k, a second cycle-tree edge on about half of them,
    1% random edges; every counted edge present in both directions."""
    from xaiboard.benchmark.reproductions import gnnexplainer_table1 as table1

    data = table1.syn4_graph()
    pairs = {tuple(e) for e in data.edge_index.T.tolist()}
    assert data.num_nodes == 871 and data.x.shape == (871, 10)
    assert all((v, u) in pairs for u, v in pairs)
    assert all((i, (i - 1) // 2) in pairs for i in range(1, 511))
    assert all((511 + 6 * k, 8 * k) in pairs for k in range(60))
    assert int(data.edge_mask.sum()) == 2 * 360  # 60 cycles x 6 edges, both directions
    cycle_tree = {(u, v) for u, v in pairs if u >= 511 > v}
    assert 60 + 15 <= len(cycle_tree) <= 60 + 45  # the second edge: Binomial(60, 1/2), far tails excluded
    undirected = len(pairs) // 2
    assert undirected - (510 + 360 + len(cycle_tree)) <= int(0.01 * undirected) + 1  # random edges: at most 1%
    assert data.y.tolist() == [0] * 511 + [1] * 360
    assert torch.equal(table1.syn4_graph().edge_index, data.edge_index)  # fixed seed


def test_paper_gcn_layers_are_unit_norm_and_the_last_is_not_rectified():
    """GcnEncoderNode: each layer's output L2-normalised (the last exactly unit norm, the earlier
    ones rectified after normalising, so at most 1), concatenated (3 x 20) into the classifier."""
    from xaiboard.benchmark.reproductions import gnnexplainer_table1 as table1

    torch.manual_seed(0)
    data = table1.syn4_graph()
    model = table1.PaperGCN(10, 2)
    emb = model.embeddings(data.x, data.edge_index)
    assert emb.shape == (871, 60) and model(data.x, data.edge_index).shape == (871, 2)
    last = emb[:, 40:]
    assert torch.allclose(last.norm(dim=-1), torch.ones(871), atol=1e-5)  # float32 normalisation round-off
    assert (last < 0).any()  # no ReLU on the last layer
    assert (emb[:, :40] >= 0).all() and (emb[:, :20].norm(dim=-1) <= 1 + 1e-5).all()


def test_pgexplainer_mlp_reads_every_layers_embeddings():
    """The paper's PGExplainer reads the concatenated embeddings, not the last layer's."""
    from xaiboard.benchmark.reproductions import gnnexplainer_table1 as table1
    from xaiboard.benchmark.reproductions import pgexplainer_auc as pg

    data = table1.syn4_graph()
    model = table1.PaperGCN(10, 2)
    algorithm = pg.UnsaturatedPGExplainer(epochs=1, lr=0.003)
    assert algorithm._get_embeddings(model, data.x, data.edge_index).shape == (871, 60)

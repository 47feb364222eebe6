"""`xaiboard reproduce`: verdicts, GraphXAI's GEF and node explainers against closed forms, and each
reproduction's table at a tiny size.

The Benzene tests read ``../shared/data/graphxai-benzene`` (or ``$XAIBOARD_SHARED_DATA``) read-only
and skip when it is absent; the sanity checks' LeNet rows read ``quantus-lenet`` and ``mnist-test``
there when present (and are checked as ``skipped`` without them); everything else runs on synthetic
graphs and the board's image/digits.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import Tensor, nn

from xaiboard.benchmark.cli import main
from xaiboard.benchmark.reproductions import REPRODUCTIONS, run_reproduction
from xaiboard.benchmark.reproductions.base import Measured, Published, Reproduction, verdict
from xaiboard.benchmark.reproductions.graphxai_benzene import gef, top_share_removed
from xaiboard.benchmark.reproductions.node_attribution import BOARD_EXPLAINERS, PAPER_EXPLAINERS, loss_gradient, loss_integrated_gradients
from xaiboard.benchmark.reproductions.mnist_lenet import LeNet
from xaiboard.benchmark.reproductions.mnist_lenet import missing as lenet_missing
from xaiboard.benchmark.reproductions.sanity_checks import CLAIMS, CONTRAST_ROW, SIMILARITIES, dense_steps, similarities
from xaiboard.benchmark.registry import TASKS
from xaiboard.tasks.benzene import DenseGIN, DenseGraphs, data_dir

FLOAT_TOL = 1e-5  # float32 rounding of a softmax and sums over < 30 terms; the values are exact
#: 40 trapezoid intervals on a smooth 1-d path: error ~ f''/(12 * 40^2) < 1e-3 for a softplus of slope <= 2
IG_TOL = 1e-3
needs_benzene = pytest.mark.skipif(not (data_dir() / "x_true.npz").exists(), reason=f"Benzene data not at {data_dir()}")


def graphs(sizes: tuple[int, ...] = (4, 3), features: int = 14, seed: int = 0) -> DenseGraphs:
    """Path graphs of ``sizes`` atoms with random one-hot atoms, padded to the largest."""
    generator = torch.Generator().manual_seed(seed)
    n = max(sizes)
    mask = torch.arange(n)[None, :] < torch.tensor(sizes)[:, None]
    atoms = torch.randint(features, (len(sizes), n), generator=generator)
    x = F.one_hot(atoms, features).float() * mask[..., None]
    path = torch.diag(torch.ones(n - 1), 1)
    adj = (path + path.T)[None] * (mask[:, :, None] & mask[:, None, :])
    return DenseGraphs(x=x, adj=adj, mask=mask, labels=torch.ones(len(sizes), dtype=torch.long),
                       truth=torch.zeros_like(mask), ids=torch.arange(len(sizes)))


class SumModel(nn.Module):
    """logits = [0, w . sum of atoms' features]: every gradient and GEF value is in closed form."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.w = w

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        z = (x * mask[..., None]).sum(dim=1) @ self.w
        return torch.stack([torch.zeros_like(z), z], dim=1)


# ---- verdicts ----------------------------------------------------------------------------
def test_verdicts_spread_tolerance_off_claim_and_skip():
    cell = Published("m", "metric", "T1", value=0.5, spread=0.02)
    assert verdict(cell, Measured([0.50, 0.52]), 0.05, "").verdict == "within the paper's spread"
    assert verdict(cell, Measured([0.54]), 0.05, "").verdict == "within tolerance"
    off = verdict(cell, Measured([0.6]), 0.05, "a reason")
    assert (off.verdict, off.reason) == ("off", "a reason") and off.difference == pytest.approx(0.1)
    claim = Published("m", "metric", "F2", claim="decays")
    assert verdict(claim, Measured([0.1], holds=True), 0.05, "").verdict == "holds"
    assert verdict(claim, Measured([0.9], holds=False), 0.05, "why").verdict == "fails"
    assert verdict(cell, None, 0.05, "not registered").verdict == "skipped"
    assert verdict(claim, Measured(reason="no data here"), 0.05, "why").reason == "no data here"  # a cell's own reason wins


class Unregistered(Reproduction):
    name = "unregistered"
    paper, table, data, model, samples, metric = "P", "T", "D", "M", "S", "X"
    published = (Published("no-such-method", "X", "T", value=1.0), Published("local", "X", "T", value=1.0))
    registry_methods = ("no-such-method",)

    def measure(self, seeds, quick, progress, out_dir):
        return {("local", "X"): Measured([1.0 + 0.01 * s for s in seeds])}


def test_an_unregistered_method_is_skipped_and_the_record_is_written(tmp_path):
    messages = []
    record = run_reproduction(Unregistered(), 2, True, tmp_path, progress=False, log=messages.append)
    rows = {r["method"]: r for r in record["rows"]}
    assert rows["no-such-method"]["verdict"] == "skipped" and "not registered" in rows["no-such-method"]["reason"]
    assert rows["local"]["verdict"] == "within tolerance" and rows["local"]["ours_std"] == pytest.approx(0.005)
    assert any("no-such-method" in m for m in messages)
    assert json.loads((tmp_path / "reproductions" / "unregistered.json").read_text())["rows"] == record["rows"]


# ---- GEF and node explainers ---------------------------------------------------------------
def test_top_share_takes_floor_quarter_of_real_nodes_ties_to_lower_index():
    g = graphs((8, 5))
    scores = torch.tensor([[0.0, 3, 1, 3, 0, 0, 0, 0], [9.0, 1, 1, 1, 0, 99, 99, 99]])
    removed = top_share_removed(scores, g.mask)
    assert removed[0].nonzero().flatten().tolist() == [1, 3]  # floor(8/4) = 2: the two 3s
    assert removed[1].nonzero().flatten().tolist() == [0]  # floor(5/4) = 1; padding's 99s never count


def test_gef_is_one_minus_exp_of_kl_perturbed_to_original():
    g = graphs((4,))
    model = SumModel(torch.ones(14))
    removed = torch.tensor([[True, False, False, False]])
    p1, q1 = torch.sigmoid(torch.tensor(4.0)), torch.sigmoid(torch.tensor(3.0))  # 4 atoms, one zeroed
    kl = q1 * math.log(q1 / p1) + (1 - q1) * math.log((1 - q1) / (1 - p1))
    assert gef(model, g, removed).item() == pytest.approx(1 - math.exp(-kl), abs=FLOAT_TOL)
    assert gef(model, g, torch.zeros_like(removed)).item() == pytest.approx(0.0, abs=FLOAT_TOL)


def test_loss_gradient_is_the_signed_feature_sum_of_the_cross_entropy_gradient():
    g = graphs((4, 3))
    w = torch.linspace(-1, 1, 14)
    model = SumModel(w)
    z = model(g.x, g.adj, g.mask)[:, 1]
    # d/dx_n of -log sigmoid(z) = -(1 - sigmoid(z)) w, the same for every atom of a graph
    expected = (-(1 - torch.sigmoid(z)) * w.sum())[:, None] * g.mask
    torch.testing.assert_close(loss_gradient(model, g, g.labels, 0), expected, atol=FLOAT_TOL, rtol=0)


def test_loss_integrated_gradients_are_complete():
    """Summed over nodes, IG of the loss equals loss(x) - loss(all atoms zero)."""
    g = graphs((4, 3))
    model = SumModel(torch.linspace(-0.1, 0.2, 14))
    scores = loss_integrated_gradients(model, g, g.labels, 0)
    loss = lambda x: F.cross_entropy(model(x, g.adj, g.mask), g.labels, reduction="none")  # noqa: E731
    torch.testing.assert_close(scores.sum(dim=1), loss(g.x) - loss(torch.zeros_like(g.x)), atol=IG_TOL, rtol=0)


@pytest.mark.parametrize("name", [*PAPER_EXPLAINERS, "board guided_backprop"])
def test_node_explainers_shape_finite_zero_on_padding_deterministic(name):
    torch.manual_seed(0)
    model = DenseGIN().eval()
    g = graphs((5, 3, 4))
    explainer = BOARD_EXPLAINERS["guided_backprop"] if name.startswith("board") else PAPER_EXPLAINERS[name]
    scores = explainer(model, g, g.labels, 3)
    assert scores.shape == g.mask.shape and torch.isfinite(scores).all()
    assert (scores[~g.mask] == 0).all()
    torch.testing.assert_close(explainer(model, g, g.labels, 3), scores, atol=0, rtol=0)


def test_dense_gin_equals_pyg_gin_on_a_union_of_graphs():
    """The dense GIN is the authors' sparse GINConv model: same logits, mean and sum pooling."""
    from torch_geometric.nn import GINConv, global_add_pool, global_mean_pool
    from torch_geometric.utils import dense_to_sparse

    torch.manual_seed(0)
    dense = DenseGIN().eval()
    g = graphs((5, 3))
    edge_index = dense_to_sparse(g.adj, g.mask)[0]
    x, batch = g.x[g.mask], torch.arange(len(g)).repeat_interleave(g.mask.sum(1))
    for pool, pyg_pool in (("mean", global_mean_pool), ("add", global_add_pool)):
        dense.pool = pool
        h = x
        for conv in (dense.conv1, dense.conv2, dense.conv3):
            sparse = GINConv(conv.nn, train_eps=True)
            sparse.eps.data = conv.eps.data
            h = sparse(h, edge_index).relu()
        expected = dense.lin(pyg_pool(h, batch))
        torch.testing.assert_close(dense(g.x, g.adj, g.mask), expected, atol=FLOAT_TOL, rtol=0)


# ---- reproductions at a tiny size --------------------------------------------------------------
EXPECTED_COLUMNS = {"method", "metric", "table", "paper", "ours_mean", "ours_std", "difference", "verdict", "reason", "values", "evidence"}


def test_reproduce_list_shows_every_reproduction():
    result = CliRunner().invoke(main, ["reproduce", "list"])
    assert result.exit_code == 0, result.output
    for name in REPRODUCTIONS.names():
        assert name in result.output


@needs_benzene
def test_graphxai_benzene_quick_table(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "graphxai-benzene", "--quick", "--quiet", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "reproductions" / "graphxai-benzene.json").read_text())
    rows = {r["method"]: r for r in record["rows"]}
    assert {"random", "gradient", "integrated_gradients", "gradcam", "guided_backprop", "pgexplainer"} <= set(rows)
    assert all(set(r) == EXPECTED_COLUMNS for r in record["rows"])
    assert rows["gradient"]["paper"] == "0.262" and 0 <= rows["gradient"]["ours_mean"] <= 1
    assert "ks_statistic" in rows["random"]["evidence"]
    assert "GEF" in result.output and "paper" in result.output


def test_sanity_checks_quick_table_and_claims(tmp_path):
    """At the quick size (one seed, 8 images) on the board's digits CNN the paper's claims on
    gradient and Grad-CAM and the guided backprop vs gradient contrast hold; guided backprop's
    "stays high" through the whole cascade does not (see the module), which the table reports as
    ``fails``. The LeNet rows are measured when its data is here, else ``skipped`` with the reason."""
    record = run_reproduction(REPRODUCTIONS.create("sanity-checks"), 1, True, tmp_path, progress=False, log=lambda _: None)
    rows = {(r["method"], r["metric"]): r for r in record["rows"]}
    digits = {method: row["verdict"] for (method, metric), row in rows.items() if metric.endswith("(digits CNN)") and row["verdict"] in ("holds", "fails")}
    assert digits["saliency"] == digits["gradcam"] == digits[CONTRAST_ROW] == "holds"
    assert set(digits) == {*CLAIMS, CONTRAST_ROW}
    assert rows[("guided_backprop", "spearman_abs, all layers randomised (digits CNN)")]["verdict"] == "fails"
    curve = rows[("saliency", "spearman_abs, all layers randomised (digits CNN)")]["evidence"]["curve"]
    assert curve["layers"] == ["head", "last_conv", "features.3", "features.0"] and curve["dense_steps"] == 1
    assert set(curve["floor"]) == set(SIMILARITIES) and all(len(curve[k]) == 4 for k in SIMILARITIES)
    assert (tmp_path / "reproductions" / "sanity-checks.png").stat().st_size > 0
    if lenet_missing() is None:  # the LeNet's 5 steps, 3 of them dense
        lenet = rows[("guided_backprop", "spearman_abs, all layers randomised (LeNet/MNIST)")]["evidence"]["curve"]
        assert lenet["layers"] == ["fc_3", "fc_2", "fc_1", "conv_2", "conv_1"] and lenet["dense_steps"] == 3


def test_sanity_checks_without_the_lenet_data_skip_its_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIBOARD_SHARED_DATA", str(tmp_path / "nothing"))
    record = run_reproduction(REPRODUCTIONS.create("sanity-checks"), 1, True, tmp_path, progress=False, log=lambda _: None)
    lenet = [row for row in record["rows"] if row["metric"].endswith("(LeNet/MNIST)")]
    assert lenet and {row["verdict"] for row in lenet} == {"skipped"} and all("not found" in row["reason"] for row in lenet)
    assert {row["verdict"] for row in record["rows"] if row["metric"].endswith("(digits CNN)")} <= {"holds", "fails", "ours only"}


def test_sanity_similarities_known_answers():
    """A map against itself is 1 on every similarity, against its negation -1 on signed Spearman
    and 1 on the absolute ones (|map| unchanged); a map against its rank-reversed copy -1 on both
    Spearmans (exact: ranks of distinct values)."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 28, 28, generator=generator)
    same = similarities(maps, maps)
    assert all(v == pytest.approx(1.0, abs=FLOAT_TOL) for v in same.values())
    negated = similarities(maps, -maps)
    assert negated["spearman_signed"] == pytest.approx(-1.0, abs=FLOAT_TOL)
    assert negated["spearman_abs"] == negated["ssim"] == pytest.approx(1.0, abs=FLOAT_TOL)
    positive = maps.abs() + 1  # distinct positive values: |.| keeps their order
    reversed_ranks = similarities(positive, positive.amax() + 1 - positive)
    assert reversed_ranks["spearman_abs"] == reversed_ranks["spearman_signed"] == pytest.approx(-1.0, abs=FLOAT_TOL)


def test_dense_steps_count_the_linear_layers_above_the_first_convolution():
    assert dense_steps(LeNet()) == 3 and dense_steps(TASKS.create("image/digits").build_model()) == 1


def test_pooled_auc_is_one_for_the_ground_truth_and_half_for_a_constant():
    from xaiboard.benchmark.reproductions.gnnexplainer_table1 import pooled_auc

    task = TASKS.create("graph/ba-shapes@1")
    data, nodes = task.data, [400, 405]
    assert pooled_auc(lambda d, node: d.edge_mask.float(), data, nodes) == 1.0
    assert pooled_auc(lambda d, node: torch.ones(d.num_edges), data, nodes) == 0.5


def test_gnnexplainer_table1_quick_table(tmp_path, monkeypatch):
    """The table's structure at a tiny size: the gradient baseline only, 2 nodes, 20 epochs."""
    from xaiboard.benchmark.reproductions import gnnexplainer_table1 as table1

    monkeypatch.setattr(table1, "METHODS_UNDER_TEST", {"gradient": table1.gradient})
    monkeypatch.setattr(table1, "QUICK_NODES", 2)
    monkeypatch.setattr(table1, "QUICK_EPOCHS", 20)
    record = run_reproduction(REPRODUCTIONS.create("gnnexplainer-table1"), 1, True, tmp_path, progress=False, log=lambda _: None)
    rows = {(r["method"], r["metric"]): r for r in record["rows"]}
    assert set(rows) == {(m, f"AUC {d}") for m in ("gnnexplainer", "gradient") for d in ("BA-Shapes", "Tree-Cycles")} | {
        ("model accuracy", "BA-Shapes"), ("model accuracy", "Tree-Cycles")}
    assert rows[("gnnexplainer", "AUC BA-Shapes")]["verdict"] == "skipped"  # not run here
    assert 0 <= rows[("gradient", "AUC Tree-Cycles")]["ours_mean"] <= 1 and rows[("gradient", "AUC BA-Shapes")]["paper"] == "0.882"

"""GNNExplainer's Table 1 (Ying et al., "GNNExplainer: Generating Explanations for Graph Neural
Networks", NeurIPS 2019): explanation AUC on BA-Shapes and Tree-Cycles.

Protocol, as the paper and its code (RexYing/gnn-model-explainer) define it:

- data: BA-Shapes is the board's ``graph/ba-shapes@1`` graph (PyG's ``ExplainerDataset``). Tree-Cycles
  is *not* the board's ``graph/tree-cycles@1`` but the paper code's ``gen_syn4`` graph, built here
  (:func:`syn4_graph`): the board's graph attaches 80 cycles by a random cycle node to random tree
  nodes, so its nodes 511, 517, ... are arbitrary cycle positions; the paper's attaches 60 cycles
  by their first node (511 + 6k) to every 8th tree node, gives about half of them a second
  cycle-tree edge, and adds 1% random edges (checked against the authors' own Tree-Cycles file,
  PGExplainer's ``syn3.pkl``: 871 nodes, 971 edges, 95 cycle-tree edges). Ground truth: the motif
  edges, both directions;
- features: the paper code's 10 constant features (``ConstFeatureGen(np.ones(10))``);
- model: the paper code's ``GcnEncoderNode`` (:class:`PaperGCN`): 3 graph convolutions of width 20
  summing over the raw adjacency with a bias (``GraphConv``: ``adj @ x @ W + b``, no self term),
  each output L2-normalised (``normalize_embedding``), ReLU after the first two, all three
  concatenated into one linear layer; trained per seed on 80% of the nodes with Adam, lr 0.001,
  weight decay 0.005, gradient norm clipped at 2, 1,000 epochs (the paper's code's defaults);
- explained nodes: BA-Shapes 400, 405, ..., 695 and Tree-Cycles 511, 517, ..., 865 (one node per
  cycle, the node attaching it to the tree: PGExplainer's code's "setting 1"; GNNExplainer's released
  ``explainer_main.py`` explains ``range(400, 700, 5)`` for every dataset);
- metric: ROC AUC of the edge scores against the ground truth, pooled over the edges of every
  explained node's 3-hop computation subgraph; as in the paper's code, the node is explained on
  that subgraph (the model run on it alone);
- methods: GNNExplainer (PyG's, its defaults: 100 epochs, lr 0.01, the paper's size and entropy
  coefficients) and the gradient baseline ("Grad": absolute gradient of the node's log-probability
  w.r.t. each edge's weight); each node's explanation is its own fit, as in the paper.

Tree-Cycles stays below the paper; what was measured (``known_gaps``): the authors' own trained GCN
(PGExplainer's ``gcnsyn3`` checkpoint, accuracy .975) on the authors' own graph (its ``syn3.pkl``),
explained by PyG's GNNExplainer: AUC .52-.55, by the gradient: .68-.77 (20 of the nodes, this
module's truth or ``make_pred_real``'s); a re-implementation of the released code's GNNExplainer
loss (dense symmetric mask, lr 0.1, size, entropy, feature-mask and Laplacian terms): .53 (30 nodes,
``make_pred_real``'s truth); the authors' own trained PGExplainer on the same model, scored by this
module's AUC: .998 (all 60 nodes; paper .987). So the
scoring reproduces the authors' numbers when given the authors' explanations; GNNExplainer's and
the gradient's Tree-Cycles figures are not reached by the released code on the authors' model.
Seeds re-train the model and re-initialise the explainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import GNNExplainer
from torch_geometric.nn import GCNConv
from torch_geometric.utils import k_hop_subgraph
from tqdm.auto import tqdm

import xaiboard.tasks  # noqa: F401  (registers the graph tasks)

from ..registry import TASKS
from .base import REPRODUCTIONS, Measured, Published, Reproduction

TABLE = "Table 1 (explanation AUC)"
#: the paper's model and training recipe (gnn-model-explainer's defaults)
RECIPE = {
    "hidden": 20, "layers": 3, "features": 10, "lr": 0.001, "weight_decay": 0.005, "clip": 2.0, "epochs": 1000,
    "train_share": 0.8,
}
HOPS = 3
QUICK_NODES, QUICK_EPOCHS = 4, 200
#: gen_syn4's sizes: a balanced binary tree of height 8, 60 six-node cycles, 1% added random edges
TREE_HEIGHT, NUM_CYCLES, CYCLE_SIZE, PERTURB = 8, 60, 6, 0.01
GRAPH_SEED = 0


class PaperGCN(nn.Module):
    """The paper code's ``GcnEncoderNode``: ``layers`` convolutions ``adj @ x @ W + b`` over the raw
    adjacency (PyG's ``GCNConv(normalize=False)``: no degree normalisation, no self loop), each
    output L2-normalised, ReLU after all but the last, every layer's output concatenated into one
    linear classifier.

    Measured on the paper's Tree-Cycles graph (seed 0, 20 nodes): with PyG's ``GCN(jk="cat")``
    instead (no normalisation, ReLU on every layer) the model is as accurate (.984 vs .987) but
    its gradient AUC falls from .66 to .44."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        hidden = RECIPE["hidden"]
        self.convs = nn.ModuleList(GCNConv(in_channels if i == 0 else hidden, hidden, normalize=False) for i in range(RECIPE["layers"]))
        self.classifier = nn.Linear(hidden * RECIPE["layers"], num_classes)

    def embeddings(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Every layer's normalised output, concatenated: what the classifier (and the paper's
        PGExplainer) reads."""
        outputs = []
        for i, conv in enumerate(self.convs):
            x = F.normalize(conv(x, edge_index, edge_weight), p=2, dim=-1)
            x = F.relu(x) if i < len(self.convs) - 1 else x
            outputs.append(x)
        return torch.cat(outputs, dim=-1)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, batch: Tensor | None = None) -> Tensor:
        """Node logits; ``batch`` is accepted for the board's graph calls (FastDnX's reproduction
        explains through them) and not needed: every output is a node's."""
        return self.classifier(self.embeddings(x, edge_index, edge_weight))


def train(data: Data, num_classes: int, seed: int, epochs: int) -> nn.Module:
    """Full-batch training on a seeded random ``train_share`` of the nodes, gradient norm clipped
    as the paper's code does."""
    torch.manual_seed(seed)
    model = PaperGCN(data.num_node_features, num_classes)
    train_nodes = torch.randperm(data.num_nodes)[: int(RECIPE["train_share"] * data.num_nodes)]
    optimiser = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    model.train()
    for _ in range(epochs):
        optimiser.zero_grad()
        F.cross_entropy(model(data.x, data.edge_index)[train_nodes], data.y[train_nodes]).backward()
        nn.utils.clip_grad_norm_(model.parameters(), RECIPE["clip"])
        optimiser.step()
    return model.eval()


def syn4_graph(seed: int = GRAPH_SEED) -> Data:
    """The paper code's Tree-Cycles graph (``gen_syn4``), generated with a fixed seed.

    A balanced binary tree of height 8 numbered breadth-first (511 nodes, node i's parent
    (i - 1) // 2); cycle k (nodes 511 + 6k ... 516 + 6k) is attached by its first node to tree
    node 8k; with probability 1/2 a second edge joins cycle node 511 + 6k + a to tree node
    8k + b (a, b uniform in 1..3); then 1% of the edge count in random new edges. Label 1 on the
    cycles; ground truth the cycle edges (both directions); 10 constant features."""
    rng = np.random.default_rng(seed)
    tree_nodes = 2 ** (TREE_HEIGHT + 1) - 1
    spacing = tree_nodes // NUM_CYCLES
    edges = {(i, (i - 1) // 2) for i in range(1, tree_nodes)}
    motif: set[tuple[int, int]] = set()
    for k in range(NUM_CYCLES):
        start, anchor = tree_nodes + CYCLE_SIZE * k, spacing * k
        cycle = {(start + i, start + (i + 1) % CYCLE_SIZE) for i in range(CYCLE_SIZE)}
        motif |= {_undirected(e) for e in cycle}
        edges |= cycle | {(start, anchor)}
        if rng.random() > 0.5:
            edges.add((start + int(rng.integers(1, 4)), anchor + int(rng.integers(1, 4))))
    num_nodes = tree_nodes + CYCLE_SIZE * NUM_CYCLES
    undirected = {_undirected(e) for e in edges}
    for _ in range(int(PERTURB * len(undirected))):
        undirected.add(_random_new_edge(rng, num_nodes, undirected))
    pairs = torch.tensor(sorted(undirected)).T
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    edge_mask = torch.tensor([_undirected(e) in motif for e in edge_index.T.tolist()], dtype=torch.float)
    y = (torch.arange(num_nodes) >= tree_nodes).long()
    return Data(x=torch.ones(num_nodes, RECIPE["features"]), edge_index=edge_index, edge_mask=edge_mask, y=y)


def _undirected(edge: tuple[int, int]) -> tuple[int, int]:
    return (min(edge), max(edge))


def _random_new_edge(rng: np.random.Generator, num_nodes: int, existing: set[tuple[int, int]]) -> tuple[int, int]:
    """``gen_syn4``'s perturbation: a uniformly drawn pair that is not yet an edge nor a loop."""
    while True:
        u, v = (int(n) for n in rng.integers(0, num_nodes, 2))
        if u != v and _undirected((u, v)) not in existing:
            return _undirected((u, v))


def ba_shapes_graph() -> Data:
    """The board's BA-Shapes graph with the paper code's 10 constant features."""
    data = TASKS.create("graph/ba-shapes@1").data
    return Data(x=torch.ones(data.num_nodes, RECIPE["features"]), edge_index=data.edge_index, edge_mask=data.edge_mask, y=data.y)


#: dataset -> (graph builder, number of classes, explained nodes as range arguments)
DATASETS: dict[str, tuple[Callable[[], Data], int, tuple[int, int, int]]] = {
    "BA-Shapes": (ba_shapes_graph, 4, (400, 700, 5)),
    "Tree-Cycles": (syn4_graph, 2, (511, 871, 6)),
}


EdgeScorer = Callable[[Data, int], Tensor]


def gnnexplainer(model: nn.Module) -> EdgeScorer:
    """PyG's GNNExplainer (its defaults: 100 epochs, lr 0.01, the paper's size and entropy
    coefficients), explaining the node's predicted class; one fit per node."""
    explainer = Explainer(
        model, GNNExplainer(epochs=100, lr=0.01), explanation_type="model", edge_mask_type="object", node_mask_type=None,
        model_config={"mode": "multiclass_classification", "task_level": "node", "return_type": "raw"},
    )
    return lambda data, node: explainer(data.x, data.edge_index, index=node).edge_mask.detach()


def gradient(model: nn.Module) -> EdgeScorer:
    """The paper's "Grad" baseline: |d log p(predicted class) / d edge weight| for every edge.

    Written with autograd on the GCN's edge weights (weight 1 = the edge as is): PyG's
    ``CaptumExplainer("Saliency")`` fails on this model (Captum's gradient finds its edge mask
    unused in the graph)."""

    def scores(data: Data, node: int) -> Tensor:
        weight = torch.ones(data.num_edges, requires_grad=True)
        log_p = F.log_softmax(model(data.x, data.edge_index, edge_weight=weight)[node], dim=-1)
        return torch.autograd.grad(log_p.max(), weight)[0].abs()

    return scores


METHODS_UNDER_TEST: dict[str, Callable[[nn.Module], EdgeScorer]] = {"gnnexplainer": gnnexplainer, "gradient": gradient}


def computation_graph(data: Data, node: int) -> tuple[Data, int]:
    """The node's 3-hop computation subgraph, relabelled, and the node's index in it: the paper's
    code explains a node on this subgraph (``extract_neighborhood``), not on the whole graph."""
    subset, edge_index, mapping, edge_mask = k_hop_subgraph(node, HOPS, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes)
    return Data(x=data.x[subset], edge_index=edge_index, edge_mask=data.edge_mask[edge_mask]), int(mapping)


def pooled_auc(scorer: EdgeScorer, data: Data, nodes: Sequence[int]) -> float:
    """ROC AUC of edge scores vs ground truth, pooled over the edges of every node's 3-hop
    computation subgraph."""
    scores, truth = [], []
    for node in nodes:
        sub, center = computation_graph(data, node)
        scores.append(scorer(sub, center).abs())
        truth.append(sub.edge_mask)
    return float(roc_auc_score(torch.cat(truth).numpy(), torch.cat(scores).numpy()))


def accuracy(model: nn.Module, data: Data) -> float:
    with torch.no_grad():
        return float((model(data.x, data.edge_index).argmax(dim=1) == data.y).float().mean())


@REPRODUCTIONS.register("gnnexplainer-table1")
class GNNExplainerTable1(Reproduction):
    name = "gnnexplainer-table1"
    paper = "Ying et al., GNNExplainer: Generating Explanations for Graph Neural Networks, NeurIPS 2019"
    table = TABLE
    data = "BA-Shapes (the board's graph/ba-shapes@1 graph) and Tree-Cycles (the paper code's gen_syn4 graph)"
    model = "the paper code's 3-layer GCN (hidden 20, L2-normalised layers, outputs concatenated), trained per seed"
    samples = "BA-Shapes nodes range(400, 700, 5); Tree-Cycles range(511, 871, 6)"
    metric = "ROC AUC of edge scores vs motif edges, pooled over every explained node's 3-hop subgraph"
    published = (
        Published("gnnexplainer", "AUC BA-Shapes", TABLE, 0.925),
        Published("gradient", "AUC BA-Shapes", TABLE, 0.882),
        Published("gnnexplainer", "AUC Tree-Cycles", TABLE, 0.948),
        Published("gradient", "AUC Tree-Cycles", TABLE, 0.905),
    )
    default_seeds = 5
    tolerance = 0.05
    known_gaps = {
        "gradient": "BA-Shapes: ours scores higher than the paper's, which defines its Grad baseline only as "
        "gradient saliency; Tree-Cycles: see gnnexplainer",
        "gnnexplainer": "Tree-Cycles: below the paper on the paper's graph, model and scoring. Not the protocol: the "
        "authors' own trained GCN and graph (PGExplainer's gcnsyn3 checkpoint and syn3.pkl) give GNNExplainer .52-.55 "
        "and gradient .68-.77 on this scoring (a re-implementation of the released GNNExplainer loss: .53), while "
        "the authors' own trained PGExplainer scores .998 on it (all 60 nodes)",
    }

    def measure(self, seeds: Sequence[int], quick: bool, progress: bool, out_dir: Path) -> dict[tuple[str, str], Measured]:
        measured: dict[tuple[str, str], Measured] = {}
        for dataset, data, nodes, model in seeded_models(self.name, seeds, quick, progress, measured):
            for method, build in METHODS_UNDER_TEST.items():
                record(measured, (method, f"AUC {dataset}"), pooled_auc(build(model), data, nodes))
        return measured


def seeded_models(
    name: str, seeds: Sequence[int], quick: bool, progress: bool, measured: dict[tuple[str, str], Measured]
) -> Iterator[tuple[str, Data, list[int], nn.Module]]:
    """Per dataset and seed, the paper's GCN trained with that seed (its accuracy recorded in
    ``measured``), with the dataset's graph and explained nodes; torch is seeded with the seed
    before each is yielded, so the explainer that follows is seeded too."""
    with tqdm(total=len(DATASETS) * len(seeds), desc=name, disable=not progress) as bar:
        for dataset, (build_graph, num_classes, node_range) in DATASETS.items():
            data = build_graph()
            nodes = list(range(*node_range))[: QUICK_NODES if quick else None]
            for seed in seeds:
                model = train(data, num_classes, seed, QUICK_EPOCHS if quick else RECIPE["epochs"])
                record(measured, ("model accuracy", dataset), accuracy(model, data))
                torch.manual_seed(seed)
                yield dataset, data, nodes, model
                bar.update()


def record(measured: dict[tuple[str, str], Measured], key: tuple[str, str], value: float) -> None:
    measured.setdefault(key, Measured()).values.append(value)

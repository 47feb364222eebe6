"""GNNExplainer's Table 1 (Ying et al., "GNNExplainer: Generating Explanations for Graph Neural
Networks", NeurIPS 2019): explanation AUC on BA-Shapes and Tree-Cycles.

Protocol, as the paper and its code (RexYing/gnn-model-explainer) define it:

- data: the board's ``graph/ba-shapes@1`` and ``graph/tree-cycles@1`` graphs (PyG's
  ``ExplainerDataset``; ground truth = the edges inside motifs, PyG's ``edge_mask``);
- model: the paper's 3-layer GCN, hidden 20, every layer's output concatenated into the linear
  classifier: PyG's ``GCN(..., jk="cat")``; trained per seed on 80% of the nodes with Adam, lr
  0.001, weight decay 0.005, 1,000 epochs (the paper's code's defaults);
- explained nodes: the paper code's ranges, BA-Shapes 400, 405, ..., 695 and Tree-Cycles 511,
  517, ..., 865 (one node per motif position cycle);
- metric: ROC AUC of the edge scores against the ground truth, pooled over the edges of every
  explained node's 3-hop computation subgraph; as in the paper's code, the node is explained on
  that subgraph (the model run on it alone);
- methods: GNNExplainer (PyG's, its defaults: 100 epochs, lr 0.01, the paper's size and entropy
  coefficients) and the gradient baseline ("Grad": absolute gradient of the node's log-probability
  w.r.t. each edge's weight); each node's
  explanation is its own fit, as in the paper (GNNExplainer's optimisation is per instance).

The convolutions sum over the raw adjacency as the paper's code's ``GraphConv`` (``adj @ x @ W``);
its optional self term and embedding normalisation are not reproduced.
Seeds re-train the model and re-initialise the explainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import GNNExplainer
from torch_geometric.nn import GCN
from torch_geometric.utils import k_hop_subgraph
from tqdm.auto import tqdm

import xaiboard.tasks  # noqa: F401  (registers the graph tasks)

from ..registry import TASKS
from .base import REPRODUCTIONS, Measured, Published, Reproduction

TABLE = "Table 1 (explanation AUC)"
#: the paper's model and training recipe (gnn-model-explainer's defaults)
RECIPE = {"hidden": 20, "layers": 3, "lr": 0.001, "weight_decay": 0.005, "epochs": 1000, "train_share": 0.8}
#: dataset -> (board task, explained nodes as range arguments)
DATASETS = {"BA-Shapes": ("graph/ba-shapes@1", (400, 700, 5)), "Tree-Cycles": ("graph/tree-cycles@1", (511, 871, 6))}
HOPS = 3
QUICK_NODES, QUICK_EPOCHS = 4, 200


def concat_gcn(in_channels: int, num_classes: int) -> nn.Module:
    """The paper's GCN: 3 graph convolutions of width 20 over the raw adjacency (``A x W``, no
    degree normalisation: PyG's ``GCNConv(normalize=False)``), ReLU after each, all three
    concatenated into one linear layer (PyG's jumping knowledge ``cat``).

    Measured (seed 0, 1,000 epochs): with PyG's default symmetric normalisation the model cannot
    learn Tree-Cycles from constant features (accuracy .52: normalisation hides the degrees);
    over the raw adjacency it reaches .999 (BA-Shapes: .90 vs .93)."""
    return GCN(in_channels, RECIPE["hidden"], RECIPE["layers"], num_classes, jk="cat", normalize=False)


def train(data: Data, num_classes: int, seed: int, epochs: int) -> nn.Module:
    """Full-batch training on a seeded random ``train_share`` of the nodes."""
    torch.manual_seed(seed)
    model = concat_gcn(data.num_node_features, num_classes)
    train_nodes = torch.randperm(data.num_nodes)[: int(RECIPE["train_share"] * data.num_nodes)]
    optimiser = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    model.train()
    for _ in range(epochs):
        optimiser.zero_grad()
        F.cross_entropy(model(data.x, data.edge_index)[train_nodes], data.y[train_nodes]).backward()
        optimiser.step()
    return model.eval()


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
    data = "BA-Shapes and Tree-Cycles (the board's graph/ba-shapes@1 and graph/tree-cycles@1 graphs)"
    model = "3-layer GCN (hidden 20), layer outputs concatenated (PyG GCN jk='cat'), trained per seed"
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
        "gnnexplainer": "on Tree-Cycles both explainers stay far below the paper although the model is accurate "
        "(.985 +- .015 over 5 seeds); not yet explained (explained nodes, edge direction and motif attachment are the candidates)",
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
        for dataset, (task_name, node_range) in DATASETS.items():
            task = TASKS.create(task_name)
            nodes = list(range(*node_range))[: QUICK_NODES if quick else None]
            for seed in seeds:
                model = train(task.data, task.num_classes, seed, QUICK_EPOCHS if quick else RECIPE["epochs"])
                record(measured, ("model accuracy", dataset), accuracy(model, task.data))
                torch.manual_seed(seed)
                yield dataset, task.data, nodes, model
                bar.update()


def record(measured: dict[tuple[str, str], Measured], key: tuple[str, str], value: float) -> None:
    measured.setdefault(key, Measured()).values.append(value)

"""``graph/ba-shapes``: which part of a house is this node? (Ying et al., GNNExplainer, NeurIPS 2019)

PyG's ``ExplainerDataset`` attaches 80 five-node "house" motifs to a 300-node Barabasi-Albert
graph; a node's label is its role (0: base graph, 1-2: bottom and middle of a house, 3: roof).
Every node has the same constant feature, so only structure can predict the label, and the
evidence for a motif node is its own house: those edges are the ground truth.

:class:`MotifNodeTask` is what every such "base graph + motifs, explain a motif node" task
shares (``graph/tree-cycles`` is another): the graph is generated under a fixed seed (PyG draws
from torch's and numpy's global generators, which are saved and restored around it), and a
checksum of its ``edge_index`` is stored with the committed weights and checked on load, so a
change in PyG's generator stops with a clear error instead of silently scoring explanations
against another graph.

The model is the 3-layer GCN of PyG's ``examples/explain/gnn_explainer_ba_shapes.py``; nodes
are split 80/20 into train and test, stratified by label, under a fixed seed. Evaluation
samples are the test nodes inside motifs (label > 0): 80 of them.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.datasets import ExplainerDataset
from torch_geometric.datasets.graph_generator import BAGraph, GraphGenerator
from torch_geometric.datasets.motif_generator import HouseMotif, MotifGenerator
from torch_geometric.nn import GCN

from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import Batch, TaskCard

from .graph import GraphInputs, GraphTask, edge_checksum, seeded, stratified_split, union_of_subgraphs
from .weights import load_weights, torch_threads, weights_meta

BASE_NODES = 300
NUM_MOTIFS = 80
MOTIF_SIZE = 5
DATA_SEED = 0
SPLIT_SEED = 0
TEST_SIZE = 0.2
SPLITS = ("train", "test")

def motif_index(nodes: Tensor, base_nodes: int, motif_size: int) -> Tensor:
    """The motif each node belongs to, ``-1`` for base-graph nodes.

    ``ExplainerDataset`` appends motifs after the base graph, ``motif_size`` nodes each.
    """
    return torch.where(nodes >= base_nodes, torch.div(nodes - base_nodes, motif_size, rounding_mode="floor"), -1)


def motif_of(nodes: Tensor) -> Tensor:
    """The house each BA-Shapes node belongs to, ``-1`` for base-graph nodes."""
    return motif_index(nodes, BASE_NODES, MOTIF_SIZE)


class MotifNodeTask(GraphTask):
    """Explain motif nodes of one generated graph: a base graph with ``num_motifs`` motifs attached.

    Subclasses name the generators, the sizes and the recipe of their 3-layer GCN; the ground
    truth of a motif node is the edges of its own motif.
    """

    has_ground_truth = True
    num_hops = 3
    base_nodes: ClassVar[int]
    motif_size: ClassVar[int]
    num_motifs: ClassVar[int]
    #: what the card says about the data and the motif
    dataset_text: ClassVar[str]
    motif_text: ClassVar[str]

    @abstractmethod
    def generators(self) -> tuple[GraphGenerator, MotifGenerator]:
        """The base-graph and motif generators handed to ``ExplainerDataset``."""

    @property
    def card(self) -> TaskCard:
        return TaskCard(
            dataset=self.dataset_text,
            model=f"{self.num_hops}-layer GCN (PyG GCN, {self.recipe['hidden_channels']} hidden channels"
            + (f", jumping knowledge {self.recipe['jk']})" if "jk" in self.recipe else ")"),
            feature_space=f"edges of the node's {self.num_hops}-layer computation subgraph",
            removal=self.removal_name,
            removal_baseline="the node's computation subgraph with every edge removed (edge weight 0 or deleted): "
            "the GCN sees only the node's own feature",
            ground_truth=f"edges of the node's own {self.motif_text} motif",
            licence="MIT (generated)",
            test_accuracy=weights_meta(self.weights_stem).get("test_accuracy"),
            splits=f"nodes split {1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} stratified by label (seed {SPLIT_SEED}); the GCN "
            "trained on the train nodes of the full graph; evaluated: test nodes inside motifs (label > 0)",
        )

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (self.data.num_edges,)

    # ---- data ---------------------------------------------------------------------------
    @cached_property
    def data(self) -> Data:
        """The generated graph (deterministic: fixed seed, global generators restored)."""
        graph, motif = self.generators()
        with seeded(DATA_SEED):
            dataset = ExplainerDataset(
                graph_generator=graph, motif_generator=motif, num_motifs=self.num_motifs, transform=T.Constant()
            )
        return dataset[0]

    @cached_property
    def split(self) -> dict[str, Tensor]:
        """Node ids of each split: 80/20, stratified by label, fixed seed."""
        return stratified_split(self.data.y, TEST_SIZE, SPLIT_SEED)

    def motif_of(self, nodes: Tensor) -> Tensor:
        return motif_index(nodes, self.base_nodes, self.motif_size)

    def motif_nodes(self, split: str) -> Tensor:
        """Nodes of ``split`` inside a motif (label > 0): the nodes that have ground truth."""
        if split not in SPLITS:
            raise ValueError(f"{self.name}: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        nodes = self.split[split]
        return nodes[self.data.y[nodes] > 0]

    def samples(self, split: str, n: int, seed: int) -> Batch:
        """``n`` motif nodes of ``split`` in a seeded random order.

        There are only so many test motif nodes; asking for more returns all of them (``n`` is
        capped), never duplicates, so per-sample statistics stay independent.
        """
        pool = self.motif_nodes(split)
        order = torch.randperm(pool.numel(), generator=torch.Generator().manual_seed(seed))
        nodes = pool[order[:n]]
        inputs = union_of_subgraphs(self.data.x, self.data.edge_index, nodes, self.num_hops)
        labels = self.data.y[nodes]
        return Batch(inputs, labels, labels, self.valid_features(inputs), self.ground_truth(inputs), nodes)

    def ground_truth(self, inputs: GraphInputs) -> Tensor:
        """Bool ``[B, E_max]``: the edges inside the explained node's own motif."""
        src, dst = self.motif_of(inputs.node_id[inputs.edge_index])
        own = self.motif_of(inputs.node_id[inputs.center])[inputs.edge_sample]
        return self.to_slots((src == own) & (dst == own) & (own >= 0), inputs)

    # ---- model --------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """PyG's GCN; a recipe's ``jk`` (jumping knowledge, e.g. ``"max"``: the output layer reads
        every layer's states) is optional."""
        r = self.recipe
        return GCN(self.data.num_node_features, r["hidden_channels"], r["num_layers"], self.num_classes, jk=r.get("jk"))

    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        self.require_checksum(weights_meta(self.weights_stem))
        return load_weights(self.build_model(), self.weights_stem).eval().to(device)

    def train_model(self, seed: int = 0, device: torch.device | str = "cpu") -> tuple[nn.Module, float]:
        """Full-graph Adam on the train nodes; accuracy over all test nodes (base graph included)."""
        r = self.recipe
        data = self.data.to(device)
        train, test = self.split["train"].to(device), self.split["test"].to(device)
        with torch_threads(r["threads"]):
            torch.manual_seed(seed)
            model = self.build_model().to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
            model.train()
            for _ in range(r["epochs"]):
                optimizer.zero_grad()
                F.cross_entropy(model(data.x, data.edge_index)[train], data.y[train]).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), r["clip_grad_norm"])
                optimizer.step()
            model.eval()
            with torch.no_grad():
                accuracy = (model(data.x, data.edge_index)[test].argmax(1) == data.y[test]).float().mean().item()
        return model, accuracy

    def weights_card(self) -> dict[str, Any]:
        """The graph's checksum, checked when the weights are loaded."""
        return {"checksum": edge_checksum(self.data.edge_index)}


@TASKS.register("graph/ba-shapes")
class BAShapesTask(MotifNodeTask):
    name = "graph/ba-shapes"
    version = "1"
    num_classes = 4
    class_names = ("base", "house-bottom", "house-middle", "house-roof")
    weights_stem = "graph_ba_shapes"
    recipe: dict[str, Any] = {
        "hidden_channels": 20,
        "num_layers": 3,
        "optimizer": "adam",
        "lr": 0.01,
        "weight_decay": 5e-4,
        "clip_grad_norm": 2.0,
        "epochs": 1000,
        "threads": 1,
    }
    base_nodes = BASE_NODES
    motif_size = MOTIF_SIZE
    num_motifs = NUM_MOTIFS
    dataset_text = f"PyG ExplainerDataset: BA graph ({BASE_NODES} nodes) + {NUM_MOTIFS} house motifs"
    motif_text = "house"

    def generators(self) -> tuple[GraphGenerator, MotifGenerator]:
        return BAGraph(num_nodes=BASE_NODES, num_edges=5), HouseMotif()

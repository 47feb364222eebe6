"""``graph/ba-shapes``: which part of a house is this node? (Ying et al., GNNExplainer, NeurIPS 2019)

PyG's ``ExplainerDataset`` attaches 80 five-node "house" motifs to a 300-node Barabasi-Albert
graph; a node's label is its role (0: base graph, 1-2: bottom and middle of a house, 3: roof).
Every node has the same constant feature, so only structure can predict the label, and the
evidence for a motif node is its own house: those edges are the ground truth.

The graph is generated under a fixed seed (PyG draws from torch's and numpy's global
generators, which are saved and restored around it). A checksum of its ``edge_index`` is
stored with the committed weights and checked on load, so a change in PyG's generator stops
with a clear error instead of silently scoring explanations against another graph.

The model is the 3-layer GCN of PyG's ``examples/explain/gnn_explainer_ba_shapes.py``; nodes
are split 80/20 into train and test, stratified by label, under a fixed seed. Evaluation
samples are the test nodes inside motifs (label > 0): 80 of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch_geometric
import torch_geometric.transforms as T
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.datasets import ExplainerDataset
from torch_geometric.datasets.graph_generator import BAGraph
from torch_geometric.nn import GCN

from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import Batch, TaskCard

from .graph import GraphInputs, GraphTask, union_of_subgraphs
from .weights import load_weights, weights_meta

BASE_NODES = 300
NUM_MOTIFS = 80
MOTIF_SIZE = 5
DATA_SEED = 0
SPLIT_SEED = 0
TEST_SIZE = 0.2
SPLITS = ("train", "test")


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's and numpy's global generators for a block, then restore both."""
    state = np.random.get_state()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def edge_checksum(edge_index: Tensor) -> str:
    return hashlib.sha256(edge_index.cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def motif_of(nodes: Tensor) -> Tensor:
    """The house each node belongs to, ``-1`` for base-graph nodes.

    ``ExplainerDataset`` appends motifs after the base graph, ``MOTIF_SIZE`` nodes each.
    """
    return torch.where(nodes >= BASE_NODES, torch.div(nodes - BASE_NODES, MOTIF_SIZE, rounding_mode="floor"), -1)


@TASKS.register("graph/ba-shapes")
class BAShapesTask(GraphTask):
    name = "graph/ba-shapes"
    version = "1"
    num_classes = 4
    class_names = ("base", "house-bottom", "house-middle", "house-roof")
    has_ground_truth = True
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
    num_hops = 3

    @property
    def card(self) -> TaskCard:
        return TaskCard(
            dataset=f"PyG ExplainerDataset: BA graph ({BASE_NODES} nodes) + {NUM_MOTIFS} house motifs",
            model="3-layer GCN (PyG GCN, 20 hidden channels)",
            feature_space="edges of the node's 3-layer computation subgraph",
            removal=self.removal_name,
            ground_truth="edges of the node's own house motif",
            licence="MIT (generated)",
            test_accuracy=weights_meta(self.weights_stem).get("test_accuracy"),
        )

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (self.data.num_edges,)

    # ---- data ---------------------------------------------------------------------------
    @cached_property
    def data(self) -> Data:
        """The generated graph (deterministic: fixed seed, global generators restored)."""
        with seeded(DATA_SEED):
            dataset = ExplainerDataset(
                graph_generator=BAGraph(num_nodes=BASE_NODES, num_edges=5),
                motif_generator="house",
                num_motifs=NUM_MOTIFS,
                transform=T.Constant(),
            )
        return dataset[0]

    def check_graph(self) -> None:
        """Raise if the graph differs from the one the committed weights were trained on."""
        expected = weights_meta(self.weights_stem).get("checksum")
        actual = edge_checksum(self.data.edge_index)
        if expected is not None and actual != expected:
            raise RuntimeError(
                f"tasks/weights/{self.weights_stem}.json: trained on a graph with edge checksum {expected}, "
                f"but {self.name} now generates {actual}; PyG's BA/house generator changed "
                f"(torch_geometric {torch_geometric.__version__}): retrain with `xaiboard train-model graph/ba-shapes`"
            )

    @cached_property
    def split(self) -> dict[str, Tensor]:
        """Node ids of each split: 80/20, stratified by label, fixed seed."""
        nodes = np.arange(self.data.num_nodes)
        labels = self.data.y.numpy()
        train, test = train_test_split(nodes, test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED)
        return {"train": torch.from_numpy(np.sort(train)), "test": torch.from_numpy(np.sort(test))}

    def motif_nodes(self, split: str) -> Tensor:
        """Nodes of ``split`` inside a motif (label > 0): the nodes that have ground truth."""
        if split not in SPLITS:
            raise ValueError(f"{self.name}: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        nodes = self.split[split]
        return nodes[self.data.y[nodes] > 0]

    def samples(self, split: str, n: int, seed: int) -> Batch:
        """``n`` motif nodes of ``split`` in a seeded random order.

        There are only 80 test motif nodes; asking for more returns all of them (``n`` is capped),
        never duplicates, so per-sample statistics stay independent.
        """
        pool = self.motif_nodes(split)
        order = torch.randperm(pool.numel(), generator=torch.Generator().manual_seed(seed))
        nodes = pool[order[:n]]
        inputs = union_of_subgraphs(self.data.x, self.data.edge_index, nodes, self.num_hops)
        labels = self.data.y[nodes]
        return Batch(inputs, labels, labels, self.valid_features(inputs), self.ground_truth(inputs), nodes)

    def ground_truth(self, inputs: GraphInputs) -> Tensor:
        """Bool ``[B, E_max]``: the edges inside the explained node's own house."""
        src, dst = inputs.node_id[inputs.edge_index]
        own = motif_of(inputs.node_id[inputs.center])[inputs.edge_sample]
        inside = (motif_of(src) == own) & (motif_of(dst) == own) & (own >= 0)
        return self.to_slots(inside, inputs)

    # ---- model --------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        r = self.recipe
        return GCN(self.data.num_node_features, r["hidden_channels"], r["num_layers"], self.num_classes)

    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        self.check_graph()
        return load_weights(self.build_model(), self.weights_stem).eval().to(device)

    def train_model(self, seed: int = 0, device: torch.device | str = "cpu") -> tuple[nn.Module, float]:
        """Full-graph Adam on the train nodes; accuracy over all test nodes (base graph included)."""
        r = self.recipe
        data = self.data.to(device)
        train, test = self.split["train"].to(device), self.split["test"].to(device)
        threads = torch.get_num_threads()
        torch.set_num_threads(r["threads"])
        try:
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
        finally:
            torch.set_num_threads(threads)
        return model, accuracy

    def weights_card(self) -> dict[str, Any]:
        """The graph's checksum, checked when the weights are loaded."""
        return {"checksum": edge_checksum(self.data.edge_index)}

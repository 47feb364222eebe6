"""``graph/ba-2motifs``: does this graph carry a house or a five-cycle? (Luo et al., PGExplainer, NeurIPS 2020)

Each graph is a 20-node Barabasi-Albert tree with one motif attached by a single edge: a
five-node "house" (class 0) or a five-node cycle (class 1), 500 graphs of each. Every node has
the same constant feature, so only the motif tells the classes apart, and its edges are the
ground truth (the edge connecting it to the tree is not). As in the original, a house graph has
one edge more than a cycle graph; the model could count edges instead of reading the motif,
but gradient saliency finds the motif (ground-truth AUROC 0.94 measured), so it does not.

This is BA-2Motifs rebuilt from PyG's generators (``ExplainerDataset`` with ``BAGraph`` and the
house / ``CycleMotif(5)`` motifs) rather than PyG's ``BA2MotifDataset``, which downloads the
original pickle; the construction is the original's. It is generated under a fixed seed and its
checksum is checked against the committed weights' card on load.

The model is an edge-weighted GIN (:mod:`.gin`) with a summed readout; graphs are split 80/20,
stratified by class, under a fixed seed, and the 200 test graphs are the evaluated samples.

That is version 1, kept as ``graph/ba-2motifs@1`` (archived). Version 2 (:class:`BA2MotifsV2Task`)
closes the edge-count shortcut: see its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch as PygBatch
from torch_geometric.data import Data
from torch_geometric.datasets import ExplainerDataset
from torch_geometric.datasets.graph_generator import BAGraph
from torch_geometric.datasets.motif_generator import CycleMotif, HouseMotif, MotifGenerator

from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import TaskCard

from .gin import WeightedGIN
from .motif_hubs import Hubs, MotifPool, bowtie_motif, hang_motifs, hub_features, k23_motif, target_edges
from .graph import GraphClassificationTask, seeded
from .weights import weights_meta

BASE_NODES = 20
GRAPHS_PER_CLASS = 500
DATA_SEED = 0
MOTIFS = (HouseMotif, lambda: CycleMotif(5))


def motif_graphs(make_motif, label: int) -> list[Data]:
    """``GRAPHS_PER_CLASS`` BA trees with one motif each, as graphs labelled ``label``."""
    generated = ExplainerDataset(
        graph_generator=BAGraph(num_nodes=BASE_NODES, num_edges=1),
        motif_generator=make_motif(),
        num_motifs=1,
        num_graphs=GRAPHS_PER_CLASS,
    )
    return [
        Data(x=torch.ones(g.num_nodes, 1), edge_index=g.edge_index, y=torch.tensor([label]), edge_mask=g.edge_mask.bool())
        for g in generated
    ]


@TASKS.register("graph/ba-2motifs@1")
class BA2MotifsTask(GraphClassificationTask):
    """Version 1, kept for the record: a house graph has one edge more than a cycle graph (an
    edge-count shortcut), so the default suite runs :class:`BA2MotifsV2Task` instead."""

    name = "graph/ba-2motifs@1"
    version = "1"
    tier = "archived"  # type: ignore[assignment]
    num_classes = 2
    class_names = ("house", "cycle")
    has_ground_truth = True
    weights_stem = "graph_ba_2motifs"
    recipe: dict[str, Any] = {
        "model": "weighted GIN, summed jumping-knowledge readout",
        "hidden_channels": 16,
        "num_layers": 3,
        "optimizer": "adam",
        "lr": 0.005,
        "weight_decay": 0.0,
        "batch_size": 32,
        "epochs": 30,
        "threads": 1,
    }
    num_hops = 3
    #: the motif generator of each class
    motifs: tuple[Callable[[], MotifGenerator], ...] = MOTIFS
    second_motif = "5-cycle"

    @property
    def card(self) -> TaskCard:
        return TaskCard(
            dataset=(
                f"BA-2Motifs rebuilt from PyG generators: {2 * GRAPHS_PER_CLASS} graphs, a {BASE_NODES}-node BA tree "
                f"+ one house (class 0) or {self.second_motif} (class 1), seed 0"
            ),
            model=f"{self.recipe['num_layers']}-layer edge-weighted GIN ({self.recipe['hidden_channels']} channels), summed readout",
            feature_space="every edge of the graph",
            removal=self.removal_name,
            removal_baseline="the graph with every edge removed: isolated nodes (edge weight 0 or edges deleted)",
            ground_truth=f"edges of the attached motif (house or {self.second_motif}; not the edge joining it to the tree)",
            licence="MIT (generated)",
            test_accuracy=weights_meta(self.weights_stem).get("test_accuracy"),
            splits="graphs split 80/20 stratified by class (seed 0); the model trained on the 800 train graphs; "
            "the 200 test graphs are evaluated",
        )

    def load_dataset(self) -> PygBatch:
        """The generated graphs (deterministic: fixed seed, global generators restored)."""
        with seeded(DATA_SEED):
            graphs = [g for label, make in enumerate(self.motifs) for g in motif_graphs(make, label)]
        return PygBatch.from_data_list(graphs)

    def build_model(self) -> nn.Module:
        r = self.recipe
        return WeightedGIN(1, r["hidden_channels"], r["num_layers"], self.num_classes)


@TASKS.register("graph/ba-2motifs@2")
class BA2MotifsV2Task(BA2MotifsTask):
    """Version 2, kept for the record: the BA tree's edges are all bridges and the motif its only
    cycles, so a model-free prior (edges on a cycle) finds the ground truth (1.00), and the
    default suite runs :class:`BA2MotifsV3Task` instead.

    BA-2Motifs with the edge-count shortcut closed: the second class's motif is a bowtie, which
    has the house's node and edge counts (5 and 6), and both classes are drawn under the same seed,
    so graph ``i`` of either class has the same BA tree and joining edge: edge counts are equal
    graph by graph, and so is the sum of node degrees. (A five-cycle with one chord, the obvious
    candidate, is the house again; K(2,3) also has the house's degrees, but a GIN did not learn
    it apart from the house: 0.69 test accuracy.) No linear count of nodes, edges or degrees
    tells the classes apart, so the GIN must learn how the motif's edges are arranged; with the
    version 1 recipe it stays at chance, and a deeper, wider GIN trained longer (4 layers, 64
    channels, 200 epochs) reaches 99%.

    Trained so (Adam at 0.003), removing the motif dropped the target probability by 0.36 against
    0.01 for as many other edges (n = 64), but gradients barely found the motif: ground-truth
    AUROC 0.77 for saliency and 0.50 (chance) for integrated gradients. Its test accuracy also
    swung between 1.0 and 0.5 from epoch to epoch, so the last epoch decided the model. The
    recipe now trains with DropEdge on the edges outside the motif (20%, redrawn each step: the
    tree and joining edges carry no evidence, and the model learns so), gradient clipping and a
    rate of 0.001 annealed to 0 (cosine): 100% test accuracy, motif removal 0.64 against 0.00,
    saliency 0.96 and integrated gradients 0.98 (n = 64; training seeds 1 and 2: 0.96 / 0.98
    and 0.93 / 0.98). Without DropEdge (100 epochs) saliency was 0.95 and integrated gradients
    0.93, but other edges' removal dropped the probability by 0.12."""

    name = "graph/ba-2motifs@2"
    version = "2"
    class_names = ("house", "bowtie")
    weights_stem = "graph_ba_2motifs_v2"
    motifs = (HouseMotif, bowtie_motif)
    second_motif = "bowtie"
    num_hops = 4
    recipe: dict[str, Any] = {
        "model": "weighted GIN, summed jumping-knowledge readout",
        "hidden_channels": 64,
        "num_layers": 4,
        "optimizer": "adam",
        "lr": 0.001,
        "lr_schedule": "cosine",
        "clip_grad_norm": 2.0,
        "edge_dropout": 0.2,
        "weight_decay": 0.0,
        "batch_size": 32,
        "epochs": 200,
        "threads": 1,
    }

    def load_dataset(self) -> PygBatch:
        """Each class drawn under the same seed: both motifs have 5 nodes and draw the same random
        numbers, so graph ``i`` of either class has the same BA tree and joining edge, and the
        two classes' edge counts are equal graph by graph."""
        graphs = []
        for label, make in enumerate(self.motifs):
            with seeded(DATA_SEED):
                graphs += motif_graphs(make, label)
        return PygBatch.from_data_list(graphs)


@TASKS.register("graph/ba-2motifs")
class BA2MotifsV3Task(BA2MotifsV2Task):
    """BA-2Motifs without a model-free shortcut: is one of the three motifs on this graph's hub a house?

    Each graph is one hub of the :mod:`.motif_hubs` layout: a hub carrying three motifs, each hung
    by one edge, drawn from bowties and K(2,3)s; in class 0 one of them, at a random slot, is a
    house. All three motifs have 5 nodes and 6 edges and degree sum 12, so every graph has 16
    nodes and 21 edges, and the classes differ in no count: only the arrangement of a motif's
    edges (the house's two degree-3 nodes are adjacent, K(2,3)'s are not; the bowtie has a
    degree-4 node) tells them apart. Triangles: 3 of the house's 6 edges, 6 of a bowtie's, none of
    K(2,3)'s, so the house is average there too. The ground truth of a class-0 graph is the
    house's edges and its joining edge; class-1 graphs have none and are not evaluated.

    Measured on the data alone (64 test graphs, pilot): input magnitude 0.51, degree 0.55, cycle
    0.50, triangle 0.51 (version 2: cycle 1.00, triangle 0.84). Node features: ``[1, is_hub]``.
    The BA tree of versions 1 and 2 is gone, since its bridges were what the cycle prior found.
    With a 20-node tree of random motifs instead of a hub (motifs joined to each other, no role
    feature), the same GIN reached 70-96% test accuracy and gradients scored 0.63-0.77
    ground-truth AUROC: the joining edges met the house at random nodes and changed its degrees.
    Version 2's K(2,3) failure (0.69 accuracy) does not recur here (100%).

    The recipe is version 2's at rate 0.002 for 300 epochs. Its DropEdge rate matters for the
    faithfulness check: at 0.1 one model (100% test accuracy) kept its house prediction when the
    house was removed only if the distractors were whole (removing as many distractor edges
    dropped the target probability by 0.80, the house by 0.95: check failed); at 0.2 and 0.3,
    1.00 against 0.00. So does the rate, for training and for the gradients (n = 64; every run
    100% test accuracy and a passing check unless said): at 0.003, seed 0 saliency / integrated
    gradients 0.88 / 0.96, but seed 1 stayed at chance (50% accuracy); at 0.001, seed 1 0.58 /
    0.65; at 0.002, seeds 0, 1, 2: 0.83 / 0.98, 0.78 / 0.94, 0.89 / 0.76, each with one of the
    two above 0.85, so that is the committed rate (seed 0).
    """

    name = "graph/ba-2motifs"
    version = "3"
    tier = "built-in"
    gt_classes = (0,)
    class_names = ("a house", "bowties and K(2,3)s only")
    weights_stem = "graph_ba_2motifs_v3"
    recipe: dict[str, Any] = {**BA2MotifsV2Task.recipe, "lr": 0.002, "epochs": 300}
    #: graphs of each class
    per_class = 2000
    #: motifs on each graph's hub
    slots = 3

    @property
    def card(self) -> TaskCard:
        return replace(
            super().card,
            dataset=f"{2 * self.per_class} graphs, each a hub carrying {self.slots} motifs hung by one edge (bowties and "
            "K(2,3)s, drawn uniformly); in class 0 one of them is a house, seed 0; node features: 1, and 1 on the hub",
            ground_truth="edges of the house and the edge joining it to the hub (class 0 only)",
            splits=f"graphs split 80/20 stratified by class (seed 0); the model trained on the {int(1.6 * self.per_class)} "
            f"train graphs; the {int(0.2 * self.per_class)} class-0 test graphs are evaluated",
        )

    def load_dataset(self) -> PygBatch:
        """Class 0 (a house) first, then class 1, graph by graph under one seed."""
        distractor = MotifPool([bowtie_motif(), k23_motif()])
        with seeded(DATA_SEED):
            graphs = [self._graph(label, distractor) for label in (0, 1) for _ in range(self.per_class)]
        return PygBatch.from_data_list(graphs)

    def _graph(self, label: int, distractor: MotifGenerator) -> Data:
        hung = hang_motifs(Hubs(1)(), torch.tensor([label == 0]), self.slots, HouseMotif(), distractor)
        truth = target_edges(hung, torch.zeros(hung.num_edges, dtype=torch.long), hung.edge_index)
        return Data(x=hub_features(hung.motif), edge_index=hung.edge_index, y=torch.tensor([label]), edge_mask=truth)

    def build_model(self) -> nn.Module:
        r = self.recipe
        return WeightedGIN(2, r["hidden_channels"], r["num_layers"], self.num_classes)

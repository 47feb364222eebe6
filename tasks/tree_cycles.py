"""``graph/tree-cycles``: is this node on a cycle? (Ying et al., GNNExplainer, NeurIPS 2019)

PyG's ``ExplainerDataset`` attaches 80 six-node cycles to a binary tree of depth 8 (511 nodes),
each by one edge to a random tree node; a node's label is 1 on a cycle, 0 in the tree. Every
node has the same constant feature, so only structure can predict the label, and the evidence
for a cycle node is its own cycle: those 12 directed edges are the ground truth.

Generation, checksum, split (80/20, stratified), sampling (test cycle nodes) and the 3-layer
GCN recipe are :class:`~.ba_shapes.MotifNodeTask`'s, as for ``graph/ba-shapes``. The GCN's
output layer reads every layer's states (jumping knowledge; GNNExplainer's own model concatenates
them): without it the same GCN stalls at 46% test accuracy (all "tree"). Of the two read-outs
measured, concatenation reached 94% but its edge saliency barely found the cycles (ground-truth
AUROC 0.62); a channel-wise max reaches 95.5% with AUROC 0.72, so the recipe uses max.
"""

from __future__ import annotations

from typing import Any

from torch_geometric.datasets.graph_generator import GraphGenerator, TreeGraph
from torch_geometric.datasets.motif_generator import CycleMotif, MotifGenerator

from xaiboard.benchmark.registry import TASKS

from .ba_shapes import MotifNodeTask

TREE_DEPTH = 8
CYCLE_SIZE = 6
NUM_CYCLES = 80


@TASKS.register("graph/tree-cycles")
class TreeCyclesTask(MotifNodeTask):
    name = "graph/tree-cycles"
    version = "1"
    num_classes = 2
    class_names = ("tree", "cycle")
    weights_stem = "graph_tree_cycles"
    recipe: dict[str, Any] = {
        "hidden_channels": 32,
        "num_layers": 3,
        "jk": "max",
        "optimizer": "adam",
        "lr": 0.01,
        "weight_decay": 0.0,
        "clip_grad_norm": 2.0,
        "epochs": 1000,
        "threads": 1,
    }
    base_nodes = 2 ** (TREE_DEPTH + 1) - 1
    motif_size = CYCLE_SIZE
    num_motifs = NUM_CYCLES
    dataset_text = f"PyG ExplainerDataset: binary tree (depth {TREE_DEPTH}, 511 nodes) + {NUM_CYCLES} six-node cycles"
    motif_text = "six-node cycle"

    def generators(self) -> tuple[GraphGenerator, MotifGenerator]:
        return TreeGraph(depth=TREE_DEPTH, undirected=True), CycleMotif(CYCLE_SIZE)

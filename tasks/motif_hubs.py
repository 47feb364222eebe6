"""Hubs carrying motifs: the version-3 layout of the synthetic graph tasks, built so that no
model-free prior finds the ground truth.

Each hub carries ``slots`` motifs, each hung by one edge from a random motif node. On a
positive hub one slot, drawn at random, holds the target motif (the ground truth: its edges and
the edge joining it); every other slot holds a distractor drawn uniformly from a pool. Every hub
carries the same number of motifs, so a hub's degree says nothing, and there is no base graph.

Why no base graph: in versions 1 and 2 the motifs hung on a tree (a BA tree or a binary tree),
whose edges are all bridges, so "edges on a cycle" found the motifs (``cycle`` prior 0.87-1.00,
``benchmark/priors.py``). With a base graph that has cycles, the next structural statistic
(triangles, then degree) took over. Here the edges a model reads are only motif edges and
joining edges, and the distractor pools are chosen so that the target is average on every
prior: each pool mixes motifs with more and fewer triangles, higher and lower degrees, cycles
and paths than the target (measured on each task's card and test). What tells the target apart
is how its edges are arranged, which is what a message-passing model reads and a prior does not.

The layout is shared by the node tasks (``graph/ba-shapes``, ``graph/tree-cycles``: all hubs
in one graph, a hub is explained) and the graph task (``graph/ba-2motifs``: one hub per graph).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.datasets.graph_generator import GraphGenerator
from torch_geometric.datasets.motif_generator import CustomMotif, MotifGenerator
from torch_geometric.utils import to_undirected


class Hubs(GraphGenerator):
    """The base graph of the layout: ``num_nodes`` hubs and no edge between them."""

    def __init__(self, num_nodes: int) -> None:
        self.num_nodes = num_nodes

    def __call__(self) -> Data:
        return Data(num_nodes=self.num_nodes, edge_index=torch.empty(2, 0, dtype=torch.long))


class MotifPool(MotifGenerator):
    """Each call, one of ``motifs`` drawn uniformly from torch's global generator."""

    def __init__(self, motifs: Sequence[MotifGenerator]) -> None:
        self.motifs = tuple(motifs)

    def __call__(self) -> Data:
        return self.motifs[int(torch.randint(len(self.motifs), (1,)))]()


def edge_motif(num_nodes: int, edges: Sequence[tuple[int, int]]) -> MotifGenerator:
    """A fixed motif from its undirected edge list."""
    return CustomMotif(Data(num_nodes=num_nodes, edge_index=to_undirected(torch.tensor(edges).t())))


def bowtie_motif() -> MotifGenerator:
    """Two triangles sharing a node ("bowtie"): like the house, 5 nodes and 6 edges."""
    return edge_motif(5, [(0, 1), (0, 2), (1, 2), (0, 3), (0, 4), (3, 4)])


def ladder_motif() -> MotifGenerator:
    """A six-cycle with the chord between opposite nodes (two squares sharing an edge): six
    nodes like the six-cycle, two of degree 3, no triangle."""
    return edge_motif(6, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)])


def k23_motif() -> MotifGenerator:
    """K(2,3): the house's node, edge and degree counts (5, 6; degrees 3, 3, 2, 2, 2) but its two
    degree-3 nodes not adjacent, so no triangle."""
    return edge_motif(5, [(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4)])


def hang_motifs(base: Data, positive: Tensor, slots: int, target: MotifGenerator, distractor: MotifGenerator) -> Data:
    """``base`` with ``slots`` motifs hung on each node (``positive``: bool ``[base.num_nodes]``).

    On a positive node one slot, drawn at random, holds ``target``; every other slot a
    ``distractor()``. Draws from torch's global generator (the caller seeds it), slot by slot, and
    (as PyG's ``ExplainerDataset`` does) the motif node each joining edge meets. Motif nodes
    follow the base nodes, motif by motif. Returns ``edge_index`` (undirected), ``motif`` (each
    node's motif index, ``-1`` on base nodes) and ``target`` (on a positive base node the index
    of its target motif, ``-1`` elsewhere).
    """
    hubs = base.num_nodes
    place = torch.randint(slots, (hubs,)).where(positive, -1)
    edges, motif, nodes = [base.edge_index], [torch.full((hubs,), -1)], hubs
    for index in range(hubs * slots):
        hub, slot = divmod(index, slots)
        made = target() if slot == place[hub] else distractor()
        joint = nodes + int(torch.randint(made.num_nodes, (1,)))
        edges += [made.edge_index + nodes, torch.tensor([[hub, joint], [joint, hub]])]
        motif.append(torch.full((made.num_nodes,), index))
        nodes += made.num_nodes
    targets = torch.full((nodes,), -1)
    targets[:hubs] = (torch.arange(hubs) * slots + place).where(positive, -1)
    return Data(edge_index=torch.cat(edges, dim=1), motif=torch.cat(motif), target=targets, num_nodes=nodes)


def hub_features(motif: Tensor) -> Tensor:
    """Node features ``[1, is_hub]``: where the motifs begin, not which motif is which (the label
    stays in the edges: removing the target leaves a hub like the negatives)."""
    return torch.stack([torch.ones(motif.numel()), (motif < 0).float()], dim=1)


def target_edges(data: Data, center: Tensor, ends: Tensor) -> Tensor:
    """Bool per edge: both ``ends`` (``[2, E]`` node ids of ``data``) are in the target motif of
    the edge's hub ``center`` (``[E]``) or are that hub: the target's edges and its joining edge."""
    own = data.target[center]
    inside = [(data.motif[end] == own) | (end == center) for end in ends]
    return inside[0] & inside[1] & (own >= 0)

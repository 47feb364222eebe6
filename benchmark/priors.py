"""Model-free priors: feature scores a reader could write down without ever running the model.

A ground-truth task only tests explanations if the truth cannot be found this way (see
``task_check.py``). Each prior returns float scores shaped like ``Task.valid_features(inputs)``,
oriented so that *higher* means "more likely ground truth" under the prior's own hypothesis:

- images ``[B, C, H, W]``: ``centre`` (minus the Euclidean distance of a pixel to the image
  centre: objects are usually photographed or drawn in the middle), ``brightness`` (the
  pixel value averaged over channels, signed, unlike the ``input_magnitude`` control's absolute
  sum) and ``contrast`` (a pixel's distance from the image's median colour: the background,
  where it covers most of the image, so this finds every object, lighter or darker);
- text (``TextInputs``): ``position`` (minus the token index: early tokens first) and
  ``rarity`` (``-log`` add-one-smoothed relative frequency of the token among the valid tokens
  of the task's own training samples, so a plugin task needs no ``token_counts``);
- graphs (``GraphInputs``, edges as features): ``distance`` (minus the summed hop distances of
  an edge's two endpoints from the explained node; node-level tasks only, since a graph-level
  sample has no explained node), ``degree`` (the summed degrees of an edge's endpoints within
  the sample's graph), ``cycle`` (1 for an edge on a cycle of the sample's graph, 0 for a
  bridge: motifs planted in a tree are its only cycles, so this prior finds them) and
  ``triangle`` (1 for an edge whose endpoints share a neighbour: houses and bowties carry
  triangles that rings and trees lack).

Every prior is batched: the graph hop distances are one breadth-first sweep over the whole
disjoint union per hop, and the bridges and shared neighbours one networkx pass over the union,
not a loop over samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import networkx
import torch
from torch import Tensor

from .task import Task

#: a prior's scores for a batch of the task's inputs, ``[B, *F]``
Prior = Callable[[Task, Any], Tensor]
#: samples of the training split whose token frequencies define text rarity
RARITY_TRAIN_SAMPLES = 1024


def centre(task: Task, inputs: Tensor) -> Tensor:
    """Minus each pixel's distance to the image centre ``((H-1)/2, (W-1)/2)``, in pixels."""
    height, width = inputs.shape[-2:]
    rows = torch.arange(height, device=inputs.device, dtype=torch.float32) - (height - 1) / 2
    cols = torch.arange(width, device=inputs.device, dtype=torch.float32) - (width - 1) / 2
    distance = (rows.view(-1, 1) ** 2 + cols.view(1, -1) ** 2).sqrt()
    return (-distance).expand(inputs.shape[0], height, width)


def brightness(task: Task, inputs: Tensor) -> Tensor:
    """The pixel value averaged over channels (bright pixels first)."""
    return inputs.float().mean(dim=1)


def contrast(task: Task, inputs: Tensor) -> Tensor:
    """``sum_c |x_c - median_c|``: each pixel's L1 distance from the per-channel median over the image."""
    pixels = inputs.float()
    background = pixels.flatten(2).median(dim=2).values[..., None, None]
    return (pixels - background).abs().sum(dim=1)


def position(task: Task, inputs: Any) -> Tensor:
    """Minus the token index (the first token scores highest), zero on invalid slots."""
    valid = task.valid_features(inputs)
    index = torch.arange(valid.shape[1], device=valid.device, dtype=torch.float32)
    return (-index).expand(valid.shape).where(valid, 0.0)


def rarity(task: Task, inputs: Any) -> Tensor:
    """``-log`` relative frequency of each token among the valid tokens of ``RARITY_TRAIN_SAMPLES``
    training samples (add-one smoothed over the ids seen in training or here)."""
    train = task.samples("train", RARITY_TRAIN_SAMPLES, 0)
    seen = train.inputs.input_ids[train.valid].to(inputs.input_ids.device)
    size = int(torch.cat([seen, inputs.input_ids.flatten()]).max()) + 1
    counts = torch.bincount(seen, minlength=size).double() + 1.0
    scores = -(counts / counts.sum()).log()
    return scores[inputs.input_ids].float().where(task.valid_features(inputs), 0.0)


def distance(task: Task, inputs: Any) -> Tensor:
    """Minus ``hops(u) + hops(v)`` for an edge ``u - v``, hops from the sample's explained node
    over the sample's edges taken as undirected (unreachable nodes count as the node count)."""
    hops = _hops(inputs)
    src, dst = inputs.edge_index
    return task.to_slots(-(hops[src] + hops[dst]).float(), inputs)


def degree(task: Task, inputs: Any) -> Tensor:
    """``deg(u) + deg(v)`` for an edge ``u - v``, degrees counted over the sample's edges (in-edges:
    PyG stores an undirected graph as both directions, so this is the undirected degree)."""
    src, dst = inputs.edge_index
    counts = torch.bincount(dst, minlength=inputs.x.shape[0]).float()
    return task.to_slots(counts[src] + counts[dst], inputs)


def cycle(task: Task, inputs: Any) -> Tensor:
    """1 for an edge ``u - v`` that lies on a cycle of the sample's graph (removing it leaves ``u``
    and ``v`` connected), 0 for a bridge or a self-loop.

    Why it is a prior: the synthetic graph tasks plant motifs (houses, cycles, grids) in trees,
    where every base edge is a bridge, so "edges on a cycle" is exactly "motif edges" without the
    model. The graph is the whole disjoint union of the batch, so its bridges are each sample's.
    """
    src, dst = inputs.edge_index.cpu().tolist()
    bridges = {frozenset(edge) for edge in networkx.bridges(networkx.Graph(zip(src, dst)))}
    on_cycle = [u != v and frozenset((u, v)) not in bridges for u, v in zip(src, dst)]
    return task.to_slots(torch.tensor(on_cycle, dtype=torch.float32, device=inputs.x.device), inputs)


def triangle(task: Task, inputs: Any) -> Tensor:
    """1 for an edge ``u - v`` whose endpoints share a neighbour (the edge lies on a triangle of the
    sample's graph), 0 otherwise and for a self-loop.

    Why it is a prior: once a base graph has cycles, the cycle prior stops finding the motifs, but
    houses, bowties and wheels still bring triangles that a ring or a tree lacks. A BA-2Motifs
    pilot on a ring with chords brought the cycle and degree priors to 0.52 and this one to 0.79.
    """
    src, dst = inputs.edge_index.cpu().tolist()
    graph = networkx.Graph((u, v) for u, v in zip(src, dst) if u != v)
    shared = [u != v and not graph.adj[u].keys().isdisjoint(graph.adj[v].keys()) for u, v in zip(src, dst)]
    return task.to_slots(torch.tensor(shared, dtype=torch.float32, device=inputs.x.device), inputs)


def _hops(inputs: Any) -> Tensor:
    """Hop distance of every node of the union from its sample's ``center`` (breadth-first,
    one vectorised relaxation per hop until nothing changes)."""
    nodes = inputs.x.shape[0]
    src, dst = inputs.edge_index
    both_src, both_dst = torch.cat([src, dst]), torch.cat([dst, src])
    hops = torch.full((nodes,), nodes, dtype=torch.long, device=inputs.x.device)
    hops[inputs.center] = 0
    while True:
        relaxed = hops.scatter_reduce(0, both_dst, hops[both_src] + 1, reduce="amin")
        if torch.equal(relaxed, hops):
            return hops
        hops = relaxed


def priors(task: Task, inputs: Any) -> dict[str, Prior | str]:
    """The task's model-free priors beyond its ``input_magnitude`` control, by name; a prior that
    does not apply to these inputs maps to the reason instead."""
    if task.modality == "image":
        return {"centre": centre, "brightness": brightness, "contrast": contrast}
    if task.modality == "text":
        return {"position": position, "rarity": rarity}
    call = task.graph_call(None, inputs)  # only reads the inputs' structure; the model is not called
    if call is not None and call.task_level == "graph":
        why = "graph-level task: a sample has no explained node to measure distance from"
        return {"distance": why, "degree": degree, "cycle": cycle, "triangle": triangle}
    return {"distance": distance, "degree": degree, "cycle": cycle, "triangle": triangle}

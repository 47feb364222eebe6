"""GOAt (Lu et al., "GOAt: Explaining Graph Neural Networks via Graph Output Attribution", ICLR 2024).

At the input's own ReLU activation pattern a ReLU GNN is multilinear in its adjacency entries:
its output is a sum of scalar products, each the product of one adjacency entry per layer it
passes through (a walk), a node feature or a bias, weights and activation indicators. If any
edge of a product is removed the product vanishes, so its edges are symmetric players and each
of the ``N`` distinct edges in it gets ``1/N`` of its value (the product's Shapley split); an
edge's score is the sum of its shares over every product. What we implement, exactly:

- Players are the graph's directed edges (our feature space). Adjacency entries that are not
  edges -- GCN's self-loops, GIN's ``(1 + eps) h_v`` term (eps = 0) -- are constant factors like
  weights, and node features are fixed context. A product with no edge (a node's own feature or
  bias through self-loops only, and the readout's bias) is a *non-edge term*; it is reported
  by :func:`goat_decomposition` so that ``sum of edge scores + non-edge terms = output`` exactly
  (completeness, tested). GCN's normalised entries ``w / sqrt(d_u d_v)`` are taken at their
  values, as in the paper (degrees are not expanded into edges).
- Biases: a bias added at layer ``l`` and carried through later layers' edges forms products
  with those edges, which get it like any product; biases carried through no edge are non-edge.
- Target: the raw logit of the explained class (node level: the explained node's row; graph
  level: the graph's row). Scores are signed.

Exact, not sampled, and without enumerating walks: products are grouped by the number of
distinct edges in them. A forward pass carries, per node and per count ``k`` of edges so far,
the summed partial products (``[N, L + 1, H]``); a backward pass carries the readout's
covectors per count ``j`` of edges to come. A layer-``l`` edge ``u -> v`` then receives
``sum_{k, j} A_uv <B_l[v, j], T_v(F_{l-1}[u, k])> / (k + j + 1)``: cost ``O(L^2 (N + E) H)``.
Two edges of one walk can only coincide when they are not adjacent in it (adjacent equal edges
are self-loops). For ``L <= 3`` that is one pattern, ``u -> v -> u -> v``, which the counts give
``1/3`` per position where ``1/2`` per distinct edge is due; for ``L = 4`` there are six more
(:class:`_Walks` lists them, among them a walk round a triangle), and each is evaluated exactly
and its shares corrected. Models with more than 4 message-passing layers would need more such
patterns and are refused.

Models: PyG's ``GCN`` (``GCNConv`` with its normalisation and self-loops; jumping knowledge
none, ``last``, ``cat`` or ``max``, where ``max`` is linear at the pattern too: each channel
reads the layer that wins it) at node level, and xaiboard's ``WeightedGIN`` (two-layer MLPs,
summed jumping-knowledge readout) at graph level. The linearised forward is checked against
the model's own output on every call, so a model that differs (dropout in training mode, a
normalisation layer) is refused rather than explained wrongly. Batched over the disjoint union
of the batch's graphs: no cross-sample edges, so one pass serves every sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCN
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from xaiboard.benchmark.precision import float32_passes
from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GraphCall, Task
from xaiboard.benchmark.record import NotApplicable
from xaiboard.tasks.ba_shapes import WeightedGINNodes
from xaiboard.tasks.gin import WeightedGIN

from .base import Explainer
from .graph_common import edges_to_slots, node_samples, require_call

#: tolerance of the check that the linearised forward reproduces the model's logits: float32
#: round-off of sums over a few thousand terms is ~1e-5 relative; a wrong linearisation is O(1)
CHECK_TOL = 1e-3
MAX_LAYERS = 4


@dataclass
class Step:
    """One affine map of a layer's node-wise transform, ``a @ weight + bias``, then a ReLU if
    ``activated``; :meth:`Layer.run` records the ReLU's pattern in ``mask`` (``[N, out]``)."""

    weight: Tensor
    bias: Tensor | None
    activated: bool
    mask: Tensor | None = None


@dataclass
class Layer:
    """One message-passing layer at a fixed activation pattern.

    Aggregation ``agg[dst] += coef * h[src]`` over the union's edges followed by self-loops
    (``real`` is False on those), then the steps.
    """

    src: Tensor
    dst: Tensor
    coef: Tensor
    real: Tensor
    steps: list[Step]

    def apply(self, a: Tensor, nodes: Tensor) -> Tensor:
        """The linear part of the steps on rows ``a`` ``[M, S, in]`` that sit at ``nodes`` ``[M]``."""
        for step in self.steps:
            a = a @ step.weight
            if step.activated:
                a = a * step.mask[nodes].unsqueeze(1)
        return a

    def transpose(self, g: Tensor, nodes: Tensor) -> Tensor:
        """The adjoint of :meth:`apply`: covectors ``[M, S, out]`` to ``[M, S, in]``."""
        for step in reversed(self.steps):
            if step.activated:
                g = g * step.mask[nodes].unsqueeze(1)
            g = g @ step.weight.T
        return g

    def offset(self, n: int) -> Tensor:
        """The bias part of the steps at every node, ``[N, out]``."""
        a = self.steps[0].weight.new_zeros(n, self.steps[0].weight.shape[0])
        for step in self.steps:
            a = a @ step.weight + (0 if step.bias is None else step.bias)
            if step.activated:
                a = a * step.mask
        return a

    def aggregate(self, h: Tensor, n: int) -> Tensor:
        """``agg[v] = sum_e coef_e h[src_e]`` with edge-count states shifted by one on real edges."""
        return self.dst_sum(shift(h[self.src] * self.coef.view(-1, 1, 1), self.real), n)

    def dst_sum(self, messages: Tensor, n: int) -> Tensor:
        return messages.new_zeros(n, *messages.shape[1:]).index_add_(0, self.dst, messages)

    def run(self, h: Tensor) -> Tensor:
        """The plain forward ``[N, in] -> [N, out]``; records each activated step's ReLU pattern."""
        a = self.dst_sum(h[self.src] * self.coef.unsqueeze(1), h.shape[0])
        for step in self.steps:
            a = a @ step.weight + (0 if step.bias is None else step.bias)
            if step.activated:
                step.mask = (a > 0).to(a.dtype)
                a = a.relu()
        return a


def shift(states: Tensor, real: Tensor) -> Tensor:
    """Move rows of real edges one edge-count up (``[E, S, H]``); self-loops keep their count."""
    up = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
    return torch.where(real.view(-1, 1, 1), up, states)


@dataclass
class Linearised:
    """A model at its activation pattern: layers, per-layer readout covectors ``R_l`` (``[N, H_l]``:
    the explained output is ``sum_l sum_v <R_l[v], h_l[v]> + constant``) and the constant per sample."""

    layers: list[Layer]
    readouts: list[Tensor]
    constant: Tensor
    num_edges: int


def _edge_lists(call: GraphCall, coef: Tensor, loop_coef: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The union's edges then one self-loop per node: ``src, dst, coef, real``."""
    n, e = call.x.shape[0], call.edge_index.shape[1]
    loops = torch.arange(n, device=call.x.device)
    src = torch.cat([call.edge_index[0], loops])
    dst = torch.cat([call.edge_index[1], loops])
    real = torch.arange(e + n, device=call.x.device) < e
    return src, dst, torch.cat([coef, loop_coef]), real


def _gcn_coefficients(conv: nn.Module, call: GraphCall) -> Tensor:
    """GCNConv's normalised adjacency entries in :func:`_edge_lists` order (edges, then loops)."""
    n, e = call.x.shape[0], call.edge_index.shape[1]
    if not (conv.normalize and conv.add_self_loops and conv.flow == "source_to_target"):
        raise NotApplicable("goat: only GCNConv with normalisation, self-loops and source-to-target flow is supported")
    index, coef = gcn_norm(call.edge_index, None, n, conv.improved, True, conv.flow, call.x.dtype)
    if index.shape[1] != e + n or not torch.equal(index[:, :e], call.edge_index):
        raise NotApplicable("goat: the graph must have no self-loops (GCN adds its own)")
    return coef


def _linearise_gcn(model: GCN, call: GraphCall, targets: Tensor) -> Linearised:
    if call.task_level != "node" or not all(isinstance(norm, nn.Identity) for norm in model.norms):
        raise NotApplicable("goat: PyG GCN is supported at node level without normalisation layers")
    if not isinstance(model.act, nn.ReLU) or model.training:
        raise NotApplicable("goat: needs a ReLU GCN in eval mode")
    h, hs, layers = call.x, [], []
    for i, conv in enumerate(model.convs):
        activated = i < model.num_layers - 1 or model.jk_mode is not None
        src, dst, coef, real = _edge_lists(call, *_gcn_coefficients(conv, call).split([call.edge_index.shape[1], call.x.shape[0]]))
        layer = Layer(src, dst, coef, real, [Step(conv.lin.weight.T, conv.bias, activated)])
        h = layer.run(h)
        layers.append(layer)
        hs.append(h)
    readouts, constant = _gcn_readout(model, hs, call.index, targets)
    return Linearised(layers, readouts, constant, call.edge_index.shape[1])


def _gcn_readout(model: GCN, hs: list[Tensor], index: Tensor, targets: Tensor) -> tuple[list[Tensor], Tensor]:
    """Covectors on each layer's states at the explained nodes, by jumping-knowledge mode."""
    readouts = [torch.zeros_like(h) for h in hs]
    mode = model.jk_mode
    if mode is None:
        readouts[-1][index, targets] = 1.0
        return readouts, hs[-1].new_zeros(index.numel())
    weight, bias = model.lin.weight[targets], model.lin.bias
    constant = bias[targets] if bias is not None else weight.new_zeros(index.numel())
    if mode == "last":
        readouts[-1][index] = weight
    elif mode == "cat":
        for readout, block in zip(readouts, weight.split(hs[0].shape[1], dim=1)):
            readout[index] = block
    elif mode == "max":
        winner = torch.stack([h[index] for h in hs], dim=-1).argmax(dim=-1)
        for layer, readout in enumerate(readouts):
            readout[index] = weight * (winner == layer)
    else:
        raise NotApplicable(f"goat: jumping knowledge {mode!r} is not supported")
    return readouts, constant


def _gin_layers(model: WeightedGIN | WeightedGINNodes, call: GraphCall) -> tuple[list[Layer], list[Tensor]]:
    """Each edge-weighted GIN layer (sum aggregation with the node's own state, then its two-layer
    MLP and the outer ReLU, both activated) run on ``call``, and the layers' states."""
    n, e = call.x.shape[0], call.edge_index.shape[1]
    ones = call.x.new_ones(e + n)
    h, hs, layers = call.x, [], []
    for conv in model.convs:
        first, _, second = conv.mlp
        steps = [Step(first.weight.T, first.bias, True), Step(second.weight.T, second.bias, True)]
        layer = Layer(*_edge_lists(call, *ones.split([e, n])), steps)
        h = layer.run(h)
        layers.append(layer)
        hs.append(h)
    return layers, hs


def _linearise_gin(model: WeightedGIN, call: GraphCall, targets: Tensor) -> Linearised:
    """Graph level: the head reads every layer's sum-pooled states (concatenated)."""
    if call.task_level != "graph" or model.training:
        raise NotApplicable("goat: WeightedGIN is supported at graph level, in eval mode")
    layers, hs = _gin_layers(model, call)
    sample = node_samples(call, "goat")
    blocks = model.head.weight[targets].split(hs[0].shape[1], dim=1)
    readouts = [block[sample] for block in blocks]
    return Linearised(layers, readouts, model.head.bias[targets], call.edge_index.shape[1])


def _linearise_gin_nodes(model: WeightedGINNodes, call: GraphCall, targets: Tensor) -> Linearised:
    """Node level: the head reads every layer's state at the explained node (concatenated)."""
    if call.task_level != "node" or model.training:
        raise NotApplicable("goat: WeightedGINNodes is supported at node level, in eval mode")
    layers, hs = _gin_layers(model, call)
    readouts = [torch.zeros_like(h) for h in hs]
    for readout, block in zip(readouts, model.head.weight[targets].split(hs[0].shape[1], dim=1)):
        readout[call.index] = block
    return Linearised(layers, readouts, model.head.bias[targets], call.edge_index.shape[1])


def linearise(model: nn.Module, call: GraphCall, targets: Tensor) -> Linearised:
    """The model at its activation pattern on ``call``, for the explained ``targets``.

    A model GOAt has no linearisation for, or one too deep for the exact expansion, makes the
    method *not applicable* to the task (with the reason), not an error."""
    if isinstance(model, GCN):
        lin = _linearise_gcn(model, call, targets)
    elif isinstance(model, WeightedGINNodes):  # a WeightedGIN too: test it first
        lin = _linearise_gin_nodes(model, call, targets)
    elif isinstance(model, WeightedGIN):
        lin = _linearise_gin(model, call, targets)
    else:
        raise NotApplicable(f"goat: no linearisation for {type(model).__name__} (PyG GCN, WeightedGIN and WeightedGINNodes are supported)")
    if len(lin.layers) > MAX_LAYERS:
        raise NotApplicable(f"goat: exact for at most {MAX_LAYERS} message-passing layers, got {len(lin.layers)}")
    return lin


def goat_decomposition(model: nn.Module, call: GraphCall, targets: Tensor) -> tuple[Tensor, Tensor]:
    """GOAt's edge scores ``[E]`` and each sample's non-edge terms ``[B]`` (self-loop-only
    products and biases through no edge, plus the readout's constant).

    Per sample, edge scores plus non-edge terms equal the explained logit; raises if the
    linearisation does not reproduce the model's logits.
    """
    with torch.no_grad():
        lin = linearise(model, call, targets)
        scores, non_edge = _dynamic_programme(lin, call)
        logits = call.model_fn(call.x, call.edge_index, **call.kwargs)[call.index]
    explained = logits.gather(1, targets.view(-1, 1)).squeeze(1)
    total = non_edge + torch.zeros_like(non_edge).index_add_(0, call.edge_slot[:, 0], scores)
    if not torch.allclose(total, explained, rtol=CHECK_TOL, atol=CHECK_TOL * explained.abs().max().clamp(min=1)):
        raise ValueError(f"goat: linearised model disagrees with {type(model).__name__}'s logits")
    return scores, non_edge


def _dynamic_programme(lin: Linearised, call: GraphCall) -> tuple[Tensor, Tensor]:
    """Edge shares by edge counts: forward partial products, backward covectors (module docstring)."""
    n, states = call.x.shape[0], len(lin.layers) + 1
    nodes = torch.arange(n, device=call.x.device)
    forward = [call.x.new_zeros(n, states, call.x.shape[1])]
    forward[0][:, 0] = call.x
    for layer in lin.layers:
        f = layer.apply(layer.aggregate(forward[-1], n), nodes)
        f[:, 0] += layer.offset(n)
        forward.append(f)
    counts = torch.arange(states, device=call.x.device, dtype=call.x.dtype)
    share = 1.0 / (counts.view(-1, 1) + counts.view(1, -1) + 1)  # [k, j]: 1 / (k + j + 1)
    scores = call.x.new_zeros(lin.num_edges)
    backward = _at_count_zero(lin.readouts[-1], states)
    for depth in range(len(lin.layers), 0, -1):
        layer = lin.layers[depth - 1]
        g = layer.transpose(backward, nodes)  # covectors on the aggregate at each node [N, S, in]
        weighted = torch.einsum("kj,njh->nkh", share, g)
        per_edge = (forward[depth - 1][layer.src] * weighted[layer.dst]).sum(dim=(1, 2)) * layer.coef
        scores += per_edge[: lin.num_edges]
        backward = shift(g[layer.dst] * layer.coef.view(-1, 1, 1), layer.real)
        backward = torch.zeros_like(g).index_add_(0, layer.src, backward)
        if depth > 1:
            backward[:, 0] += lin.readouts[depth - 2]
    if len(lin.layers) >= 3:
        scores += _repeated_edge_correction(lin, call, [f[:, 0] for f in forward])
    sample = node_samples(call, "goat")
    own = sum((f[:, 0] * r).sum(dim=1) for f, r in zip(forward[1:], lin.readouts))
    non_edge = lin.constant + torch.zeros_like(lin.constant).index_add_(0, sample, own)
    return scores, non_edge


def _at_count_zero(readout: Tensor, states: int) -> Tensor:
    out = readout.new_zeros(readout.shape[0], states, readout.shape[1])
    out[:, 0] = readout
    return out


#: share corrections of a product whose ``m`` edge occurrences hold ``N`` distinct edges: the
#: count-based shares gave each occurrence ``1/m``, the Shapley split gives each edge ``1/N``
TWICE_OF_THREE = (1 / 2 - 2 / 3, 1 / 2 - 1 / 3)  # e, r, e: (the doubled edge, the other)
TWICE_OF_FOUR = (1 / 3 - 2 / 4, 1 / 3 - 1 / 4)  # four occurrences, three edges: (doubled, each single)


class _Walks:
    """Products of the expansion that repeat an edge, evaluated exactly (see the module docstring).

    A product is a zero-edge prefix (the count-0 forward state ``prefix[l]`` at a node after
    layer ``l``: the features or a bias carried through self-terms only), a segment of layers
    that holds its edges (and any self-terms between them), and a zero-edge suffix (the count-0
    covector ``suffix[l]``: the readouts reached through self-terms only). Edges can coincide only
    when they are not adjacent in the segment, so with at most 4 layers the segments are:
    ``e, r, e`` (``r`` the reverse of ``e``) on three consecutive layers, with a self-term between
    two of them on four; and on four layers ``e, r, e, f``, ``f, e, r, e`` and ``e, g, h, e`` (a
    triangle). ``e, r, e, r`` holds each of its two edges twice, which the counts already split
    right.
    """

    def __init__(self, lin: Linearised, call: GraphCall, prefix: list[Tensor]) -> None:
        self.lin, self.prefix = lin, prefix
        self.src, self.dst = call.edge_index
        self.n, self.e = call.x.shape[0], lin.num_edges
        self.suffix = self._suffix()
        self.correction = call.x.new_zeros(self.e)

    def _suffix(self) -> list[Tensor]:
        """``suffix[l]`` for ``l = 1 .. L`` (index 0 unused): ``R_l`` plus the next layer's
        self-term carried back."""
        layers, nodes = self.lin.layers, torch.arange(self.n, device=self.src.device)
        suffix = [self.lin.readouts[-1]]
        for depth in range(len(layers) - 1, 0, -1):
            loop = layers[depth].coef[self.e + nodes].view(-1, 1, 1)
            carried = layers[depth].transpose(suffix[0].unsqueeze(1) * loop, nodes).squeeze(1)
            suffix.insert(0, self.lin.readouts[depth - 1] + carried)
        return [suffix[0], *suffix]

    def value(self, start: int, source: Tensor, hops: list[tuple[Tensor | None, Tensor]]) -> Tensor:
        """Products from ``source`` (rows at nodes, after layer ``start``) through one hop per layer
        ``(edge ids or None for the self-term, the node it lands on)``, read by the suffix."""
        path = source.unsqueeze(1)
        for layer, (edge, node) in zip(self.lin.layers[start:], hops):
            coef = layer.coef[self.e + node] if edge is None else layer.coef[edge]
            path = layer.apply(path * coef.view(-1, 1, 1), node)
        return (path.squeeze(1) * self.suffix[start + len(hops)][hops[-1][1]]).sum(dim=1)

    def credit(self, value: Tensor, doubled: Tensor, singles: list[Tensor], shares: tuple[float, float]) -> None:
        self.correction.index_add_(0, doubled, value * shares[0])
        for single in singles:
            self.correction.index_add_(0, single, value * shares[1])

    def reverse(self) -> tuple[Tensor, Tensor]:
        """Edges that have a reverse, and the reverse of each."""
        key, wanted = self.src * self.n + self.dst, self.dst * self.n + self.src
        order = key.argsort()
        position = torch.searchsorted(key[order], wanted).clamp(max=self.e - 1)
        edge = (key[order][position] == wanted).nonzero().squeeze(1)
        return edge, order[position[edge]]

    def leaving(self, nodes: Tensor, ends: Tensor) -> tuple[Tensor, Tensor]:
        """Every pair ``(i, f)`` with edge ``f``'s end ``ends[f]`` equal to ``nodes[i]``."""
        order = ends.argsort()
        first = torch.searchsorted(ends[order], nodes)
        counts = torch.searchsorted(ends[order], nodes, right=True) - first
        row = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), counts)
        offset = torch.arange(row.numel(), device=nodes.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        return row, order[first[row] + offset]


def _repeated_edge_correction(lin: Linearised, call: GraphCall, prefix: list[Tensor]) -> Tensor:
    """What the count-based shares got wrong on products that use an edge twice (:class:`_Walks`)."""
    walks, layers = _Walks(lin, call, prefix), len(lin.layers)
    e, r = walks.reverse()
    a, b = walks.src[e], walks.dst[e]
    for start in range(layers - 2):  # e, r, e on layers start + 1 .. start + 3
        value = walks.value(start, prefix[start][a], [(e, b), (r, a), (e, b)])
        walks.credit(value, e, [r], TWICE_OF_THREE)
    if layers < 4:
        return walks.correction
    x = prefix[0]
    for middle in ([(None, b), (r, a)], [(r, a), (None, a)]):  # e, stay, r, e and e, r, stay, e
        walks.credit(walks.value(0, x[a], [(e, b), *middle, (e, b)]), e, [r], TWICE_OF_THREE)
    row, f = walks.leaving(b, walks.src)  # e, r, e, f with f leaving b, not r
    row, f = row[f != r[row]], f[f != r[row]]
    value = walks.value(0, x[a[row]], [(e[row], b[row]), (r[row], a[row]), (e[row], b[row]), (f, walks.dst[f])])
    walks.credit(value, e[row], [r[row], f], TWICE_OF_FOUR)
    row, f = walks.leaving(a, walks.dst)  # f, e, r, e with f entering a, not r
    row, f = row[f != r[row]], f[f != r[row]]
    value = walks.value(0, x[walks.src[f]], [(f, a[row]), (e[row], b[row]), (r[row], a[row]), (e[row], b[row])])
    walks.credit(value, e[row], [r[row], f], TWICE_OF_FOUR)
    _triangles(walks)
    return walks.correction


def _triangles(walks: _Walks) -> None:
    """``e, g, h, e`` round a triangle ``a -> b -> c -> a``: three edges, ``e`` twice."""
    edge = torch.arange(walks.e, device=walks.src.device)
    row, g = walks.leaving(walks.dst, walks.src)
    e, c = edge[row], walks.dst[g]
    a, b = walks.src[e], walks.dst[e]
    keep = c != a
    e, g, a, b, c = e[keep], g[keep], a[keep], b[keep], c[keep]
    key = walks.src * walks.n + walks.dst
    order = key.argsort()
    position = torch.searchsorted(key[order], c * walks.n + a).clamp(max=walks.e - 1)
    closed = key[order][position] == c * walks.n + a
    e, g, a, b, c, h = e[closed], g[closed], a[closed], b[closed], c[closed], order[position[closed]]
    value = walks.value(0, walks.prefix[0][a], [(e, b), (g, c), (h, a), (e, b)])
    walks.credit(value, e, [g, h], TWICE_OF_FOUR)


@METHODS.register("goat")
class GOAtExplainer(Explainer):
    """GOAt's exact edge attributions for ReLU GCNs (node level) and weighted GINs (graph level).

    No hyperparameters: the attribution is a closed form of the model at the input. One
    forward pass over the union plus a dynamic programme over layers costing about ``L + 1``
    more passes' worth of aggregation.
    """

    name = "goat"
    family = "graph-specific"
    cost_class = "one pass"
    passes = "1 forward + closed-form expansion (about 4 passes' worth of aggregation)"
    paper = "Lu et al., GOAt: Explaining Graph Neural Networks via Graph Output Attribution, ICLR 2024"
    modalities = frozenset({"graph"})
    description = "GOAt (Lu et al. 2024): exact Shapley split of the GNN's product expansion over edges, signed"

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        """In float32 even inside a bf16 run (``xaiboard run --precision bf16``): the exact
        expansion adds per-walk terms into float32 sums, and bfloat16 would also lose the
        completeness it promises."""
        call = require_call(task, model, inputs, self.name)
        with float32_passes(model):
            scores, _ = goat_decomposition(model, call, targets)
        return edges_to_slots(scores, call, task.valid_features(inputs))

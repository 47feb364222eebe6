"""FastDnX, GOAt and graph Grad-CAM against closed forms on tiny graphs, and on every graph task.

The tiny inputs are a disjoint union of two small graphs (one with a directed-only edge, so GCN's
in-degree normalisation is not symmetric), explained together as a batch of two, so every check
also checks that the methods keep the samples apart.

GOAt's reference enumerates every product of the model's expansion explicitly (walks through
dense propagation matrices, from a node feature or a bias to a readout), with the activation
pattern of an independent dense forward pass, and splits each among its distinct edges.
"""

from __future__ import annotations

from functools import cache

import pytest
import torch
from torch import Tensor, nn
from torch_geometric.nn import GCN, SGConv, global_add_pool

from method_checks import assert_well_formed_and_deterministic
from xaiboard.benchmark.registry import METHODS, TASKS
from xaiboard.benchmark.task import GraphCall
import xaiboard.tasks  # noqa: F401  (register the built-in tasks)
from xaiboard.methods import fastdnx, goat, graph_gradcam  # noqa: F401  (register)
from xaiboard.methods.fastdnx import FastDnXExplainer, node_contributions
from xaiboard.methods.goat import goat_decomposition
from xaiboard.benchmark.record import NotApplicable
from xaiboard.tasks.ba_shapes import WeightedGINNodes
from xaiboard.tasks.gin import WeightedGIN

FLOAT_TOL = 1e-4  # float32 round-off of sums of a few hundred products of O(1) factors (~1e-6)
#: GOAt's edge shares against the enumeration, relative to the largest share: float32 round-off
#: is ~2e-7 of it (measured), while the smallest correction these tests must see is ~1e-4 of it
#: (a walk round the triangle on 4 layers), so 1e-5 separates a right split from a wrong one
#: (an absolute 1e-4 would pass with every repeated-edge correction left out: error 5e-5)
SHARE_TOL = 1e-5


def assert_shares(scores: Tensor, shares: dict, call: GraphCall) -> None:
    expected = as_edge_vector(shares, call)
    torch.testing.assert_close(scores, expected, atol=SHARE_TOL * float(expected.abs().max()), rtol=0)
GRAPHS = [  # (node count, directed edges); node 0 of each graph is explained at node level
    (5, [(0, 1), (1, 0), (1, 2), (2, 1), (2, 0), (0, 2), (2, 3), (3, 2), (3, 4), (4, 3)]),
    (4, [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 0)]),
]
TARGETS = torch.tensor([1, 0])


@cache
def task_named(name: str):
    """One instance per task for the whole module: generating BA-2Motifs' graphs takes seconds."""
    return TASKS.create(name)


def tiny_call(model: nn.Module, level: str, features: int = 3, seed: int = 0) -> GraphCall:
    """Both graphs as one union (random node features), with the task-style slots and batch vector."""
    g = torch.Generator().manual_seed(seed)
    edges, offset, samples = [], 0, []
    for b, (nodes, pairs) in enumerate(GRAPHS):
        edges.append(torch.tensor(pairs).T + offset)
        samples.append(torch.full((nodes,), b))
        offset += nodes
    edge_index, sample = torch.cat(edges, dim=1), torch.cat(samples)
    edge_sample = sample[edge_index[0]]
    counts = torch.bincount(edge_sample)
    slot = torch.arange(edge_sample.numel()) - (counts.cumsum(0) - counts)[edge_sample]
    index = torch.tensor([0, GRAPHS[0][0]]) if level == "node" else torch.arange(len(GRAPHS))
    x = torch.randn(offset, features, generator=g)
    return GraphCall(model, x, edge_index, index, torch.stack([edge_sample, slot], 1), level, {"batch": sample})


def dense_adjacency(call: GraphCall) -> Tensor:
    """``A[v, u] = 1`` for an edge ``u -> v``."""
    n = call.x.shape[0]
    adjacency = torch.zeros(n, n)
    adjacency[call.edge_index[1], call.edge_index[0]] = 1.0
    return adjacency


def gcn_propagation(call: GraphCall) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` with in-degrees, built densely (independently of PyG's gcn_norm)."""
    a_hat = dense_adjacency(call) + torch.eye(call.x.shape[0])
    d = a_hat.sum(dim=1).rsqrt()
    return d[:, None] * a_hat * d[None, :]


def randomise_biases(model: nn.Module, seed: int = 1) -> nn.Module:
    """PyG initialises biases to zero; random ones make every bias term of the expansion count."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


class Dense:
    """A model at its activation pattern, from a dense forward pass: per layer ``l`` (1-based) the
    propagation ``P[l]``, node-wise linear maps ``T(l, v, vec)``, biases ``beta(l, v)``, readout
    covectors ``R[l]`` (``[N, H_l]``) and a constant."""

    def __init__(self, x: Tensor, propagation: list[Tensor], layers: list[list[tuple[Tensor, Tensor, bool]]]) -> None:
        self.x, self.P, self.masks, self.weights = x, [None, *propagation], [None], [None]
        self.states = [x]
        h = x
        for P, steps in zip(propagation, layers):
            a, masks = P @ h, []
            for weight, bias, activated in steps:
                a = a @ weight.T + bias
                masks.append((a > 0).float() if activated else torch.ones_like(a))
                a = a * masks[-1]
            self.masks.append(masks)
            self.weights.append(steps)
            self.states.append(a)
            h = a

    def T(self, layer: int, v: int, vec: Tensor) -> Tensor:
        for (weight, _, _), mask in zip(self.weights[layer], self.masks[layer]):
            vec = (vec @ weight.T) * mask[v]
        return vec

    def beta(self, layer: int, v: int) -> Tensor:
        vec = torch.zeros(self.weights[layer][0][0].shape[1])
        for (weight, bias, _), mask in zip(self.weights[layer], self.masks[layer]):
            vec = (vec @ weight.T + bias) * mask[v]
        return vec


def brute_force_goat(dense: Dense, readouts: list[Tensor], constant: Tensor, sample: Tensor) -> tuple[dict, Tensor]:
    """Every product of the expansion, each split equally among its distinct (non-loop) edges."""
    shares: dict[tuple[int, int], float] = {}
    non_edge = constant.clone()

    def emit(walk: list[int], value: float) -> None:
        edges = {(walk[t], walk[t + 1]) for t in range(len(walk) - 1) if walk[t] != walk[t + 1]}
        for edge in edges:
            shares[edge] = shares.get(edge, 0.0) + value / len(edges)
        if not edges:
            non_edge[sample[walk[-1]]] += value

    def walk_value(walk: list[int], start_layer: int, vec: Tensor, readout: Tensor) -> float:
        coef = 1.0
        for t, (u, v) in enumerate(zip(walk, walk[1:]), start=start_layer + 1):
            coef *= float(dense.P[t][v, u])
            vec = dense.T(t, v, vec)
        return coef * float(vec @ readout)

    def descend(walk: list[int], layer: int, top: int, readout: Tensor) -> None:
        """``walk`` runs from ``walk[0]`` at ``layer`` to the readout node at layer ``top``."""
        node = walk[0]
        if layer == 0:
            emit(walk, walk_value(walk, 0, dense.x[node], readout))
            return
        emit(walk, walk_value(walk, layer, dense.beta(layer, node), readout))
        for previous in range(dense.x.shape[0]):
            if dense.P[layer][node, previous] != 0:
                descend([previous, *walk], layer - 1, top, readout)

    for top, readout in enumerate(readouts, start=1):
        for node in range(dense.x.shape[0]):
            if readout[node].abs().sum() > 0:
                descend([node], top, top, readout[node])
    return shares, non_edge


def as_edge_vector(shares: dict, call: GraphCall) -> Tensor:
    return torch.tensor([shares.get((int(u), int(v)), 0.0) for u, v in call.edge_index.T])


def gcn_dense(model: GCN, call: GraphCall) -> Dense:
    P = gcn_propagation(call)
    steps = [
        [(conv.lin.weight, conv.bias, i < model.num_layers - 1 or model.jk_mode is not None)]
        for i, conv in enumerate(model.convs)
    ]
    return Dense(call.x, [P] * len(steps), steps)


@pytest.mark.parametrize("jk", [None, "max"])
@pytest.mark.parametrize("layers", [3, 4])
def test_goat_equals_the_enumerated_expansion_on_a_gcn(jk, layers):
    """Exact shares (walks that repeat an edge included: ``a -> b -> a -> b`` on 3 layers, six
    more patterns on 4, among them a walk round the test graph's triangle) and completeness."""
    torch.manual_seed(0)
    model = randomise_biases(GCN(3, 6, num_layers=layers, out_channels=2, jk=jk))
    call = tiny_call(model, "node")
    dense = gcn_dense(model, call)
    readouts = [torch.zeros_like(h) for h in dense.states[1:]]
    if jk is None:
        readouts[-1][call.index, TARGETS] = 1.0
        constant = torch.zeros(2)
    else:
        stacked = torch.stack([h[call.index] for h in dense.states[1:]], dim=-1)
        for layer, readout in enumerate(readouts):
            readout[call.index] = model.lin.weight[TARGETS] * (stacked.argmax(-1) == layer)
        constant = model.lin.bias[TARGETS].detach().clone()
    with torch.no_grad():
        shares, expected_rest = brute_force_goat(dense, readouts, constant, call.kwargs["batch"])
        scores, rest = goat_decomposition(model, call, TARGETS)
        logits = model(call.x, call.edge_index)[call.index].gather(1, TARGETS.view(-1, 1)).squeeze(1)
    assert_shares(scores, shares, call)
    torch.testing.assert_close(rest, expected_rest, atol=FLOAT_TOL, rtol=0)
    per_sample = rest + torch.zeros(2).index_add_(0, call.edge_slot[:, 0], scores)
    torch.testing.assert_close(per_sample, logits, atol=FLOAT_TOL, rtol=0)


@pytest.mark.parametrize("layers", [3, 4])
def test_goat_equals_the_enumerated_expansion_on_a_weighted_gin(layers):
    """Graph level (the v3 BA-2Motifs model has 4 layers): the readout sums every node's state at
    every layer; two ReLUs per layer."""
    torch.manual_seed(0)
    model = randomise_biases(WeightedGIN(3, 5, num_layers=layers, num_classes=2))
    call = tiny_call(model, "graph")
    P = dense_adjacency(call) + torch.eye(call.x.shape[0])
    steps = [[(c.mlp[0].weight, c.mlp[0].bias, True), (c.mlp[2].weight, c.mlp[2].bias, True)] for c in model.convs]
    dense = Dense(call.x, [P] * layers, steps)
    sample = call.kwargs["batch"]
    readouts = [block[sample] for block in model.head.weight[TARGETS].split(5, dim=1)]
    with torch.no_grad():
        shares, expected_rest = brute_force_goat(dense, readouts, model.head.bias[TARGETS].clone(), sample)
        scores, rest = goat_decomposition(model, call, TARGETS)
        logits = model(call.x, call.edge_index, batch=sample).gather(1, TARGETS.view(-1, 1)).squeeze(1)
    assert_shares(scores, shares, call)
    torch.testing.assert_close(rest + torch.zeros(2).index_add_(0, call.edge_slot[:, 0], scores), logits, atol=FLOAT_TOL, rtol=0)


@pytest.mark.parametrize("layers", [3, 4])
def test_goat_equals_the_enumerated_expansion_on_a_node_level_weighted_gin(layers):
    """Node level (the motif tasks' model: 3 layers in version 2, 4 in version 3): the readout
    reads every layer's state at the explained node only."""
    torch.manual_seed(0)
    model = randomise_biases(WeightedGINNodes(3, 5, num_layers=layers, num_classes=2)).eval()
    call = tiny_call(model, "node")
    P = dense_adjacency(call) + torch.eye(call.x.shape[0])
    steps = [[(c.mlp[0].weight, c.mlp[0].bias, True), (c.mlp[2].weight, c.mlp[2].bias, True)] for c in model.convs]
    dense = Dense(call.x, [P] * layers, steps)
    readouts = [torch.zeros(call.x.shape[0], 5) for _ in range(layers)]
    for readout, block in zip(readouts, model.head.weight[TARGETS].split(5, dim=1)):
        readout[call.index] = block
    with torch.no_grad():
        shares, expected_rest = brute_force_goat(dense, readouts, model.head.bias[TARGETS].clone(), call.kwargs["batch"])
        scores, rest = goat_decomposition(model, call, TARGETS)
        logits = model(call.x, call.edge_index)[call.index].gather(1, TARGETS.view(-1, 1)).squeeze(1)
    assert_shares(scores, shares, call)
    torch.testing.assert_close(rest, expected_rest, atol=FLOAT_TOL, rtol=0)
    torch.testing.assert_close(rest + torch.zeros(2).index_add_(0, call.edge_slot[:, 0], scores), logits, atol=FLOAT_TOL, rtol=0)


def test_goat_is_not_applicable_to_a_model_it_cannot_linearise():
    """Too deep for the exact expansion (more than 4 layers) or an unknown architecture: the
    runner records the pair as not applicable, with the reason."""
    call = tiny_call(GCN(3, 4, num_layers=5, out_channels=2), "node")
    with pytest.raises(NotApplicable, match="at most 4"):
        goat_decomposition(call.model_fn.eval(), call, TARGETS)


# ---- FastDnX ------------------------------------------------------------------------------


class SGCTeacher(nn.Module):
    """A GNN that *is* a linear SGC, ``Â^3 X Θ + b``, called like the tasks' models; at graph
    level it sums ``Â^3 X`` over each graph before ``Θ`` (as the surrogate does)."""

    def __init__(self, features: int, classes: int, level: str, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.sgc, self.level = SGConv(features, classes, K=3, bias=False), level
        self.bias = nn.Parameter(torch.randn(classes))
        with torch.no_grad():
            self.sgc.lin.weight.mul_(scale)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, batch: Tensor | None = None) -> Tensor:
        if self.level == "node":
            return self.sgc(x, edge_index, edge_weight) + self.bias
        return global_add_pool(self.sgc(x, edge_index, edge_weight), batch) + self.bias

    def as_linear(self) -> nn.Linear:
        linear = nn.Linear(self.sgc.lin.weight.shape[1], self.bias.numel())
        linear.weight.data, linear.bias.data = self.sgc.lin.weight.data.clone(), self.bias.data.clone()
        return linear


@pytest.mark.parametrize("level", ["node", "graph"])
def test_fastdnx_decomposes_a_linear_sgc_exactly(level):
    """Node ``u``'s contribution is ``(Â^3)[v, u] (X[u] Θ)[c]`` (dense matrix power; graph level:
    summed over ``v``), and per sample the contributions plus the bias are the teacher's logit."""
    teacher = SGCTeacher(3, 2, level).eval()
    call = tiny_call(teacher, level)
    with torch.no_grad():
        contributions = node_contributions(teacher.as_linear(), call, 3, TARGETS)
        logits = teacher(call.x, call.edge_index, batch=call.kwargs["batch"])[call.index]
    sample = call.kwargs["batch"]
    walk_weight = torch.linalg.matrix_power(gcn_propagation(call), 3)
    if level == "node":
        reach = walk_weight[call.index[sample], torch.arange(sample.numel())]
    else:
        reach = (walk_weight * (sample[:, None] == sample[None, :])).sum(dim=0)
    expected = reach * (call.x @ teacher.sgc.lin.weight.T).gather(1, TARGETS[sample].view(-1, 1)).squeeze(1)
    torch.testing.assert_close(contributions, expected.detach(), atol=FLOAT_TOL, rtol=0)
    totals = torch.zeros(2).index_add_(0, sample, contributions) + teacher.bias[TARGETS]
    torch.testing.assert_close(totals, logits.gather(1, TARGETS.view(-1, 1)).squeeze(1), atol=FLOAT_TOL, rtol=0)


@pytest.mark.parametrize(("task_name", "level"), [("graph/ba-shapes@1", "node"), ("graph/ba-2motifs@1", "graph")])
def test_fastdnx_distils_a_linear_sgc_teacher_back_to_itself(task_name, level):
    """Distilled from a teacher that is an SGC of the same form, the surrogate recovers it up to
    softmax's shift invariance: ``Θ_c - Θ_0`` and ``b_c - b_0`` equal the teacher's, so do the
    class differences of every node contribution. Tolerance: the convex fit is exact up to the
    float32 teacher logits, amplified by the features' narrow spread (measured error ~3e-6);
    a fit that stopped early or missed the optimum is off by 1e-1 (measured before
    standardising the features), so 1e-3 separates the two."""
    task = task_named(task_name)
    features = task.samples("test", 1, seed=0).inputs.x.shape[1]
    teacher = SGCTeacher(features, task.num_classes, level).eval()
    surrogate = FastDnXExplainer(train_samples=64).surrogate(teacher, task, torch.device("cpu"))
    expected = teacher.as_linear()
    for fitted, true in ((surrogate.weight, expected.weight), (surrogate.bias, expected.bias)):
        torch.testing.assert_close(fitted - fitted[0], (true - true[0]).detach(), atol=1e-3, rtol=1e-3)


def test_fastdnx_caches_one_surrogate_per_model():
    task = task_named("graph/ba-shapes@1")
    method, batch = FastDnXExplainer(train_samples=32), task.samples("test", 4, seed=0)
    method.explain(task.model(), batch.inputs, batch.targets, task)
    method.explain(task.model(), batch.inputs, batch.targets, task)
    assert len(method._surrogates) == 1
    method.explain(SGCTeacher(1, 4, "node"), batch.inputs, batch.targets, task)
    assert len(method._surrogates) == 2


# ---- graph Grad-CAM -----------------------------------------------------------------------


def gradcam_edges(node_scores: Tensor, call: GraphCall) -> Tensor:
    src, dst = call.edge_index
    return (node_scores[src] + node_scores[dst]) / 2


def test_graph_gradcam_on_a_gin_weights_last_embeddings_by_the_head():
    """The GIN's logit is linear in its last embeddings with the same gradient at every node (the
    head's block for layer 3), so ``α`` is that block and node scores are ``relu(h_3 · block)``."""
    torch.manual_seed(0)
    model = randomise_biases(WeightedGIN(3, 5, num_layers=3, num_classes=2))
    call = tiny_call(model, "graph")
    sample = call.kwargs["batch"]
    dense = Dense(call.x, [dense_adjacency(call) + torch.eye(call.x.shape[0])] * 3,
                  [[(c.mlp[0].weight, c.mlp[0].bias, True), (c.mlp[2].weight, c.mlp[2].bias, True)] for c in model.convs])
    alpha = model.head.weight[TARGETS].split(5, dim=1)[2]
    expected = (dense.states[3] * alpha[sample]).sum(dim=1).relu()
    scores = explain_tiny("graph_gradcam", model, call)
    torch.testing.assert_close(scores, gradcam_edges(expected, call).detach(), atol=FLOAT_TOL, rtol=0)


def test_graph_gradcam_on_a_gcn_reads_the_penultimate_layer():
    """Logit ``(Â h_2 W_3 + b_3)[v, c]``: ``∂/∂h_2[n] = Â[v, n] W_3[c]``, so per sample
    ``α = mean_n Â[v, n] · W_3[c]`` over that sample's nodes."""
    torch.manual_seed(0)
    model = randomise_biases(GCN(3, 6, num_layers=3, out_channels=2))
    call = tiny_call(model, "node")
    sample = call.kwargs["batch"]
    dense = gcn_dense(model, call)
    P = gcn_propagation(call)
    mean_reach = torch.stack([P[v][sample == b].mean() for b, v in enumerate(call.index)])
    alpha = mean_reach[:, None] * model.convs[2].lin.weight[TARGETS]
    expected = (dense.states[2] * alpha[sample]).sum(dim=1).relu()
    scores = explain_tiny("graph_gradcam", model, call)
    torch.testing.assert_close(scores, gradcam_edges(expected, call).detach(), atol=FLOAT_TOL, rtol=0)


def explain_tiny(name: str, model: nn.Module, call: GraphCall) -> Tensor:
    """Per-edge scores of a method on the tiny union, through a task-shaped stand-in."""

    class Stand:
        name = "test/tiny"

        def graph_call(self, model, inputs):
            return call

        def valid_features(self, inputs):
            counts = torch.bincount(call.edge_slot[:, 0])
            return torch.arange(int(counts.max()))[None, :] < counts[:, None]

    slots = METHODS.create(name).explain(model, None, TARGETS, Stand())
    return slots[call.edge_slot[:, 0], call.edge_slot[:, 1]]


# ---- every graph task ---------------------------------------------------------------------


@pytest.mark.parametrize("task_name", ["graph/ba-shapes@1", "graph/tree-cycles@1", "graph/ba-2motifs@1"])
@pytest.mark.parametrize("name", ["fastdnx", "goat", "graph_gradcam"])
def test_new_graph_methods_on_every_graph_task(task_name, name):
    """Right shape, finite, zero on padding, not all zero, identical on a second call."""
    task, method = task_named(task_name), METHODS.create(name, **({"train_samples": 32} if name == "fastdnx" else {}))
    assert_well_formed_and_deterministic(method, task)

"""FastDnX (Pereira et al., "Distill n' Explain: explaining graph neural networks using simple
surrogates", AISTATS 2023).

Distil: the task's GNN is approximated by a linear SGC surrogate (Wu et al. 2019),
``logits = Â^k X Θ + b``, ``Â`` the GCN-normalised adjacency with self-loops and ``k`` the task's
number of message-passing layers (``task.num_hops``), fitted to the GNN's soft predictions on
the task's training samples by minimising the cross-entropy to them (KL up to a constant).
Explain: the surrogate is linear, so the explained class's logit decomposes exactly over nodes,
node ``u`` contributing ``(Â^k)[v, u] · (X[u] Θ)[c]`` for explained node ``v`` (FastDnX's
explanation); the bias ``b`` is no node's.

What we pin and where we deviate:

- Training samples: ``task.samples("train", train_samples, seed)``, the task's own evaluated kind
  of sample on the training split (motif nodes for BA-Shapes / Tree-Cycles, graphs with
  ground truth for the graph tasks; on graph/mutagenicity these are mutagens only): what every
  task exposes, without reading its internals. The fit sees the teacher's soft predictions, so
  it still learns from samples of one label. 256 samples: the surrogate has ``(d + 1) C``
  parameters (at most 30 here).
- Fit: the objective is convex in ``(Θ, b)`` (multinomial logistic regression on the fixed
  features ``Â^k X``), solved by L-BFGS from zero on standardised features in float64
  (deterministic; at most ``lbfgs_steps`` = 100 iterations with strong-Wolfe line search; it
  recovers an SGC teacher's parameters to 1e-3, tested) rather than the paper's Adam steps:
  same optimum, reached faster and reproducibly.
- Graph level (the paper explains nodes): the surrogate sums ``Â^k X`` over the graph's nodes
  before its linear map, as the task's GIN sums node states (``global_add_pool``), so node ``u``
  contributes ``(sum_v Â^k[v, u]) · (X[u] Θ)[c]`` and the bias ``b`` is the graph's.
- Edges: our feature space is edges, and FastDnX explains nodes, so an edge scores the mean of
  its endpoints' contributions (:func:`~.graph_common.nodes_to_edge_slots`, as for graph
  Grad-CAM): the paper's node scores stay exactly the paper's, and an edge inside a set of
  important nodes outranks one that leaves it. Scores are signed.

What it can see: with constant node features (graph/ba-shapes, graph/tree-cycles,
graph/ba-2motifs) ``X[u] Θ`` is the same for every node, so a node's contribution is its walk
weight ``Â^k`` times one number per class: the ranking by magnitude is the graph's structure,
and the model only enters through that number (measured: ground-truth AUROC 1.000 on
graph/ba-shapes, as the structural input-magnitude control's 0.998; MPRT similarity 1.0 on all
three tasks in a 6-sample run).

The surrogate is cached in memory per ``task.fingerprint(model)`` (task code, removal, model
code and weights), so a randomised model gets its own. Batched: ``Â^k`` rows for every
explained node of the union are one sparse propagation from the explained nodes' indicators.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GraphCall, Task

from .base import Explainer
from .graph_common import node_samples, nodes_to_edge_slots, require_call


def message_passing_layers(task: Task) -> int:
    """``k``: the task's number of message-passing layers (``GraphTask.num_hops``)."""
    hops = getattr(task, "num_hops", None)
    if hops is None:
        raise ValueError(f"fastdnx: task {task.name} declares no num_hops (its GNN's message-passing layers)")
    return int(hops)


def propagate(call: GraphCall, values: Tensor, hops: int, transpose: bool = False) -> Tensor:
    """``Â^hops @ values`` (``transpose``: ``(Â^T)^hops``) over the union, ``values`` ``[N, d]``.

    ``Â = D^-1/2 (A + I) D^-1/2`` with in-degrees, PyG's ``gcn_norm`` (as ``SGConv`` uses it).
    """
    index, coef = gcn_norm(call.edge_index, None, call.x.shape[0], add_self_loops=True, dtype=values.dtype)
    src, dst = index.flip(0) if transpose else index
    for _ in range(hops):
        values = torch.zeros_like(values).index_add_(0, dst, values[src] * coef.unsqueeze(1))
    return values


def readout_weights(call: GraphCall, hops: int) -> Tensor:
    """``r[u]``: how much node ``u``'s transformed feature enters its sample's explained logit,
    ``(Â^k)[v, u]`` (node level, ``v`` the explained node) or ``sum_v (Â^k)[v, u]`` (graph level;
    the union is disjoint, so the sum stays within ``u``'s own graph)."""
    if call.task_level == "node":
        start = call.x.new_zeros(call.x.shape[0], 1)
        start[call.index] = 1.0
    else:
        start = call.x.new_ones(call.x.shape[0], 1)
    return propagate(call, start, hops, transpose=True).squeeze(1)


def surrogate_features(call: GraphCall, hops: int) -> Tensor:
    """The SGC's input per explained output, ``[B, d]``: ``(Â^k X)[v]`` or ``sum_v (Â^k X)[v]``."""
    features = propagate(call, call.x, hops)
    if call.task_level == "node":
        return features[call.index]
    sample = node_samples(call, "fastdnx")
    return features.new_zeros(call.index.numel(), features.shape[1]).index_add_(0, sample, features)


def node_contributions(surrogate: nn.Linear, call: GraphCall, hops: int, targets: Tensor) -> Tensor:
    """FastDnX's node scores ``[N]``: each node's share of its sample's explained surrogate logit.

    Per sample they sum to the surrogate's logit minus its bias ``b``.
    """
    sample = node_samples(call, "fastdnx")
    per_class = call.x @ surrogate.weight.T  # (X Θ) [N, C]
    own = per_class.gather(1, targets[sample].view(-1, 1)).squeeze(1)
    return readout_weights(call, hops) * own


def fit_surrogate(features: Tensor, teacher_logits: Tensor, steps: int) -> nn.Linear:
    """Multinomial logistic regression of the teacher's soft predictions on ``features``.

    Fitted in float64 on standardised features (the propagated features of our tasks vary by a
    few percent around their mean, so weight and bias are nearly collinear in raw units), then
    mapped back to raw units: the same optimum, well conditioned.
    """
    x = features.double()
    mean, std = x.mean(dim=0), x.std(dim=0).nan_to_num(0.0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    standard = nn.Linear(x.shape[1], teacher_logits.shape[1]).to(x.device, x.dtype)
    nn.init.zeros_(standard.weight)
    nn.init.zeros_(standard.bias)
    soft = teacher_logits.double().softmax(dim=1)
    optimiser = torch.optim.LBFGS(
        standard.parameters(), max_iter=steps, tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(standard((x - mean) / std), soft)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    surrogate = nn.Linear(x.shape[1], teacher_logits.shape[1]).to(features.device, features.dtype)
    with torch.no_grad():
        weight = standard.weight / std
        surrogate.weight.copy_(weight)
        surrogate.bias.copy_(standard.bias - weight @ mean)
    return surrogate.requires_grad_(False)


@METHODS.register("fastdnx")
class FastDnXExplainer(Explainer):
    """SGC surrogate distilled from the GNN, explained by its exact linear node decomposition."""

    name = "fastdnx"
    family = "graph-specific"
    cost_class = "trained per task"
    passes = "0 per sample (surrogate fitted once per task and model: {train_samples} forward + {lbfgs_steps} L-BFGS steps)"
    paper = "Pereira et al., Distill n' Explain: explaining graph neural networks using simple surrogates, AISTATS 2023"
    modalities = frozenset({"graph"})
    description = "FastDnX (Pereira et al. 2023): SGC surrogate distilled from the GNN, linear node decomposition, edge = mean of endpoints"

    def __init__(self, train_samples: int = 256, lbfgs_steps: int = 100, seed: int = 0) -> None:
        super().__init__(train_samples=train_samples, lbfgs_steps=lbfgs_steps, seed=seed)
        self._surrogates: dict[str, nn.Linear] = {}

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        call = require_call(task, model, inputs, self.name)
        surrogate = self.surrogate(model, task, call.x.device)
        scores = node_contributions(surrogate, call, message_passing_layers(task), targets)
        return nodes_to_edge_slots(scores, call, task.valid_features(inputs))

    def surrogate(self, model: nn.Module, task: Task, device: torch.device) -> nn.Linear:
        """The SGC fitted to ``model`` on ``task``'s training samples (cached per fingerprint)."""
        key = task.fingerprint(model)
        if key not in self._surrogates:
            batch = task.samples("train", self.params["train_samples"], self.params["seed"]).to(device)
            with torch.no_grad():
                teacher = task.logits(model, batch.inputs)
                features = surrogate_features(require_call(task, model, batch.inputs, self.name), message_passing_layers(task))
            self._surrogates[key] = fit_surrogate(features, teacher, self.params["lbfgs_steps"])
        return self._surrogates[key]

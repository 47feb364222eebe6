"""Graph Grad-CAM (Pope et al., "Explainability Methods for Graph Convolutional Neural Networks", CVPR 2019).

Node ``n``'s score is ``ReLU(sum_k α_k F_k(n))``, ``F`` the node embeddings of the last
message-passing layer whose output is node embeddings, ``α_k`` the mean over the sample's nodes
of ``∂y_c / ∂F_k(n)`` (``y_c`` the explained class's logit: the explained node's row at node
level, the graph's at graph level). ``α`` is computed per sample over that sample's own nodes
of the disjoint union, so one forward and one backward pass explain the whole batch.

The layer, found from the model without any task code:

- PyG ``GCN``: the output of its activation module ``act`` at its last call. Without jumping
  knowledge the last convolution outputs class logits and is not activated, so this is the
  penultimate layer's (post-ReLU) embeddings; with jumping knowledge (``graph/tree-cycles``,
  ``jk="max"``) every layer is activated and this is the last layer's embeddings.
- ``WeightedGIN``: the output of its last ReLU module (``relus[-1]``), the last layer's embeddings.

Embeddings are read after the ReLU, as Grad-CAM reads a convolution block's rectified output.
Edges: an edge scores the mean of its endpoints' node scores
(:func:`~.graph_common.nodes_to_edge_slots`), so scores are non-negative.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCN

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task
from xaiboard.tasks.gin import WeightedGIN

from .base import Explainer
from .graph_common import node_samples, nodes_to_edge_slots, require_call


def embedding_module(model: nn.Module) -> nn.Module:
    """The module whose *last* output in a forward pass is the node embeddings Grad-CAM reads."""
    if isinstance(model, WeightedGIN):
        return model.relus[-1]
    if isinstance(model, GCN) and isinstance(model.act, nn.Module) and (model.num_layers > 1 or model.jk_mode):
        return model.act
    raise ValueError(f"graph_gradcam: no embedding layer known for {type(model).__name__} (PyG GCN, WeightedGIN)")


@METHODS.register("graph_gradcam")
class GraphGradCamExplainer(Explainer):
    """Grad-CAM on the last node-embedding layer, per-sample channel weights, edge = mean of endpoints.

    Tier ``full`` although it costs one pass: under a randomised head its ReLU often zeroes every
    node of every sample (with constant node features all embeddings point alike, so ``α · F``
    has one sign), and MPRT, undefined on a constant map, then has no sample to score (measured
    on graph/tree-cycles: 64 of 64 maps constant after the head is randomised), which the
    default suite records as an error.
    """

    tier = "full"

    name = "graph_gradcam"
    family = "gradient"
    cost_class = "one pass"
    passes = "1 forward + backward"
    paper = "Pope et al., Explainability Methods for Graph Convolutional Neural Networks, CVPR 2019"
    modalities = frozenset({"graph"})
    description = "Graph Grad-CAM (Pope et al. 2019): last node-embedding layer, per-sample weights, edge = mean of endpoints"

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        call = require_call(task, model, inputs, self.name)
        sample = node_samples(call, self.name)
        outputs: list[Tensor] = []
        handle = embedding_module(model).register_forward_hook(lambda _m, _i, out: outputs.append(out))
        try:
            with torch.enable_grad():
                x = call.x.detach().requires_grad_(True)  # a graph to differentiate even if weights are frozen
                logits = call.model_fn(x, call.edge_index, **call.kwargs)[call.index]
                (grad,) = torch.autograd.grad(logits.gather(1, targets.view(-1, 1)).sum(), outputs[-1])
        finally:
            handle.remove()
        embeddings = outputs[-1].detach()
        counts = torch.bincount(sample, minlength=len(targets)).clamp(min=1).unsqueeze(1)
        alpha = torch.zeros(len(targets), grad.shape[1], dtype=grad.dtype, device=grad.device).index_add_(0, sample, grad)
        scores = ((alpha / counts)[sample] * embeddings).sum(dim=1).relu()
        return nodes_to_edge_slots(scores, call, task.valid_features(inputs))

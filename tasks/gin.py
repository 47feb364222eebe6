"""An edge-weighted GIN for graph classification, so that edge weight 0 means "edge absent".

GIN (Xu et al., ICLR 2019) sums neighbour states, ``h_i' = MLP(h_i + sum_j h_j)``, and PyG's
``GINConv`` takes no edge weights, while xaiboard's default missingness model (``zero-weight``)
and every gradient method act on edge weights. :class:`WeightedGINConv` multiplies each message
by its edge's weight, ``h_i' = MLP(h_i + sum_j w_ji h_j)``: weight 1 is plain GIN, weight 0 is
exactly the edge deleted (so ``zero-weight`` and ``drop-edge`` removal agree), and values in
between are what gradient methods differentiate. It is a ``MessagePassing`` layer, so PyG's
explainers install their edge masks in it.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing, global_add_pool


class WeightedGINConv(MessagePassing):
    """GIN-0 with messages scaled by edge weights (``None``: all 1)."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__(aggr="add")
        self.mlp = mlp

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        return self.mlp(x + self.propagate(edge_index, x=x, edge_weight=edge_weight))

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else x_j * edge_weight.unsqueeze(-1)


class WeightedGIN(nn.Module):
    """``num_layers`` weighted GIN layers; the readout sums each layer's node states per graph
    (GIN's jumping-knowledge readout) and a linear layer maps them to logits.

    Every ReLU is a module of its own (one per use), so that methods with modified backward rules
    (Captum's DeepLIFT, guided backprop, deconvolution) hook each of them."""

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int, num_classes: int) -> None:
        super().__init__()
        widths = [in_channels] + [hidden_channels] * num_layers
        self.convs = nn.ModuleList(
            WeightedGINConv(nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b))) for a, b in pairwise(widths)
        )
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(num_layers))
        self.head = nn.Linear(hidden_channels * num_layers, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, batch: Tensor | None = None) -> Tensor:
        pooled = []
        for conv, relu in zip(self.convs, self.relus):
            x = relu(conv(x, edge_index, edge_weight))
            pooled.append(global_add_pool(x, batch))
        return self.head(torch.cat(pooled, dim=1))

"""GraphXAI's Benzene molecules with a node feature space: node attributions, node removal by
zeroing a node's features, node ground truth.

Benzene (Sanchez-Lengeling et al., NeurIPS 2020; packaged by GraphXAI, Agarwal et al., Scientific
Data 2023) labels 12,000 molecules by whether they contain a benzene ring; the ring's carbons are
the ground-truth nodes. GraphXAI scores explanations of it per node, and its faithfulness metric
(GEF) removes nodes by zeroing their one-hot atom features while keeping every edge. The board's
graph tasks score edges; this module is the node feature space a reproduction of GraphXAI needs.

The data and the authors' GIN checkpoint are not shipped: they are read (never copied) from
``$XAIBOARD_SHARED_DATA/graphxai-benzene`` (default: ``../shared/data/`` beside the repository),
see that folder's ``SOURCE.txt``.

Molecules have at most 25 atoms, so a batch is held dense (:class:`DenseGraphs`: node features
``[B, N, 14]``, adjacency ``[B, N, N]``, node mask ``[B, N]``) and the GIN is written with PyG's
``DenseGINConv``, whose parameters are named like ``GINConv``'s, so the authors' sparse state dict
loads unchanged. Dense batches give Captum what it expects (one row per sample, additional
tensors repeated along the batch), so node-level gradient methods need no graph bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import DenseGINConv

from xaiboard.benchmark.paths import shared_data_dir

NUM_ATOM_TYPES = 14
HIDDEN = 32
#: GraphXAI's evaluation scripts split the 12,000 graphs (.70, .15, .15) in order, unshuffled:
#: the test graphs are 8,400..10,199 (``published-results/SOURCE.txt``)
TEST_RANGE = (8400, 10200)
Pool = Literal["mean", "add"]


def data_dir() -> Path:
    """The read-only Benzene folder: ``$XAIBOARD_SHARED_DATA/graphxai-benzene``."""
    return shared_data_dir() / "graphxai-benzene"


@dataclass
class DenseGraphs:
    """``B`` molecules padded to ``N`` atoms: features, adjacency, real-atom mask, labels and the
    ground-truth atoms (the benzene ring's, empty for negatives)."""

    x: Tensor
    adj: Tensor
    mask: Tensor
    labels: Tensor
    truth: Tensor
    ids: Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def select(self, index: Tensor) -> DenseGraphs:
        return DenseGraphs(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def without_nodes(self, removed: Tensor) -> DenseGraphs:
        """GraphXAI's node removal: the features of ``removed`` (bool ``[B, N]``) atoms set to 0,
        edges kept."""
        return replace(self, x=self.x * (~removed).unsqueeze(-1).to(self.x.dtype))


class DenseGIN(nn.Module):
    """GraphXAI's Benzene GIN: three ``GINConv(Linear)`` layers (hidden 32) each followed by a
    ReLU, pooling over atoms, a linear head; dense so that batches are ``[B, N, F]``.

    ``pool="mean"`` is the model class's ``global_mean_pool`` (accuracy .900 on all 12,000 graphs);
    ``pool="add"`` is the model as the authors' evaluation scripts ran it: their dummy
    ``batch=torch.tensor([0])`` makes PyG's ``global_mean_pool`` return the sum (.893).
    """

    def __init__(self, in_channels: int = NUM_ATOM_TYPES, hidden: int = HIDDEN, num_classes: int = 2, pool: Pool = "mean") -> None:
        super().__init__()
        self.pool = pool
        self.conv1 = DenseGINConv(nn.Linear(in_channels, hidden), train_eps=True)
        self.conv2 = DenseGINConv(nn.Linear(hidden, hidden), train_eps=True)
        self.conv3 = DenseGINConv(nn.Linear(hidden, hidden), train_eps=True)
        # one ReLU module per use, so that guided backprop hooks each
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(3))
        self.lin = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        """Logits ``[B, 2]``; ``x`` may repeat the batch ``k`` times (Captum), with ``adj`` and
        ``mask`` repeated alike."""
        for conv, relu in zip((self.conv1, self.conv2, self.conv3), self.relus):
            x = relu(conv(x, adj, mask)) * mask.unsqueeze(-1)
        pooled = x.sum(dim=1)
        if self.pool == "mean":
            pooled = pooled / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return self.lin(pooled)

    def cam_layer(self) -> nn.Module:
        """The last convolution's ReLU: its output is what Grad-CAM weighs per node."""
        return self.relus[-1]


def load_model(folder: Path | None = None, pool: Pool = "mean") -> DenseGIN:
    """The authors' checkpoint in eval mode. Their state dict also holds ``mlpK.*`` aliases of
    ``convK.nn.*`` (the same tensors registered twice); they are dropped."""
    state = torch.load((folder or data_dir()) / "GIN_benzene_state_dict.pth", map_location="cpu", weights_only=True)
    model = DenseGIN(pool=pool)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("mlp")})
    return model.eval()


@cache
def load_graphs(folder: Path | None = None) -> DenseGraphs:
    """All 12,000 molecules, dense, in the file's order (ids 0..11,999)."""
    folder = folder or data_dir()
    dicts = np.load(folder / "x_true.npz", allow_pickle=True)["datadict_list"][0]
    truth = np.load(folder / "true_raw_attribution_datadicts.npz", allow_pickle=True)["datadict_list"][:, 0]
    labels = torch.from_numpy(np.load(folder / "y_true.npz")["y"][:, 0]).long()
    n = max(d["nodes"].shape[0] for d in dicts)
    x = torch.zeros(len(dicts), n, NUM_ATOM_TYPES)
    adj = torch.zeros(len(dicts), n, n)
    gt = torch.zeros(len(dicts), n, dtype=torch.bool)
    for i, (d, t) in enumerate(zip(dicts, truth)):
        atoms = d["nodes"].shape[0]
        x[i, :atoms] = torch.from_numpy(d["nodes"])
        adj[i, d["receivers"], d["senders"]] = 1.0
        gt[i, :atoms] = torch.from_numpy(t["nodes"][:, 0] > 0)
    mask = x.abs().sum(dim=-1) > 0
    return DenseGraphs(x=x, adj=adj, mask=mask, labels=labels, truth=gt, ids=torch.arange(len(dicts)))


def test_graphs(folder: Path | None = None) -> DenseGraphs:
    """GraphXAI's test split (graphs 8,400..10,199)."""
    return load_graphs(folder).select(torch.arange(*TEST_RANGE))

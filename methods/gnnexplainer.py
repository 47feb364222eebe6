"""GNNExplainer (Ying et al., 2019) through PyG's ``torch_geometric.explain``, one fit per batch.

A batch of graph samples is one disjoint union (``Task.graph_call``), and PyG fits one edge mask
over the whole union, explaining all ``B`` outputs at ``call.index`` together. Because the
subgraphs are disjoint, an edge only reaches its own sample's output, so the joint objective
separates into per-sample ones, *provided* each term is weighted as in a per-sample run:

- prediction: PyG's cross-entropy averages over the ``B`` explained outputs, i.e. it is the
  mean of the per-sample terms already;
- edge size: PyG sums ``sigmoid(mask)`` over *all* edges of the union, which is ``B`` times the
  mean of the per-sample sums: relative to the prediction term the sparsity pressure would grow
  with the batch size;
- edge entropy: PyG averages over all edges of the union, which weights each sample by its edge
  count ``E_b`` instead of by ``1/B``: small subgraphs would be regularised too little.

:class:`BatchedGNNExplainer` replaces PyG's mask regulariser by the mean over samples of the
per-sample regulariser (per-sample size sum and per-sample entropy mean), so the joint loss is
exactly the mean of the ``B`` per-sample GNNExplainer losses and its gradient for each sample's
edges is ``1/B`` times that sample's own. Adam's updates are invariant to that common scale (up
to its epsilon), so the batched fit follows each per-sample fit except for the random mask
initialisation, whose draws (and PyG's init scale, which depends on the node count) differ.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.explain import Explainer as PygExplainer
from torch_geometric.explain.algorithm import GNNExplainer
from torch_geometric.utils import scatter

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GraphCall, Task

from .base import Explainer


class BatchedGNNExplainer(GNNExplainer):
    """PyG's GNNExplainer on a disjoint union, regularised as the mean of per-sample losses.

    ``edge_sample[e]`` is the sample that edge ``e`` of the union belongs to.
    """

    def __init__(self, edge_sample: Tensor, num_samples: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.edge_sample = edge_sample
        self.num_samples = num_samples

    def _add_mask_regularization(
        self, loss: Tensor, mask: Tensor, hard_mask: Tensor, size_coeff: float, reduction_name: str, ent_coeff: float
    ) -> Tensor:
        m = mask[hard_mask].sigmoid()
        sample = self.edge_sample[hard_mask]
        eps = self.coeffs["EPS"]
        ent = -m * torch.log(m + eps) - (1 - m) * torch.log(1 - m + eps)
        size = scatter(m, sample, dim_size=self.num_samples, reduce=reduction_name)
        entropy = scatter(ent, sample, dim_size=self.num_samples, reduce="mean")
        return loss + (size_coeff * size + ent_coeff * entropy).mean()


class _GraphModel(nn.Module):
    """``call.model_fn`` as a module that owns the GNN, so PyG finds its message-passing layers
    to install the edge mask in."""

    def __init__(self, model: nn.Module, call: GraphCall) -> None:
        super().__init__()
        self.model = model
        self.model_fn = call.model_fn

    def forward(self, x: Tensor, edge_index: Tensor, **kwargs: Tensor) -> Tensor:
        return self.model_fn(x, edge_index, **kwargs)


@METHODS.register("gnnexplainer")
class GNNExplainerExplainer(Explainer):
    """Soft edge mask fitted to keep the target class (phenomenon), sigmoid values in ``[0, 1]``.

    Edges outside an output's receptive field get no gradient and score 0 (PyG's hard mask).
    Coefficients are PyG's defaults (``edge_size=0.005``, ``edge_ent=1.0``), pinned here.
    """

    name = "gnnexplainer"
    family = "graph-specific"
    cost_class = "optimisation per sample"
    passes = "{epochs} forward + backward (one joint fit per batch)"
    paper = "Ying et al., GNNExplainer: Generating Explanations for Graph Neural Networks, NeurIPS 2019"
    modalities = frozenset({"graph"})
    description = "GNNExplainer (Ying et al. 2019), PyG, edge mask, one joint fit per batch"

    def __init__(
        self, epochs: int = 100, lr: float = 0.01, edge_size: float = 0.005, edge_ent: float = 1.0, seed: int = 0
    ) -> None:
        super().__init__(epochs=epochs, lr=lr, edge_size=edge_size, edge_ent=edge_ent, seed=seed)

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        call = task.graph_call(model, inputs)
        if call is None:
            raise ValueError(f"gnnexplainer: task {task.name} provides no graph call")
        valid = task.valid_features(inputs)
        sample, slot = call.edge_slot.unbind(dim=1)
        params = dict(self.params)
        seed = params.pop("seed")
        explainer = PygExplainer(
            model=_GraphModel(model, call),
            algorithm=BatchedGNNExplainer(sample, valid.shape[0], **params),
            explanation_type="phenomenon",
            edge_mask_type="object",
            node_mask_type=None,
            model_config=dict(mode="multiclass_classification", task_level=call.task_level, return_type="raw"),
        )
        full_target = targets.new_zeros(int(call.index.max()) + 1)
        full_target[call.index] = targets
        devices = [call.x.device] if call.x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(seed)
            explanation = explainer(call.x, call.edge_index, target=full_target, index=call.index, **call.kwargs)
        attributions = torch.zeros(valid.shape, dtype=explanation.edge_mask.dtype, device=valid.device)
        attributions[sample, slot] = explanation.edge_mask.detach()
        return attributions

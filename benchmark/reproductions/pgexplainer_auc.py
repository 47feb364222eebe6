"""PGExplainer's explanation AUC on BA-Shapes and Tree-Cycles (Luo et al., "Parameterized
Explainer for Graph Neural Network", NeurIPS 2020), on the GNNExplainer Table 1 protocol.

Protocol: everything but the explainer is :mod:`.gnnexplainer_table1`'s (the paper evaluates on
GNNExplainer's setting): the 3-layer concatenating GCN trained per seed by the same recipe, the
explained nodes BA-Shapes 400, 405, ..., 695 and Tree-Cycles 511, 517, ..., 865, each explained
on its 3-hop computation subgraph, ROC AUC pooled over those subgraphs' edges.

Explainer: PyG's :class:`~torch_geometric.explain.algorithm.PGExplainer` itself (not the board's
batched ``pgexplainer``, whose initial mask bias and node-level size coefficient are tuned for the
board), with the paper's hyperparameters per dataset (:data:`HYPERPARAMETERS`): on BA-Shapes as
PyG and the replication by Holdijk et al. (2021) carry them (30 epochs, lr 0.003, size
coefficient 0.05, entropy coefficient 1.0, temperature 5 -> 2, sampling bias 0.01: PyG's
defaults); on Tree-Cycles the authors' ``Tree-Cycles.ipynb`` (flyingdoog/PGExplainer: 20 epochs,
lr 0.003, size 0.0001, entropy 0.01, temperature fixed at 5, no sampling bias). Its MLP reads every
layer's embeddings concatenated, as the authors' ``Explainer`` does (PyG's reads the last layer's
only). As in the paper's code it is trained on
the nodes it then explains, towards the model's own predictions (PyG's ``phenomenon`` with the
predicted class as target). An edge's explanation keeps the mask's order without its
float32 saturation (:class:`UnsaturatedPGExplainer`). PyG's ``train`` takes one Adam step per node
(it refuses several indices); the paper's code sums the nodes' losses into one step per epoch,
which :func:`summed_step` does with PyG's own pieces. With PyG's per-node steps the explainer
was bimodal over seeds (10 measured with the earlier PyG ``GCN(jk="cat")`` model: 4 BA-Shapes
masks inverted, AUC ~.02); see ``summed_step``.

Measured (all 60 nodes): the authors' own trained explainer (their ``gcnexpaliner_syn3``
checkpoint) on the authors' trained GCN and Tree-Cycles graph, scored by this protocol's pooled
AUC, gives .998 (paper .987): the scoring is the authors'; what remains is the training.
Seeds re-train the model and re-initialise the explainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import PGExplainer
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

import xaiboard.tasks  # noqa: F401  (registers the graph tasks)

from .base import REPRODUCTIONS, Measured, Published, Reproduction
from .gnnexplainer_table1 import EdgeScorer, computation_graph, pooled_auc, record, seeded_models

TABLE = "Table 1 (explanation AUC)"
#: the paper's hyperparameters per dataset: BA-Shapes PyG's defaults for the coefficients and the
#: temperature schedule; Tree-Cycles the authors' Tree-Cycles notebook (its temperature is fixed)
HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "BA-Shapes": {"epochs": 30, "lr": 0.003, "edge_size": 0.05, "edge_ent": 1.0, "temp": [5.0, 2.0], "bias": 0.01},
    "Tree-Cycles": {"epochs": 20, "lr": 0.003, "edge_size": 0.0001, "edge_ent": 0.01, "temp": [5.0, 5.0], "bias": 0.0},
}
QUICK_EPOCHS = 2  # explainer epochs; the models' quick size is gnnexplainer_table1's


class UnsaturatedPGExplainer(PGExplainer):
    """PyG's PGExplainer explaining with ``softplus(logit) = -log(1 - sigmoid(logit))`` instead of
    the mask ``sigmoid(logit)``: the same order (AUC depends on nothing else), positive like the
    mask (the pooled AUC scores absolute values), without sigmoid's saturation, which rounds
    confident edges to exactly 1.0 (measured on Tree-Cycles, seed 0: every in-field logit between
    36 and 55, every edge tied at 1.0, AUC .500). Edges outside the node's receptive field keep
    PyG's 0, below every other. Training is PyG's, unchanged (it never calls this)."""

    def _post_process_mask(self, mask: Tensor, hard_mask: Tensor | None = None, apply_sigmoid: bool = False) -> Tensor:
        return super()._post_process_mask(F.softplus(mask), hard_mask, apply_sigmoid=False)

    def _get_embeddings(self, model: nn.Module, x: Tensor, edge_index: Tensor, **kwargs: Any) -> Tensor:
        """Every layer's embeddings concatenated (the paper's code), from :class:`~.gnnexplainer_table1.PaperGCN`."""
        return model.embeddings(x, edge_index)


def trained_explainer(model: nn.Module, data: Data, nodes: Sequence[int], hyper: dict[str, Any], epochs: int | None = None) -> Explainer:
    """PyG's PGExplainer trained on ``nodes``' computation subgraphs with the dataset's
    hyperparameters ``hyper`` (``epochs`` overrides theirs, for the quick size)."""
    epochs = hyper["epochs"] if epochs is None else epochs
    coefficients = {key: value for key, value in hyper.items() if key not in ("epochs", "lr")}
    explainer = Explainer(
        model, UnsaturatedPGExplainer(epochs=epochs, lr=hyper["lr"], **coefficients), explanation_type="phenomenon", edge_mask_type="object",
        model_config={"mode": "multiclass_classification", "task_level": "node", "return_type": "raw"},
    )
    subgraphs = [computation_graph(data, node) for node in nodes]
    targets = [_prediction(model, sub) for sub, _ in subgraphs]
    for epoch in range(epochs):
        summed_step(explainer.algorithm, model, subgraphs, targets, epoch)
    return explainer


def summed_step(algorithm: PGExplainer, model: nn.Module, subgraphs: list[tuple[Data, int]], targets: list[Tensor], epoch: int) -> None:
    """One epoch of the paper's code: one Adam step on the loss summed over every training node.

    Each node's term is PyG's ``PGExplainer.train`` step verbatim (its concrete sample at the
    epoch's temperature, its hard mask of the receptive field, its loss with size and entropy
    regularisers), built from PyG's own helpers (private methods of torch_geometric 2.8); only
    the step is taken once per epoch instead of once per node. Measured on BA-Shapes, seeds 0-4, with
    the earlier PyG ``GCN(jk="cat")`` model:
    PyG's per-node steps give AUC .87, .02, .02, 1.00, .02 (three masks inverted), this schedule
    .96, .99, .99, .99, .99."""
    algorithm.optimizer.zero_grad()
    temperature = algorithm._get_temperature(epoch)
    loss = torch.zeros(())
    for (sub, center), target in zip(subgraphs, targets):
        embeddings = algorithm._get_embeddings(model, sub.x, sub.edge_index)
        mask = algorithm._concrete_sample(algorithm.mlp(algorithm._get_inputs(embeddings, sub.edge_index, center)).view(-1), temperature)
        _, hard = algorithm._get_hard_masks(model, center, sub.edge_index, num_nodes=sub.num_nodes)
        set_masks(model, mask, sub.edge_index, apply_sigmoid=True)
        loss = loss + algorithm._loss(model(sub.x, sub.edge_index)[center], target[center], mask[hard])
        clear_masks(model)
    loss.backward()
    algorithm.optimizer.step()
    algorithm._curr_epoch = epoch


def _prediction(model: nn.Module, sub: Data) -> Tensor:
    """The model's predicted class of every node of ``sub`` (PyG's target is per node)."""
    with torch.no_grad():
        return model(sub.x, sub.edge_index).argmax(dim=-1)


def pgexplainer_scores(model: nn.Module, explainer: Explainer) -> EdgeScorer:
    """The trained explainer's edge mask for a node on its computation subgraph."""
    return lambda sub, center: explainer(sub.x, sub.edge_index, target=_prediction(model, sub), index=center).edge_mask.detach()


@REPRODUCTIONS.register("pgexplainer-auc")
class PGExplainerAUC(Reproduction):
    name = "pgexplainer-auc"
    paper = "Luo et al., Parameterized Explainer for Graph Neural Network, NeurIPS 2020"
    table = TABLE
    data = "BA-Shapes (the board's graph/ba-shapes@1 graph) and Tree-Cycles (the paper code's gen_syn4 graph)"
    model = "GNNExplainer Table 1's 3-layer GCN (the paper code's GcnEncoderNode), trained per seed"
    samples = "BA-Shapes nodes range(400, 700, 5); Tree-Cycles range(511, 871, 6)"
    metric = "ROC AUC of edge scores vs motif edges, pooled over every explained node's 3-hop subgraph"
    published = (
        Published("pgexplainer", "AUC BA-Shapes", TABLE, 0.963, spread=0.011),
        Published("pgexplainer", "AUC Tree-Cycles", TABLE, 0.987, spread=0.007),
    )
    default_seeds = 10
    tolerance = 0.05
    known_gaps = {"pgexplainer": "the scoring is the authors': their own trained explainer (gcnexpaliner_syn3 "
                  "checkpoint) on their trained GCN and Tree-Cycles graph scores .998 on it (all 60 nodes); a gap "
                  "left is the training (PyG's PGExplainer, one summed step per epoch, vs the authors' TensorFlow code: "
                  "gradient values clipped at +-2, a shared BatchNorm in their GCN), seed by seed in the record's values"}

    def measure(self, seeds: Sequence[int], quick: bool, progress: bool, out_dir: Path) -> dict[tuple[str, str], Measured]:
        measured: dict[tuple[str, str], Measured] = {}
        for dataset, data, nodes, model in seeded_models(self.name, seeds, quick, progress, measured):
            explainer = trained_explainer(model, data, nodes, HYPERPARAMETERS[dataset], QUICK_EPOCHS if quick else None)
            record(measured, ("pgexplainer", f"AUC {dataset}"), pooled_auc(pgexplainer_scores(model, explainer), data, nodes))
        return measured

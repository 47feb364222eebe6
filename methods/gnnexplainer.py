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
from torch_geometric.explain.algorithm import ExplainerAlgorithm, GNNExplainer
from torch_geometric.utils import scatter

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GraphCall, Task

from .base import Explainer


class BatchedGNNExplainer(GNNExplainer):
    """PyG's GNNExplainer on a disjoint union, regularised as the mean of per-sample losses.

    ``edge_sample[e]`` is the sample that edge ``e`` of the union belongs to; the mask logits
    start at PyG's random values plus ``init_logit``.
    """

    def __init__(self, edge_sample: Tensor, num_samples: int, init_logit: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.edge_sample = edge_sample
        self.num_samples = num_samples
        self.init_logit = init_logit

    def _initialize_homogeneous_masks(self, *args: Any) -> None:
        """PyG's random logits, shifted by ``init_logit`` (0: PyG's start, every mask near 0.5)."""
        super()._initialize_homogeneous_masks(*args)
        with torch.no_grad():
            self.edge_mask += self.init_logit

    def _add_mask_regularization(
        self, loss: Tensor, mask: Tensor, hard_mask: Tensor, size_coeff: float, reduction_name: str, ent_coeff: float
    ) -> Tensor:
        m = mask[hard_mask].sigmoid()
        eps = self.coeffs["EPS"]
        ent = -m * torch.log(m + eps) - (1 - m) * torch.log(1 - m + eps)
        sample = self.edge_sample[hard_mask]
        return loss + mean_sample_regulariser(m, ent, sample, self.num_samples, size_coeff, ent_coeff, reduction_name)


def mean_sample_regulariser(
    m: Tensor, entropy: Tensor, sample: Tensor, num_samples: int, size_coeff: float, ent_coeff: float, size_reduce: str = "sum"
) -> Tensor:
    """Mean over samples of ``size_coeff * size + ent_coeff * entropy``, each taken per sample.

    ``m`` and ``entropy`` are per edge, ``sample[e]`` is edge ``e``'s sample; a sample's size
    reduces its ``m`` by ``size_reduce`` (PyG: sum), its entropy is the mean over its edges.
    """
    size = scatter(m, sample, dim_size=num_samples, reduce=size_reduce)
    ent = scatter(entropy, sample, dim_size=num_samples, reduce="mean")
    return (size_coeff * size + ent_coeff * ent).mean()


def edge_mask_explainer(model: nn.Module, algorithm: ExplainerAlgorithm, task_level: str) -> PygExplainer:
    """PyG's ``Explainer`` for a phenomenon edge mask (one score per edge, no node mask) of a
    model that returns raw multiclass logits."""
    return PygExplainer(
        model=model,
        algorithm=algorithm,
        explanation_type="phenomenon",
        edge_mask_type="object",
        node_mask_type=None,
        model_config=dict(mode="multiclass_classification", task_level=task_level, return_type="raw"),
    )


class GraphCallModel(nn.Module):
    """``call.model_fn`` as a module that owns the GNN, so PyG finds its message-passing layers
    to install the edge mask in.

    It takes the wrapped model's train/eval mode: PyG's ``Explainer`` puts its model back into
    the mode it found it in, recursively, so a wrapper left in training mode would switch the
    task's model to training mode for every method that runs after this one.
    """

    def __init__(self, model: nn.Module, call: GraphCall) -> None:
        super().__init__()
        self.model = model
        self.model_fn = call.model_fn
        self.train(model.training)

    def forward(self, x: Tensor, edge_index: Tensor, **kwargs: Tensor) -> Tensor:
        return self.model_fn(x, edge_index, **kwargs)


@METHODS.register("gnnexplainer")
class GNNExplainerExplainer(Explainer):
    """Soft edge mask fitted to keep the target class (phenomenon), sigmoid values in ``[0, 1]``.

    Edges outside an output's receptive field get no gradient and score 0 (PyG's hard mask). The
    loss is the cross-entropy of the *target* (the class the harness asks to explain, as for every
    other method), not of the model's prediction as in the original code; on the evaluated
    samples they differ only where the model is wrong.

    One setting for both task levels: masks start near the full graph (``init_logit`` 4: sigmoid
    0.98), ``lr`` 0.05, ``edge_size`` 0.2, ``edge_ent`` 1.0 (PyG's), 100 epochs (PyG's). Why the
    earlier settings scored *below* random (ground-truth AUROC, 64 test samples: BA-Shapes v2 0.46
    with PyG's defaults, start near 0.5, ``lr`` 0.01, ``edge_size`` 0.005; BA-2Motifs v2 0.47 with
    a start near 1, ``lr`` 0.2, ``edge_ent`` 5):

    - the tasks' GINs sum their messages and read a motif only at edge weights near 1 (BA-Shapes
      v2: P(house) is 0.91 on the full graph, 0.04 with every edge at 0.5, 0.05 with the house at
      0.75 and the rest at 0.5, 0.94 with the house alone; Tree-Cycles v2: 0.00 with every edge at
      0.5, 0.03 at 0.9), so from PyG's start the target is lost and the gradient is flat or points
      the wrong way; the same held at the graph level (BA-2Motifs v1 house graphs 0.37);
    - started near the full graph, nothing was pruned: PyG's entropy term is a *mean* over a
      sample's ``E_b`` edges, its size term a *sum*, so at logit ``l`` the entropy pulls each edge
      up by ``edge_ent * l / E_b`` against the size term's ``edge_size``: 0.04 (``E_b`` ~ 100,
      ``l`` 4) against 0.005 (with ``edge_ent`` 5 and BA-2Motifs' ~50 edges: 0.4). Every mask rose
      towards 1 and only the prediction's gradient at the full graph ordered them: Tree-Cycles v2
      0.65 after one epoch, 0.02 after 100 (the cycle edges rose least). An ``edge_size`` above the
      entropy's pull starts the pruning: the edges the prediction does not need fall, the motif is
      held by the prediction term.

    Chosen on 64 *train* samples per task, then measured on 64 test samples (seed 0; BA-Shapes v2
    has 40 test nodes, Tree-Cycles v2 51), earlier settings -> these: BA-Shapes v2 0.46 -> 0.93,
    Tree-Cycles v2 0.60 -> 1.00, BA-2Motifs v2 0.47 -> 0.66 (0.96 on the GIN it has since been
    retrained to, DropEdge outside the motif), Mutagenicity 0.59 -> 0.96 (random:
    0.49-0.52); the archived v1 tasks BA-Shapes 0.93 -> 0.96, Tree-Cycles 0.73 -> 0.76 (its GCN's
    saliency: 0.72), BA-2Motifs 0.73 -> 0.77. Seeds 1 and 2 move none by more than 0.01, and the
    setting holds on GINs retrained with other seeds: BA-Shapes v2 (seed 1) 0.94, previously 0.44;
    BA-2Motifs v2 (seed 2) 0.87, previously 0.51. Two limits were the models', not the fit's:
    on the earlier BA-2Motifs v2 GIN house graphs stayed at 0.48 (bowtie graphs: 0.98), and v1
    cycle graphs stay at 0.36,
    because each model predicts that class on the empty graph, so no edge is needed to keep it and
    the objective has nothing to find. Neighbouring settings agree within 0.05 on the v2 tasks
    (``lr`` 0.05-0.2, ``edge_size`` 0.2-0.5, ``init_logit`` 4-5, 100-200 epochs); ``edge_size``
    0.1 or ``lr`` 0.02 are too weak (train samples: BA-Shapes v2 0.84-0.87, Mutagenicity
    0.72-0.82), and an ``edge_size`` of 0.005 from the same start ranks the cycles last
    (Tree-Cycles v2 0.02).
    """

    name = "gnnexplainer"
    family = "graph-specific"
    cost_class = "optimisation per sample"
    passes = "{epochs} forward + backward (one joint fit per batch)"
    paper = "Ying et al., GNNExplainer: Generating Explanations for Graph Neural Networks, NeurIPS 2019"
    modalities = frozenset({"graph"})
    description = "GNNExplainer (Ying et al. 2019), PyG, edge mask started near the full graph, one joint fit per batch"

    def __init__(
        self,
        epochs: int = 100,
        lr: float = 0.05,
        edge_size: float = 0.2,
        edge_ent: float = 1.0,
        init_logit: float = 4.0,
        seed: int = 0,
    ) -> None:
        super().__init__(epochs=epochs, lr=lr, edge_size=edge_size, edge_ent=edge_ent, init_logit=init_logit, seed=seed)

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        call = task.graph_call(model, inputs)
        if call is None:
            raise ValueError(f"gnnexplainer: task {task.name} provides no graph call")
        valid = task.valid_features(inputs)
        sample, slot = call.edge_slot.unbind(dim=1)
        p = self.params
        algorithm = BatchedGNNExplainer(
            sample, valid.shape[0], init_logit=p["init_logit"], epochs=p["epochs"], lr=p["lr"],
            edge_size=p["edge_size"], edge_ent=p["edge_ent"],
        )
        explainer = edge_mask_explainer(GraphCallModel(model, call), algorithm, call.task_level)
        full_target = targets.new_zeros(int(call.index.max()) + 1)
        full_target[call.index] = targets
        devices = [call.x.device] if call.x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(p["seed"])
            explanation = explainer(call.x, call.edge_index, target=full_target, index=call.index, **call.kwargs)
        attributions = torch.zeros(valid.shape, dtype=explanation.edge_mask.dtype, device=valid.device)
        attributions[sample, slot] = explanation.edge_mask.detach()
        return attributions

"""PGExplainer (Luo et al., 2020) through PyG's ``torch_geometric.explain``: trained once per model.

PGExplainer trains an MLP that maps an edge's endpoint embeddings (node tasks: plus the
explained node's) to a mask logit, on the task's *train* samples, then explains any input in one
forward pass. PyG's :class:`~torch_geometric.explain.algorithm.PGExplainer` trains on one node
per step and refuses several node indices; :class:`BatchedPGExplainer` runs it on xaiboard's
disjoint unions (``Task.graph_call``), with the objective of the original implementation:

- the GNN is wrapped to return only the explained outputs, one row per sample (node tasks: the
  centre nodes), so to PyG a batch is a graph-level model with ``B`` outputs and its prediction
  loss is PyG's cross-entropy, averaged over samples;
- node tasks append each edge's own centre embedding to the MLP input (PyG appends the embedding
  of its single ``index``), and edges outside the centre's receptive field score 0 and are left
  out of the regularisers, as PyG's node-level hard mask does (they are the degree-only edges of
  a ``num_hops + 1`` computation subgraph);
- the size and entropy regularisers are taken per sample and averaged (as in
  :class:`~.gnnexplainer.BatchedGNNExplainer`), so the loss is the mean of the per-sample losses.
  The original (and its reproduction by Holdijk et al., 2021) sums the same per-sample losses
  over all training instances and takes one Adam step per epoch; Adam is invariant to that
  scale, so each epoch here is one step on the union of the train samples, as there.

The training target is the model's own prediction (the original's), so an explanation does not
depend on ``targets``: PGExplainer explains what the model predicts. The explanation is the mask
at the last training temperature, ``sigmoid(logit / temp[1])``: PyG's ``sigmoid(logit)`` rounds
to exactly 1.0 in float32 for confident edges (on tree-cycles every in-field edge tied at 1.0).

Hyperparameters: PyG's defaults (entropy 1.0, temperature 5 -> 2, sampling bias 0.01, 64 hidden
units) with the 30 epochs and lr 0.003 of its documented example (Holdijk et al.'s BA-Shapes
setting but for their 10 epochs), except two, chosen on train samples:

- the MLP's output bias starts at ``init_logit`` 12, so the masks start near the full graph
  (``sigmoid(12 / 5)`` = 0.92 at the first temperature). The tasks' GINs read a motif only at edge
  weights near 1 (BA-2Motifs: P(house) is 0.15 with every edge at 0.5, 0.01 with the house at
  0.75, 0.99 with the house at 1; BA-Shapes v2: P(house) 0.04 with every edge at 0.5, 0.94 with
  the house alone), so a mask started at 0.5 is pushed the wrong way: ground-truth AUROC 0.02 on
  BA-2Motifs and 0.75 on Mutagenicity from a zero bias (first seen on 128 test samples). From 12
  they are 0.96 and 0.84 when trained on 128, 256, 512 or 1,000 train samples; 10 is too close
  to the edge (0.93 with 1,000 train graphs, 0.06 with 256).
- the size coefficient, per task level: graph level PyG's 0.05, node level 0.5. From near the
  full graph the size term must outweigh the entropy term's pull towards 1 (the entropy is a
  mean over a sample's edges, the size a sum; see :mod:`.gnnexplainer`), which on the node tasks'
  75-105-edge subgraphs 0.05 does not: BA-Shapes v2 0.35-0.50 (64 train nodes), nothing pruned.
  Node level, 64 train nodes, BA-Shapes v2 / Tree-Cycles v2: 0.97 / 0.99 with 0.5, 0.95 / 0.99
  with 0.2, 0.97 / 0.99 with 1.0, 0.85 / 0.99 with 2.0; from a zero bias (the previous node
  setting: size 2.0, lr 0.01) 0.80 / 0.97. On 64 test nodes (seed 0; BA-Shapes v2 has 40,
  Tree-Cycles v2 51) BA-Shapes v2 0.76 -> 0.97 and Tree-Cycles v2 0.97 -> 0.99; the archived v1
  tasks (PyG's example protocol: explained nodes inside the houses) stay at 1.00; seeds 1 and 2
  (other train nodes, other MLP initialisation) give the same to 0.01, and a BA-Shapes v2 GIN
  retrained with seed 1 (93.8% test accuracy) scores 0.95 on its test nodes (the previous
  setting: 0.87). At the
  graph level 0.1 or more prune the motifs too (64 train graphs: BA-2Motifs v2 0.43-0.61,
  Mutagenicity 0.20, against 0.88 and 0.80; the committed BA-2Motifs v2 GIN, retrained since
  with DropEdge outside the motif, scores 0.99 on its test graphs). That level is not robust
  across models: on a
  BA-2Motifs v2 GIN retrained with seed 2 (100% test accuracy) the setting here scores 0.38 on
  the test graphs, 0.42 on train graphs where a size of 0.1 gives 0.72; no size (0.05-0.2) or
  ``init_logit`` (8 or 12) tried suits both models and Mutagenicity.

The node-level figures were measured on train samples drawn with seed 0 unless stated, the
graph-level ones on 128 drawn with seed 2 unless stated; they overlap the samples the explainer
trains on, which is how PGExplainer is meant to be used (it is inductive over the train split and
sees no labels and no ground truth).

The trained MLP is cached in memory (per explainer object) and on disk under the cache folder
(written atomically), keyed by ``task.fingerprint(model)`` (the task's code and the model's
parameters), this module's code and the parameters. Robustness metrics that re-explain
perturbed inputs with the same model reuse it. MPRT's randomised models have other parameters,
hence another fingerprint, and PGExplainer is trained anew for each: the explanation of a
randomised model comes from an explainer trained on that model, which is what "the method
applied to another model" means for an amortised method. The cost of the first explanation of a
model includes its training; later ones (and a disk-cache hit) cost one forward.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.explain import Explainer as PygExplainer
from torch_geometric.explain.algorithm import PGExplainer

from xaiboard.benchmark.atomic import atomic_write
from xaiboard.benchmark.paths import cache_dir
from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GraphCall, Task, modules_hash

from . import gnnexplainer
from .base import Explainer
from .gnnexplainer import GraphCallModel, edge_mask_explainer, mean_sample_regulariser


class BatchedPGExplainer(PGExplainer):
    """PyG's PGExplainer on a disjoint union of ``B`` samples (see the module docstring).

    ``bind`` points it at a union before training on it or explaining it.
    """

    def __init__(self, epochs: int, lr: float, **coeffs: Any) -> None:
        super().__init__(epochs=epochs, lr=lr)
        # PyG's __init__ updates the class-level ``coeffs`` dict in place; keep ours per object
        self.coeffs = {**PGExplainer.coeffs, **coeffs}
        self.edge_sample = self.in_field = torch.empty(0, dtype=torch.long)
        self.edge_target: Tensor | None = None
        self.num_samples = 0

    def bind(self, call: GraphCall, in_field: Tensor) -> None:
        """Each edge's sample and (node tasks) centre node; ``in_field``: edges that reach it."""
        self.edge_sample = call.edge_slot[:, 0]
        self.edge_target = call.index[self.edge_sample] if call.task_level == "node" else None
        self.in_field = in_field
        self.num_samples = int(call.index.numel())

    def _get_inputs(self, embedding: Tensor, edge_index: Tensor, index: Any = None) -> Tensor:
        ends = [embedding[edge_index[0]], embedding[edge_index[1]]]
        if self.edge_target is not None:
            ends.append(embedding[self.edge_target])
        return torch.cat(ends, dim=-1)

    def _post_process_mask(self, mask: Tensor, hard_mask: Tensor | None = None, apply_sigmoid: bool = True) -> Tensor:
        return PGExplainer._post_process_mask(mask / self.coeffs["temp"][-1], hard_mask, apply_sigmoid)

    def _add_mask_regularization(self, loss: Tensor, mask: Tensor) -> Tensor:
        m = mask[self.in_field].sigmoid()
        masked = 0.99 * m + 0.005  # PyG's (and the original's) guard against log(0)
        entropy = -masked * masked.log() - (1 - masked) * (1 - masked).log()
        regulariser = mean_sample_regulariser(
            m, entropy, self.edge_sample[self.in_field], self.num_samples,
            self.coeffs["edge_size"], self.coeffs["edge_ent"],
        )
        return loss + regulariser


class _ExplainedOutputs(GraphCallModel):
    """``call.model_fn`` restricted to the explained outputs ``call.index``: ``[B, C]``."""

    def __init__(self, model: nn.Module, call: GraphCall) -> None:
        super().__init__(model, call)
        self.index = call.index

    def forward(self, x: Tensor, edge_index: Tensor, **kwargs: Tensor) -> Tensor:
        return self.model_fn(x, edge_index, **kwargs)[self.index]


@METHODS.register("pgexplainer")
class PGExplainerExplainer(Explainer):
    """Edge mask from an MLP over node embeddings, trained once per (task, model) on train samples.

    ``node_edge_size`` / ``graph_edge_size`` apply to node- / graph-level tasks.
    """

    name = "pgexplainer"
    family = "graph-specific"
    cost_class = "trained per task"
    passes = "1 forward (after {epochs} forward + backward over up to {train_samples} train samples, once per model)"
    paper = "Luo et al., Parameterized Explainer for Graph Neural Network, NeurIPS 2020"
    modalities = frozenset({"graph"})
    description = "PGExplainer (Luo et al. 2020), PyG, edge-mask MLP trained once per model on train samples"

    def __init__(
        self,
        epochs: int = 30,
        train_samples: int = 128,
        lr: float = 0.003,
        edge_ent: float = 1.0,
        temp: tuple[float, float] = (5.0, 2.0),
        bias: float = 0.01,
        init_logit: float = 12.0,
        node_edge_size: float = 0.5,
        graph_edge_size: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__(
            epochs=epochs, train_samples=train_samples, lr=lr, edge_ent=edge_ent, temp=list(temp), bias=bias,
            init_logit=init_logit, node_edge_size=node_edge_size, graph_edge_size=graph_edge_size, seed=seed,
        )
        self._trained: dict[str, dict[str, Tensor]] = {}

    def code_hash(self) -> str:
        """Also covers :mod:`.gnnexplainer`, whose regulariser and PyG set-up this module uses, so
        that editing it invalidates cached MLPs, explanations and results too."""
        blob = super().code_hash() + modules_hash({gnnexplainer})
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        call = task.graph_call(model, inputs)
        if call is None:
            raise ValueError(f"pgexplainer: task {task.name} provides no graph call")
        explainer = self._pyg(model, call)
        explainer.algorithm.mlp.load_state_dict(self._trained_mlp(model, task))
        explainer.algorithm._curr_epoch = self.params["epochs"] - 1
        with torch.no_grad():
            mask = explainer(call.x, call.edge_index, target=targets, **call.kwargs).edge_mask  # target unused
        valid = task.valid_features(inputs)
        attributions = torch.zeros(valid.shape, dtype=mask.dtype, device=valid.device)
        sample, slot = call.edge_slot.unbind(dim=1)
        attributions[sample, slot] = mask.where(explainer.algorithm.in_field, 0.0)
        return attributions

    def _trained_mlp(self, model: nn.Module, task: Task) -> dict[str, Tensor]:
        """The MLP's state for ``model``: from memory, from disk, or trained now and stored."""
        blob = json.dumps([task.name, task.fingerprint(model), self.code_hash()])
        key = hashlib.sha256(blob.encode()).hexdigest()[:20]
        if key not in self._trained:
            path = cache_dir() / "pgexplainer" / task.name.replace("/", "_") / f"{key}.pt"
            self._trained[key] = _load(path) or _save(path, self._train(model, task))
        return self._trained[key]

    def _train(self, model: nn.Module, task: Task) -> dict[str, Tensor]:
        """``epochs`` Adam steps, each over all train samples as one union; the MLP's state."""
        p = self.params
        device = next(model.parameters()).device
        train = task.samples("train", p["train_samples"], seed=p["seed"])
        call = task.graph_call(model, train.inputs.to(device))
        explainer = self._pyg(model, call)
        with torch.no_grad():
            predicted = explainer.model(call.x, call.edge_index, **call.kwargs).argmax(-1)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), warnings.catch_warnings():
            torch.manual_seed(p["seed"])
            explainer.algorithm.reset_parameters()
            with torch.no_grad():
                explainer.algorithm.mlp[-1].bias.fill_(p["init_logit"])
            # PyG returns ``float(loss)`` without detaching it, which torch warns about on every step
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
            for epoch in range(p["epochs"]):
                explainer.algorithm.train(epoch, explainer.model, call.x, call.edge_index, target=predicted, **call.kwargs)
        return {k: v.detach().cpu() for k, v in explainer.algorithm.mlp.state_dict().items()}

    def _pyg(self, model: nn.Module, call: GraphCall) -> PygExplainer:
        """PyG's ``Explainer`` over the explained outputs of ``call``, its algorithm bound to ``call``."""
        p, level = self.params, call.task_level
        algorithm = BatchedPGExplainer(
            p["epochs"], p["lr"], edge_size=p[f"{level}_edge_size"], edge_ent=p["edge_ent"], temp=p["temp"],
            bias=p["bias"],
        ).to(call.x.device)
        if level == "node":
            _, in_field = algorithm._get_hard_masks(model, call.index, call.edge_index, call.x.shape[0])
        else:
            in_field = torch.ones(call.edge_index.shape[1], dtype=torch.bool, device=call.x.device)
        algorithm.bind(call, in_field)
        return edge_mask_explainer(_ExplainedOutputs(model, call), algorithm, "graph")


def _load(path: Path) -> dict[str, Tensor] | None:
    """A stored MLP state, or ``None`` if absent or unreadable (then it is trained again)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
    except (OSError, RuntimeError, EOFError):
        return None


def _save(path: Path, state: dict[str, Tensor]) -> dict[str, Tensor]:
    atomic_write(path, lambda f: torch.save(state, f))
    return state

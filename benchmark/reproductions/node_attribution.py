"""Node attributions for dense molecule batches, as GraphXAI's explainers compute them.

GraphXAI (Agarwal et al., Scientific Data 2023) scores every node of a graph. All its gradient
explainers differentiate the training loss (cross-entropy of the explained class), not a
logit, and reduce a node's per-feature scores by a signed sum; a reproduction of its table has
to do the same, because top-k selection on a signed score picks other nodes than on a logit
gradient or an absolute value. The board's own conventions (logit of the class, Captum's
guided backprop) are given beside them where they differ.

Every explainer maps ``(model, graphs, targets, seed)`` to scores ``[B, N]`` (padding atoms 0) and
runs on the whole batch at once: gradients and integrated gradients through Captum on the dense
node features ``[B, N, 14]`` (adjacency and mask travel as additional arguments, which Captum
repeats with the integration steps); Grad-CAM for graphs exists in no library and is a few
lines of torch over the layers' activations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, IntegratedGradients, Saliency
from torch import Tensor, nn

from xaiboard.tasks.benzene import DenseGIN, DenseGraphs

NodeExplainer = Callable[[DenseGIN, DenseGraphs, Tensor, int], Tensor]
#: GraphXAI's integrated gradients: 40 intervals from the zero baseline, trapezoid rule
#: (41 gradient evaluations), which is Captum's ``riemann_trapezoid`` with 41 points up to scale:
#: Captum's trapezoid weights are 1/(2n), 1/n, ..., 1/(2n) for n points and sum to (n-1)/n, not 1
IG_POINTS = 41
IG_WEIGHT_SUM = (IG_POINTS - 1) / IG_POINTS


class LossOutput(nn.Module):
    """``-log softmax(model(...))``: with Captum's ``target`` = class, the gradient of the
    cross-entropy loss GraphXAI's explainers differentiate."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        return -F.log_softmax(self.model(x, adj, mask), dim=-1)


def _node_sum(attributions: Tensor, graphs: DenseGraphs) -> Tensor:
    """GraphXAI's ``aggregate_node_imp=torch.sum``: a node's score is its features' signed sum."""
    return attributions.sum(dim=-1) * graphs.mask


def _loss_grad(model: DenseGIN, graphs: DenseGraphs, targets: Tensor) -> Tensor:
    """d loss / d x ``[B, N, F]`` through Captum."""
    return Saliency(LossOutput(model)).attribute(graphs.x, target=targets, abs=False, additional_forward_args=(graphs.adj, graphs.mask))


def random_nodes(model: DenseGIN, graphs: DenseGraphs, targets: Tensor, seed: int) -> Tensor:
    """Independent standard normal scores per node (a fresh draw per seed)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(graphs.mask.shape, generator=generator) * graphs.mask


def loss_gradient(model: DenseGIN, graphs: DenseGraphs, targets: Tensor, seed: int) -> Tensor:
    """GraphXAI's ``GradExplainer``: d loss / d x, summed over each node's features."""
    return _node_sum(_loss_grad(model, graphs, targets), graphs)


def loss_gradient_norm(model: DenseGIN, graphs: DenseGraphs, targets: Tensor, seed: int) -> Tensor:
    """d loss / d x reduced per node by its L2 norm instead of a sum: the reduction under which our
    per-graph GEF matches the authors' gradient file (a variant, not their scripts' stated sum)."""
    return _loss_grad(model, graphs, targets).norm(dim=-1) * graphs.mask


def loss_integrated_gradients(model: DenseGIN, graphs: DenseGraphs, targets: Tensor, seed: int) -> Tensor:
    """GraphXAI's ``IntegratedGradExplainer`` on the loss, zero baseline, summed per node."""
    ig = IntegratedGradients(LossOutput(model))
    attributions = ig.attribute(
        graphs.x, baselines=torch.zeros_like(graphs.x), target=targets, additional_forward_args=(graphs.adj, graphs.mask),
        n_steps=IG_POINTS, method="riemann_trapezoid",
    )
    return _node_sum(attributions / IG_WEIGHT_SUM, graphs)


def positive_loss_gradient(model: DenseGIN, graphs: DenseGraphs, targets: Tensor, seed: int) -> Tensor:
    """GraphXAI's ``GuidedBP``: its hooks clip the *parameters'* gradients, which do not reach the
    input, and the input gradient itself; what remains is ``max(d loss / d x, 0)`` summed per node."""
    return _node_sum(_loss_grad(model, graphs, targets).clamp(min=0), graphs)


def guided_backprop(model: DenseGIN, graphs: DenseGraphs, targets: Tensor, seed: int) -> Tensor:
    """Springenberg et al.'s guided backprop (Captum: ReLU backward clipped) on the class logit,
    summed per node: the board's convention."""
    attributions = GuidedBackprop(model).attribute(graphs.x, target=targets, additional_forward_args=(graphs.adj, graphs.mask))
    return _node_sum(attributions, graphs)


def loss_gradcam(model: DenseGIN, graphs: DenseGraphs, targets: Tensor, seed: int) -> Tensor:
    """Grad-CAM for graphs (Pope et al., CVPR 2019), averaged over the three layers as GraphXAI's
    default ``average_variant``: per layer, channel weights = the loss gradient averaged over the
    graph's atoms, a node's score = ReLU(weights . its activations)."""
    activations: list[Tensor] = []
    hooks = [relu.register_forward_hook(lambda _m, _i, out: activations.append(out)) for relu in model.relus]
    try:
        loss = -F.log_softmax(model(graphs.x, graphs.adj, graphs.mask), dim=-1).gather(1, targets[:, None]).sum()
        grads = torch.autograd.grad(loss, activations)
    finally:
        for hook in hooks:
            hook.remove()
    counts = graphs.mask.sum(dim=1, keepdim=True).clamp(min=1)
    cams = [F.relu(((g.sum(dim=1) / counts)[:, None, :] * a).sum(dim=-1)) for g, a in zip(grads, activations)]
    return torch.stack(cams).mean(dim=0).detach() * graphs.mask


#: the paper's explainers by GraphXAI's file stem, in the protocol GraphXAI's scripts run
PAPER_EXPLAINERS: dict[str, NodeExplainer] = {
    "random": random_nodes,
    "gradient": loss_gradient,
    "integrated_gradients": loss_integrated_gradients,
    "gradcam": loss_gradcam,
    "guided_backprop": positive_loss_gradient,
}
#: the board's conventions where they differ from the paper's
BOARD_EXPLAINERS: dict[str, NodeExplainer] = {"guided_backprop": guided_backprop}

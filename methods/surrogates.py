"""Surrogate methods: LIME and KernelSHAP, linear models fitted to the model on random coalitions.

Both switch the task's feature groups (``Task.feature_groups``: superpixels on images, tokens,
edges) on and off through the task's removal operator, score each coalition by the target's
logit (as occlusion does, so that a group's effect is not hidden by softmax saturation), and
fit one linear model per sample in the binary on/off vector ``z``; a group's coefficient is
its score, spread to every feature of the group.

- **LIME** (Ribeiro et al. 2016, as the authors' ``lime`` package does it for images): ``z``
  uniform over coalitions (each group on with probability 1/2) plus the sample itself, weights
  ``sqrt(exp(-d^2 / width^2))`` with ``d`` the cosine distance of ``z`` to all-on, ridge
  regression (``alpha``) with an unpenalised intercept.
- **KernelSHAP** (Lundberg & Lee 2017): coalition sizes drawn from the Shapley kernel
  ``(M - 1) / (s (M - s))``, members uniform given the size, unweighted least squares under
  the efficiency constraint ``sum(phi) = f(all) - f(none)``: Shapley values, exactly for a
  model that is additive in the groups, estimated otherwise.

Why by hand, although Captum has ``Lime`` and ``KernelShap``: Captum fits one example at a
time and perturbs the input tensor element-wise towards a baseline, which cannot send a
review's ``[MASK]`` rows or a graph without its edges as the task builds them. Here the
coalitions of every sample are one ``[B, K, *F]`` stack for the removal engine and the fits one
batched solve; ``tests/test_methods_surrogates.py`` checks both against Captum fed the same
coalitions.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.benchmark.task import Task

from .base import Explainer


class SurrogateExplainer(Explainer):
    """Coalitions -> removal engine -> one linear fit per sample -> group scores on features."""

    family = "surrogate"
    cost_class = "k passes"
    passes = "{n_samples} forward"
    tier = "full"

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        valid = task.valid_features(inputs)
        groups = task.feature_groups(inputs).flatten(1)
        present = group_presence(valid.flatten(1), groups)
        generator = torch.Generator(device=valid.device).manual_seed(self.params["seed"])
        z = self.coalitions(present, generator)
        engine = RemovalEngine(task, model)
        scores = engine.scores(inputs, coalition_keep(z, groups, valid.shape), targets, "logit")
        coefficients = self.fit(z.double(), scores.double(), present, engine, inputs, targets, groups, valid.shape)
        return coefficients.float().gather(1, groups).view(valid.shape).where(valid, 0.0)

    @abstractmethod
    def coalitions(self, present: Tensor, generator: torch.Generator) -> Tensor:
        """``[B, K, G]`` booleans: which groups each coalition keeps (never an absent group)."""

    @abstractmethod
    def fit(self, z: Tensor, scores: Tensor, present: Tensor, engine: RemovalEngine, inputs: Any,
            targets: Tensor, groups: Tensor, shape: torch.Size) -> Tensor:
        """Per-group coefficients ``[B, G]`` (0 on absent groups)."""


def group_presence(valid: Tensor, groups: Tensor) -> Tensor:
    """``[B, G]``: which group ids hold at least one valid feature of the sample."""
    counts = torch.zeros(valid.shape[0], int(groups.max()) + 1, device=valid.device)
    return counts.scatter_add_(1, groups, valid.float()) > 0


def coalition_keep(z: Tensor, groups: Tensor, shape: torch.Size) -> Tensor:
    """Feature keep-masks ``[B, K, *F]`` of group coalitions ``z`` ``[B, K, G]``."""
    index = groups[:, None, :].expand(-1, z.shape[1], -1)
    return z.gather(2, index).view(z.shape[0], z.shape[1], *shape[1:])


def weighted_ridge(x: Tensor, y: Tensor, weights: Tensor, present: Tensor, alpha: float) -> Tensor:
    """Coefficients ``[B, G]`` of ``y ~ x`` per sample, weighted, ridge ``alpha`` on the
    coefficients of present groups, unpenalised intercept (sklearn's ``Ridge``); absent groups
    (all-zero columns) get 0."""
    total = weights.sum(1, keepdim=True)
    x_mean = (weights[..., None] * x).sum(1, keepdim=True) / total[..., None]
    y_mean = (weights * y).sum(1, keepdim=True) / total
    xc, yc = (x - x_mean) * present[:, None, :], y - y_mean
    gram = torch.einsum("bkg,bk,bkh->bgh", xc, weights, xc)
    diagonal = torch.where(present, alpha, 1.0).to(gram.dtype)
    rhs = torch.einsum("bkg,bk,bk->bg", xc, weights, yc)
    return torch.linalg.solve(gram + torch.diag_embed(diagonal), rhs)


@METHODS.register("lime")
class LimeExplainer(SurrogateExplainer):
    """LIME over the task's feature groups: ``n_samples`` coalitions (the first is the sample
    itself), exponential cosine kernel of ``kernel_width``, ridge ``alpha`` (the ``lime``
    package's image defaults: 0.25, 1.0)."""

    name = "lime"
    paper = "Ribeiro, Singh and Guestrin, 'Why Should I Trust You?': Explaining the Predictions of Any Classifier, KDD 2016"
    description = "LIME (Ribeiro et al. 2016) over superpixels/tokens/edges via the task's removal, target logit"

    def __init__(self, n_samples: int = 256, kernel_width: float = 0.25, alpha: float = 1.0, seed: int = 0) -> None:
        super().__init__(n_samples=n_samples, kernel_width=kernel_width, alpha=alpha, seed=seed)

    def coalitions(self, present: Tensor, generator: torch.Generator) -> Tensor:
        shape = (present.shape[0], self.params["n_samples"], present.shape[1])
        z = (torch.rand(shape, generator=generator, device=present.device) < 0.5) & present[:, None, :]
        z[:, 0] = present
        return z

    def fit(self, z, scores, present, engine, inputs, targets, groups, shape) -> Tensor:
        return weighted_ridge(z, scores, self.weights(z, present), present, self.params["alpha"])

    def weights(self, z: Tensor, present: Tensor) -> Tensor:
        """``sqrt(exp(-d^2 / width^2))``, ``d = 1 - cos(z, all-on)`` over the present groups."""
        kept = z.sum(2)
        cosine = kept / (kept.sqrt() * present.sum(1, keepdim=True).sqrt()).clamp_min(1e-12)
        return torch.exp(-((1 - cosine) ** 2) / self.params["kernel_width"] ** 2).sqrt()


@METHODS.register("kernel_shap")
class KernelShapExplainer(SurrogateExplainer):
    """KernelSHAP over the task's feature groups: ``n_samples`` coalitions drawn from the
    Shapley kernel, efficiency-constrained least squares."""

    name = "kernel_shap"
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017"
    description = "KernelSHAP (Lundberg & Lee 2017) over superpixels/tokens/edges via the task's removal, target logit"
    passes = "{n_samples} + 1 forward"

    def __init__(self, n_samples: int = 256, seed: int = 0) -> None:
        super().__init__(n_samples=n_samples, seed=seed)

    def coalitions(self, present: Tensor, generator: torch.Generator) -> Tensor:
        batch, width = present.shape
        members = present.sum(1, keepdim=True).double()
        sizes = torch.arange(1, max(width, 2), device=present.device, dtype=torch.float64)[None, :]
        kernel = torch.where(sizes < members, (members - 1) / (sizes * (members - sizes)), 0.0)
        kernel[:, 0] += (members[:, 0] < 2).double()  # one group: any coalition will do
        size = torch.multinomial(kernel, self.params["n_samples"], replacement=True, generator=generator) + 1
        draw = torch.rand(batch, self.params["n_samples"], width, generator=generator, device=present.device)
        rank = draw.masked_fill(~present[:, None, :], 2.0).argsort(dim=2).argsort(dim=2)
        return rank < size[..., None]

    def fit(self, z, scores, present, engine, inputs, targets, groups, shape) -> Tensor:
        full = engine.full(inputs, targets, "logit").double()
        none = engine.scores(inputs, torch.zeros(shape[0], 1, *shape[1:], dtype=torch.bool, device=z.device), targets, "logit")
        empty = none[:, 0].double()
        return efficient_least_squares(z, scores - empty[:, None], full - empty, present)


def efficient_least_squares(z: Tensor, y: Tensor, total: Tensor, present: Tensor) -> Tensor:
    """``argmin |z phi - y|^2`` subject to ``sum(phi) = total`` per sample, ``phi = 0`` on absent
    groups: the KKT system ``[[Z'Z, 1], [1', 0]] [phi, lambda] = [Z'y, total]``, solved batched.

    A ridge of ``1e-9`` times the Gram diagonal's mean keeps the system regular when some
    coalition pattern was never drawn; it moves an exact solution by about that relative amount.
    """
    batch, width = present.shape
    mask = present.to(z.dtype)
    gram = torch.einsum("bkg,bkh->bgh", z, z) * mask[:, :, None] * mask[:, None, :]
    scale = gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1.0)
    gram = gram + torch.diag_embed(torch.where(present, 1e-9 * scale[:, None], 1.0))
    system = z.new_zeros(batch, width + 1, width + 1)
    system[:, :width, :width] = gram
    system[:, :width, width] = mask
    system[:, width, :width] = mask
    rhs = torch.cat([torch.einsum("bkg,bk->bg", z, y) * mask, total[:, None]], dim=1)
    return torch.linalg.solve(system, rhs)[:, :width]

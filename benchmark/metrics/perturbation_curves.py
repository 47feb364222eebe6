"""Faithfulness by perturbation curves: deletion (MoRF) and insertion AUC.

If an attribution ranks features by how much the model relies on them, removing the top-ranked
features first should make the target score collapse quickly (deletion), and restoring them
first onto a fully removed input should make it recover quickly (insertion). Both curves are
sampled on the same grid of removed fractions ``t = 0, 1/S, ..., 1`` and summarised by their
trapezoidal area over ``t in [0, 1]``.

References: Samek et al., "Evaluating the visualization of what a deep neural network has
learned", IEEE TNNLS 2017 (MoRF region perturbation); Petsiuk et al., "RISE: Randomized Input
Sampling for Explanation of Black-box Models", BMVC 2018 (deletion and insertion games).

Only valid feature slots are ranked and counted: a sample with ``n`` valid features removes
``round(t * n)`` of them at fraction ``t`` (round half to even, as ``torch.round``). Ties in the
attribution are broken by feature index (stable sort), so curves are deterministic.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS
from ..removal import Output, RemovalEngine

Mode = Literal["deletion", "insertion"]


def feature_ranks(explanation: Tensor, valid: Tensor) -> Tensor:
    """Rank ``[B, N]`` of every flattened feature: 0 = highest attribution.

    Valid features take ranks ``0 .. n_valid - 1`` (descending attribution, ties by index);
    padding slots rank after all of them, so no prefix of the order ever touches padding.
    """
    scores = explanation.flatten(1).masked_fill(~valid.flatten(1), float("-inf"))
    order = scores.sort(dim=1, descending=True, stable=True).indices
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def keep_masks(explanation: Tensor, valid: Tensor, steps: int, mode: Mode) -> Tensor:
    """Bool keep-masks ``[B, steps + 1, *F]``, one per removed fraction ``t = s / steps``.

    Step ``s`` covers the top ``round(s / steps * n_valid)`` features of each sample: deletion
    keeps everything else, insertion keeps exactly those.
    """
    ranks = feature_ranks(explanation, valid)
    n_valid = valid.flatten(1).sum(dim=1, dtype=torch.float64)
    fractions = torch.arange(steps + 1, dtype=torch.float64, device=ranks.device) / steps
    covered = torch.round(fractions[None, :] * n_valid[:, None]).long()
    top = ranks[:, None, :] < covered[:, :, None]
    keep = ~top if mode == "deletion" else top
    return keep.view(keep.shape[0], steps + 1, *explanation.shape[1:])


def perturbation_curve(
    engine: RemovalEngine,
    inputs: Any,
    targets: Tensor,
    explanation: Tensor,
    valid: Tensor,
    steps: int = 20,
    mode: Mode = "deletion",
    output: Output = "prob",
) -> Tensor:
    """Target scores ``[B, steps + 1]`` along the deletion or insertion path.

    All ``steps + 1`` keep-masks go through the removal engine as one stack, so the model runs
    in large chunks instead of once per step.
    """
    return engine.scores(inputs, keep_masks(explanation, valid, steps, mode), targets, output)


def curve_auc(curve: Tensor) -> Tensor:
    """Trapezoidal area ``[B]`` under curves ``[B, S + 1]`` sampled evenly on ``t in [0, 1]``."""
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


class PerturbationAUC(Metric):
    """Area under the deletion or insertion curve; subclasses fix ``mode`` and ``direction``.

    ``value_range`` is that of the default ``output="prob"``; logits are unbounded.
    """

    mode: Mode
    family = "faithfulness"
    value_range = (0.0, 1.0)
    reference = (
        "Samek et al., Evaluating the visualization of what a deep neural network has learned, "
        "IEEE TNNLS 2017; Petsiuk et al., RISE, BMVC 2018"
    )
    defaults = {"steps": 20, "output": "prob"}

    def compute(self, ctx: MetricContext) -> Tensor:
        curve = perturbation_curve(
            ctx.engine,
            ctx.batch.inputs,
            ctx.batch.targets,
            ctx.explanation,
            ctx.batch.valid,
            steps=self.params["steps"],
            mode=self.mode,
            output=self.params["output"],
        )
        return curve_auc(curve)


@METRICS.register("deletion_auc")
class DeletionAUC(PerturbationAUC):
    """Deletion AUC: area under the target score as the top-attributed features are removed.

    ``AUC = int_0^1 f(x with the top round(t n) features removed) dt`` (trapezoidal on
    ``S = steps`` intervals). Lower is better: a faithful ranking destroys the prediction early.
    The curve equals ``quantus.PixelFlipping``'s (which omits ``t = 0``) when its step is ``n / S``
    features; Quantus's AUC is not comparable (it integrates over step indices from ``t = 1/S``).
    """

    name = "deletion_auc"
    mode = "deletion"
    direction = "lower"


@METRICS.register("insertion_auc")
class InsertionAUC(PerturbationAUC):
    """Insertion AUC: area under the target score as the top-attributed features are restored.

    Starts from the fully removed input (``t = 0``) and restores features in the deletion order,
    so ``insertion(t)`` keeps exactly the features deletion has removed at ``t``; the end points
    swap (``insertion(0) == deletion(1)``, ``insertion(1) == deletion(0)``). Higher is better.
    Quantus has no insertion metric; the tests check it against ``quantus.PixelFlipping`` run
    from the fully removed input with a perturbation that writes the original values back.
    """

    name = "insertion_auc"
    mode = "insertion"
    direction = "higher"

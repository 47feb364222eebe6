"""Faithfulness by perturbation curves: deletion (MoRF), insertion AUC, and ABPC.

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

The path normally removes the most relevant features first (MoRF); ``order="lerf"`` walks it
least relevant first, which ABPC needs (Schulz et al., "Restricting the Flow: Information
Bottlenecks for Attribution", ICLR 2020).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS
from ..removal import Output, RemovalEngine

Mode = Literal["deletion", "insertion"]
Order = Literal["morf", "lerf"]


def feature_ranks(explanation: Tensor, valid: Tensor) -> Tensor:
    """Rank ``[B, N]`` of every flattened feature: 0 = highest attribution.

    Valid features take ranks ``0 .. n_valid - 1`` (descending attribution, ties by index);
    padding slots rank after all of them, so no prefix of the order ever touches padding.
    """
    scores = explanation.flatten(1).masked_fill(~valid.flatten(1), float("-inf"))
    order = scores.sort(dim=1, descending=True, stable=True).indices
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def keep_masks(explanation: Tensor, valid: Tensor, steps: int, mode: Mode, order: Order = "morf") -> Tensor:
    """Bool keep-masks ``[B, steps + 1, *F]``, one per removed fraction ``t = s / steps``.

    Step ``s`` covers the first ``round(s / steps * n_valid)`` features of each sample in the
    given order (``morf``: highest attribution first; ``lerf``: lowest first, ties still by
    index): deletion keeps everything else, insertion keeps exactly those.
    """
    ranks = feature_ranks(explanation if order == "morf" else -explanation, valid)
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
    order: Order = "morf",
) -> Tensor:
    """Target scores ``[B, steps + 1]`` along the deletion or insertion path.

    All ``steps + 1`` keep-masks go through the removal engine as one stack, so the model runs
    in large chunks instead of once per step.
    """
    return engine.scores(inputs, keep_masks(explanation, valid, steps, mode, order), targets, output)


def curve_auc(curve: Tensor) -> Tensor:
    """Trapezoidal area ``[B]`` under curves ``[B, S + 1]`` sampled evenly on ``t in [0, 1]``."""
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


def context_curve(ctx: MetricContext, params: dict[str, Any], mode: Mode, order: Order = "morf") -> Tensor:
    """The batch's curve ``[B, steps + 1]`` for a metric's pinned ``steps`` and ``output``, computed
    once per (task, method): ``deletion_auc`` and ``abpc`` walk the same MoRF deletion curve.

    Only identical curves are shared. Insertion is not LeRF deletion read backwards: ties keep
    index order in both walks, ``n - round(t n) != round((1 - t) n)`` at half-integers, and
    insertion drops the padding slots that deletion keeps.
    """
    key = ("perturbation_curve", mode, order, params["steps"], params["output"])
    return ctx.shared(
        key,
        lambda: perturbation_curve(
            ctx.engine,
            ctx.batch.inputs,
            ctx.batch.targets,
            ctx.explanation,
            ctx.batch.valid,
            steps=params["steps"],
            mode=mode,
            output=params["output"],
            order=order,
        ),
    )


def context_auc(ctx: MetricContext, params: dict[str, Any], mode: Mode, order: Order = "morf") -> Tensor:
    """Curve area ``[B]`` for a metric's batch, with its pinned ``steps`` and ``output``."""
    return curve_auc(context_curve(ctx, params, mode, order))


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
        return context_auc(ctx, self.params, self.mode)


@METRICS.register("deletion_auc")
class DeletionAUC(PerturbationAUC):
    """Deletion AUC: area under the target score as the top-attributed features are removed.

    ``AUC = int_0^1 f(x with the top round(t n) features removed) dt`` (trapezoidal on
    ``S = steps`` intervals). Lower is better: a faithful ranking destroys the prediction early.
    The curve equals ``quantus.PixelFlipping``'s (which omits ``t = 0``) when its step is ``n / S``
    features; Quantus's AUC is not comparable (it integrates over step indices from ``t = 1/S``).
    """

    name = "deletion_auc"
    checked_against = "quantus.PixelFlipping curve (features_in_step = n/steps; 1e-5)"
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
    checked_against = "quantus.PixelFlipping run from the removed input, restoring original values (1e-5)"
    mode = "insertion"
    direction = "higher"


@METRICS.register("abpc")
class ABPC(Metric):
    """Area between the perturbation curves: ``AUC(LeRF deletion) - AUC(MoRF deletion)``.

    Both curves delete features on the same grid ``t = 0, 1/S, ..., 1`` (``S = steps``) and
    share their end points (full input, fully removed input); MoRF removes the highest-attributed
    features first, LeRF the lowest first. A faithful ranking makes the score collapse early
    under MoRF and late under LeRF, so higher is better; a reversed ranking is negative and a
    ranking that carries no information is ~0. Unlike deletion AUC alone, ABPC does not reward
    an attribution for a model whose score drops under any removal.

    The paper removes 8x8 tiles of an image; here the features are the task's own (pixels,
    tokens, edges) and removal is the task's operator, as for ``deletion_auc``, whose curve the
    MoRF half reuses (:func:`context_curve`). ``value_range`` is that of the default
    ``output="prob"``.
    """

    name = "abpc"
    family = "faithfulness"
    direction = "higher"
    value_range = (-1.0, 1.0)
    reference = "Schulz et al., Restricting the Flow: Information Bottlenecks for Attribution, ICLR 2020"
    checked_against = "quantus.RegionPerturbation (order=lerf and morf, patch_size=1; 1e-5)"
    defaults = {"steps": 20, "output": "prob"}

    def compute(self, ctx: MetricContext) -> Tensor:
        return context_auc(ctx, self.params, "deletion", "lerf") - context_auc(ctx, self.params, "deletion")

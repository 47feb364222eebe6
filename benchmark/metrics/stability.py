"""Robustness: explanation change relative to the change of the input or of the model's output.

Sensitivity (``sensitivity.py``) asks how far an explanation moves under noise; these metrics
divide that by how far the noise moved the input (local Lipschitz estimate, Alvarez-Melis &
Jaakkola 2018; relative input stability, Agarwal et al. 2022) or the logits (relative output
stability, Agarwal et al. 2022), so an explanation may change as much as what it explains did.
They read the same shared noisy re-explanations as max-sensitivity (``perturbed_explanations``),
so they cost a few norms on top of it, not another ``n_samples`` explainer calls.

The input distance is taken in the task's continuous input space, the one ``Task.perturb``
adds noise to, as the task exposes it (``Task.continuous_input``): pixels, the valid word
tokens' embeddings, node features grouped per sample.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS
from .sensitivity import (
    Reexplained,
    masked_frobenius,
    maybe_normalise,
    perturbed_explanations,
)

#: Quantus' ``lipschitz_constant`` adds this to the input distance
LIPSCHITZ_EPS = 1e-10


def grouped_norm(rows: Tensor, sample: Tensor, batch_size: int) -> Tensor:
    """Euclidean norm ``[B]`` of each sample's rows (``rows [N, ...]``, ``sample [N]``)."""
    squares = rows.pow(2).flatten(1).sum(dim=1)
    return torch.zeros(batch_size, dtype=rows.dtype, device=rows.device).index_add(0, sample, squares).sqrt()


def relative_change(before: Tensor, after: Tensor, eps: float) -> Tensor:
    """``(before - after) / before``, with ``eps`` in place of exact zeros of ``before`` (Quantus)."""
    return (before - after) / (before + (before == 0) * eps)


def clamp_zero(norms: Tensor, eps: float) -> Tensor:
    """``eps`` in place of exact zeros (Quantus' guard of the stability denominators)."""
    return norms + (norms == 0) * eps


def max_where(values: Tensor, keep: Tensor) -> Tensor:
    """Row maximum ``[B]`` of ``values [B, n]`` over the kept entries; NaN where none is kept."""
    best = values.masked_fill(~keep, float("-inf")).amax(dim=1)
    return torch.where(keep.any(dim=1), best, torch.full_like(best, float("nan")))


def input_distances(ctx: MetricContext, shared: Reexplained, relative: bool, eps: float = 0.0) -> Tensor:
    """``||x - x_i||`` (or ``||(x - x_i) / x||`` if ``relative``) ``[n, B]`` in the continuous input space."""
    rows, sample = ctx.task.continuous_input(ctx.model, ctx.batch.inputs)
    distances = []
    for noisy in shared.noisy:
        moved, _ = ctx.task.continuous_input(ctx.model, noisy)
        change = relative_change(rows, moved, eps) if relative else rows - moved
        distances.append(grouped_norm(change, sample, len(ctx.batch)))
    return torch.stack(distances)


class Stability(Metric):
    """Shared by the three: the noise, defaults and NaN handling; subclasses give the ratio."""

    family = "robustness"
    direction = "lower"
    value_range = (0.0, float("inf"))
    needs_explainer = True
    defaults = {"n_samples": 10, "radius": 0.2, "eps_min": 1e-6}

    def compute(self, ctx: MetricContext) -> Tensor:
        shared = perturbed_explanations(ctx, self.params["n_samples"], self.params["radius"])
        return self.score(ctx, shared)

    @abstractmethod
    def score(self, ctx: MetricContext, shared: Reexplained) -> Tensor:
        """Per-sample scores ``[B]`` from the shared re-explanations."""


def relative_stability(ctx: MetricContext, shared: Reexplained, denominators: Tensor, eps: float) -> Tensor:
    """``max_i ||(e(x) - e(x_i)) / e(x)|| / clamp(denominator_i)`` over the noises that keep the
    predicted class (``denominators [n, B]``); NaN where every noise flips the prediction."""
    change = relative_change(ctx.explanation, shared.explanations, eps)
    ratios = masked_frobenius(change, ctx.batch.valid) / clamp_zero(denominators, eps)
    same_class = shared.logits.argmax(dim=-1) == shared.clean_logits.argmax(dim=-1)
    return max_where(ratios.T, same_class.T)


@METRICS.register("local_lipschitz")
class LocalLipschitz(Stability):
    """Local Lipschitz estimate: ``max_i ||e(x) - e(x + d_i)||_2 / ||d_i||_2``.

    Alvarez-Melis & Jaakkola's empirical local Lipschitz constant over ``n_samples`` noisy
    neighbours; computed as Quantus' ``LocalLipschitzEstimate`` (Euclidean norms on both sides,
    ``1e-10`` added to the input distance, every neighbour counted, per-sample
    ``normalise_by_max`` of both explanations by default, as Quantus' ``normalise=True``).
    Deliberate differences: the neighbours are the shared uniform noises in ``[-radius, radius]``
    of max-sensitivity instead of Quantus' Gaussian ``std = 0.1`` (uniform ``0.2`` has std
    ``0.115``), so no extra explainer calls; the input distance is in the continuous input space
    (module docstring), and explanations count over valid features only. Lower is better: 0 for
    an explainer that ignores its input; ``|w|`` for input x gradient on a linear model whose
    target weights all equal ``w`` (normalise off). Defined on every modality.
    """

    name = "local_lipschitz"
    reference = "Alvarez-Melis & Jaakkola, On the Robustness of Interpretability Methods, arXiv:1806.08049, 2018"
    checked_against = "quantus.LocalLipschitzEstimate (same noisy inputs, 1e-5)"
    deviation = (
        "shared uniform noise in [-0.2, 0.2] instead of Quantus's Gaussian std 0.1, so all robustness metrics"
        " use one set of re-explanations"
    )
    defaults = {"n_samples": 10, "radius": 0.2, "normalise": True}

    def score(self, ctx: MetricContext, shared: Reexplained) -> Tensor:
        valid, normalise = ctx.batch.valid, self.params["normalise"]
        reference, perturbed = (maybe_normalise(e, valid, normalise) for e in (ctx.explanation, shared.explanations))
        moved = masked_frobenius(perturbed - reference, valid)
        return (moved / (input_distances(ctx, shared, relative=False) + LIPSCHITZ_EPS)).amax(dim=0)


@METRICS.register("relative_input_stability")
class RelativeInputStability(Stability):
    """Relative input stability (RIS): ``max ||(e(x) - e(x')) / e(x)||_2 / max(||(x - x') / x||_2, eps_min)``
    over neighbours ``x'`` that keep the predicted class.

    Agarwal et al. 2022, computed as Quantus' ``RelativeInputStability``: relative changes with
    ``eps_min`` in place of exact zeros of ``e(x)`` and ``x``, and ``eps_min`` in place of a zero
    denominator. Deliberate differences: a neighbour that flips the prediction is left out of the
    maximum, as in the paper's definition, where Quantus sets its ratio to NaN and ``np.max`` then
    returns NaN for the whole sample (here NaN only when every neighbour flips); the neighbours are
    the shared uniform noises in ``[-radius, radius]`` (Quantus: uniform in ``[0.02, 0.2]``, a
    one-sided shift); the input is the continuous input space (module docstring). Exact zeros
    of ``x`` (black pixels) make ``||(x - x') / x||`` huge and the score small, as in Quantus.
    Lower is better. Defined on every modality.
    """

    name = "relative_input_stability"
    reference = "Agarwal et al., Rethinking Stability for Attribution-based Explanations, arXiv:2203.06877, 2022"
    checked_against = "quantus.RelativeInputStability objective (same noisy inputs, 1e-5)"
    deviation = (
        "neighbours that flip the prediction are left out (Agarwal et al.'s definition; Quantus NaNs the "
        "whole sample); shared symmetric noise instead of Quantus's one-sided [0.02, 0.2]"
    )

    def score(self, ctx: MetricContext, shared: Reexplained) -> Tensor:
        eps = self.params["eps_min"]
        return relative_stability(ctx, shared, input_distances(ctx, shared, relative=True, eps=eps), eps)


@METRICS.register("relative_output_stability")
class RelativeOutputStability(Stability):
    """Relative output stability (ROS): ``max ||(e(x) - e(x')) / e(x)||_2 / max(||h(x) - h(x')||_2, eps_min)``
    with ``h`` the logits, over neighbours ``x'`` that keep the predicted class.

    Agarwal et al. 2022, computed as Quantus' ``RelativeOutputStability`` (logits, ``eps_min``
    guards as in RIS), with the same deliberate differences as ``relative_input_stability``
    (flipped neighbours left out instead of NaN-ing the sample; shared symmetric noise). It
    needs no input distance, so it compares modalities more evenly than RIS. Lower is better.
    Defined on every modality.
    """

    name = "relative_output_stability"
    reference = "Agarwal et al., Rethinking Stability for Attribution-based Explanations, arXiv:2203.06877, 2022"
    checked_against = "quantus.RelativeOutputStability objective (same noisy inputs, 1e-5)"
    deviation = (
        "as relative_input_stability: flipped neighbours left out, shared symmetric noise"
    )

    def score(self, ctx: MetricContext, shared: Reexplained) -> Tensor:
        logit_change = (shared.logits - shared.clean_logits).norm(dim=-1)
        return relative_stability(ctx, shared, logit_change, self.params["eps_min"])

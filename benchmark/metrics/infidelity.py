"""Faithfulness: explanation infidelity under random feature removal.

Infidelity asks whether the attribution predicts what the model does when features go
missing: for a random perturbation ``I``, the attributions' dot product with ``I`` should equal
the drop of the output, ``f(x) - f(x - I)``. The score is the expected squared miss,

    INFD(phi, f, x) = E_I[(I^T phi - (f(x) - f(x - I)))^2].

Reference: Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019;
computed as ``captum.metrics.infidelity``.

Here ``I`` is the removal of a random subset of features by the task's own missingness model:
``x - I`` is ``x`` with those features removed, and ``I`` in feature space is the 0/1 indicator of
the removed features. So ``I^T phi`` is the sum of the removed features' attributions, and an
attribution is read as the feature's whole contribution (a "global" attribution in Captum's
words, like input x gradient or occlusion), which makes the metric work for pixels, tokens and
edges alike. Yeh et al. write perturbations in input space with gradient-like ``phi``; for zero
removal their ``I = x * (1 - keep)`` with ``phi / x`` gives the same number (tested).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS
from ..removal import RemovalEngine

#: generator salt of the perturbation masks (its own stream, apart from other metrics' noise)
INFIDELITY_SALT = 211


def random_keep_masks(valid: Tensor, n: int, keep_prob: float, generator: torch.Generator) -> Tensor:
    """Bool ``[B, n, *F]``: each valid feature kept with probability ``keep_prob``; padding kept."""
    draws = torch.rand((valid.shape[0], n, *valid.shape[1:]), generator=generator, device=valid.device)
    return (draws < keep_prob) | ~valid[:, None]


def removal_drops(engine: RemovalEngine, inputs: Any, targets: Tensor, keep: Tensor) -> Tensor:
    """``f(x) - f(x - I)`` ``[B, n]`` on the target logit, all masks through the engine at once."""
    full = engine.full(inputs, targets, output="logit")
    return full[:, None] - engine.scores(inputs, keep, targets, output="logit")


def predicted_drops(explanation: Tensor, keep: Tensor) -> Tensor:
    """``I^T phi`` ``[B, n]``: the summed attribution of the features each mask removes."""
    removed = (~keep).flatten(2).to(explanation.dtype)
    return torch.einsum("bnf,bf->bn", removed, explanation.flatten(1))


def optimal_scale(predicted: Tensor, actual: Tensor) -> Tensor:
    """``beta = argmin_b sum_I (b a_I - d_I)^2 = <a, d> / <a, a>`` ``[B]`` (0 where ``a = 0``,
    which gives the same value as Captum's ``safe_div``)."""
    energy = predicted.pow(2).sum(dim=1)
    safe = torch.where(energy > 0, energy, torch.ones_like(energy))
    return (predicted * actual).sum(dim=1) / safe


def infidelity_score(predicted: Tensor, actual: Tensor, normalise: bool) -> Tensor:
    """Mean squared miss ``[B]`` over the perturbations; ``normalise`` first rescales the
    attributions by ``optimal_scale`` (Captum's ``normalize=True``), so only their shape counts."""
    if normalise:
        predicted = predicted * optimal_scale(predicted, actual)[:, None]
    return (predicted - actual).pow(2).mean(dim=1)


def shared_perturbations(ctx: MetricContext, n: int, keep_prob: float) -> tuple[Tensor, Tensor]:
    """Keep-masks ``[B, n, *F]`` and logit drops ``[B, n]`` for ``ctx``'s batch, computed once.

    The drops ``f(x) - f(x - I)`` depend on the task, model, batch and seed, never on the
    explanation, so every method on a task (and both variants) can share one set of ``B * n``
    forwards instead of paying for it per (method, variant): they go into the context's per-task
    memo, which the runner shares between the pairs of one task.
    """

    def compute() -> tuple[Tensor, Tensor]:
        keep = random_keep_masks(ctx.batch.valid, n, keep_prob, ctx.generator(INFIDELITY_SALT))
        return keep, removal_drops(ctx.engine, ctx.batch.inputs, ctx.batch.targets, keep)

    return ctx.shared(("infidelity-perturbations", n, keep_prob), compute, per_task=True)


class Infidelity(Metric):
    """Infidelity with ``n_perturbations`` random removals per sample; subclasses fix ``normalise``.

    Each valid feature is kept with probability ``keep_prob`` (padding never counts), the masks
    are drawn from ``ctx.generator(INFIDELITY_SALT)`` (the same draws for both variants, so
    ``infidelity <= infidelity_raw`` per sample) and go through the removal engine as one
    ``[B, n, *F]`` stack, computed once per batch and shared by all methods
    (``shared_perturbations``), since they do not depend on the explanation.
    The output is the target *logit*, as in Yeh et al. and Captum's examples: attributions of
    gradient methods are additive in logit space, and a softmax saturates the drops.
    Lower is better, 0 when the summed attributions predict every drop exactly (e.g. input x
    gradient on a linear model with zero removal). Defined for every modality, since the
    perturbation is the task's own removal operator.
    """

    normalise: bool
    family = "faithfulness"
    direction = "lower"
    value_range = (0.0, float("inf"))
    reference = "Yeh et al., On the (In)fidelity and Sensitivity of Explanations, NeurIPS 2019"
    defaults = {"n_perturbations": 32, "keep_prob": 0.75}

    def compute(self, ctx: MetricContext) -> Tensor:
        keep, actual = shared_perturbations(ctx, self.params["n_perturbations"], self.params["keep_prob"])
        return infidelity_score(predicted_drops(ctx.explanation, keep), actual, self.normalise)


@METRICS.register("infidelity")
class NormalisedInfidelity(Infidelity):
    """Infidelity after rescaling the attributions by the optimal scalar ``beta`` (Captum's
    ``infidelity(normalize=True)``): invariant to the attributions' scale, so methods whose
    scores are only proportional to contributions (saliency-like) are not penalised for it."""

    name = "infidelity"
    checked_against = "captum.metrics.infidelity(normalize=True), same perturbations (1e-5)"
    deviation = (
        "perturbations are removals of random feature subsets by the task's operator (modality-agnostic); "
        "equals Yeh et al.'s input-space form for zero removal (tested)"
    )
    normalise = True


@METRICS.register("infidelity_raw")
class RawInfidelity(Infidelity):
    """Infidelity of the attributions as given (Captum's ``infidelity(normalize=False)``, Yeh
    et al.'s definition): the attributions must match the logit drops in scale too."""

    name = "infidelity_raw"
    checked_against = "captum.metrics.infidelity(normalize=False), same perturbations (1e-5)"
    deviation = (
        "as infidelity, without the scale normalisation"
    )
    normalise = False

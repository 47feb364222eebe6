"""Robustness: how much an explanation changes under small input perturbations.

Max- and avg-sensitivity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations",
NeurIPS 2019; as Quantus' ``MaxSensitivity`` / ``AvgSensitivity``, Hedström et al., JMLR 2023).

Every robustness metric re-runs the explainer on the same noisy copies of the batch, and
re-explaining is their whole cost (an occlusion explanation is hundreds of forwards), so the
noisy inputs, their explanations and their logits are computed once per (task, method, batch)
and shared: ``perturbed_explanations``. The stability metrics (``stability.py``) read them too.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS


def masked_frobenius(values: Tensor, valid: Tensor) -> Tensor:
    """Frobenius norm over the valid feature slots only: ``values [..., B, *F]`` -> ``[..., B]``."""
    return values.masked_fill(~valid, 0.0).flatten(values.dim() - valid.dim() + 1).norm(dim=-1)


def normalise_by_max(explanation: Tensor, valid: Tensor) -> Tensor:
    """Each explanation ``[..., B, *F]`` divided by its largest absolute valid value (all-zero
    explanations unchanged).

    Per sample, as Quantus' ``normalise_by_max`` with ``normalise_axes`` = the feature axes
    (Quantus' default axes take one maximum over the whole batch).
    """
    peak = explanation.abs().masked_fill(~valid, 0.0).flatten(explanation.dim() - valid.dim() + 1).amax(dim=-1)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return explanation / peak.view(*peak.shape, *([1] * (valid.dim() - 1)))


def maybe_normalise(explanation: Tensor, valid: Tensor, normalise: bool) -> Tensor:
    """``normalise_by_max`` if the metric's ``normalise`` parameter asks for it."""
    return normalise_by_max(explanation, valid) if normalise else explanation


@dataclass
class Reexplained:
    """``n`` noisy copies of one batch (``Task.perturb``), their explanations and logits.

    ``noisy[i]`` is the batch perturbed with ``ctx.generator(i)``; ``explanations`` is
    ``[n, B, *F]``, ``logits`` ``[n, B, C]`` and ``clean_logits`` ``[B, C]`` (the unperturbed batch).
    """

    noisy: list[Any]
    explanations: Tensor
    logits: Tensor
    clean_logits: Tensor


def perturbed_explanations(ctx: MetricContext, n_samples: int, radius: float) -> Reexplained:
    """The batch's noisy copies, re-explained, computed once for all robustness metrics.

    The runner gives every metric of a (task, method) pair the same context, so the result
    lives in that context's memo, keyed by ``n_samples`` and ``radius``. Noise ``i`` comes from
    ``ctx.generator(i)`` and the explainer runs in order ``i = 0..n-1`` before any other work,
    as max-sensitivity always did, so an explainer that draws from the global RNG (SmoothGrad)
    sees the same stream under ``torch.manual_seed`` whichever robustness metric comes first.
    """
    if ctx.explain is None:
        raise ValueError("robustness metrics re-run the explainer, but only precomputed explanations were given")
    return ctx.shared(("reexplained", n_samples, radius), lambda: _reexplain(ctx, n_samples, radius))


def _reexplain(ctx: MetricContext, n_samples: int, radius: float) -> Reexplained:
    noisy = [ctx.task.perturb(ctx.batch.inputs, radius, ctx.generator(i)) for i in range(n_samples)]
    explanations = torch.stack([ctx.explain(ctx.model, x, ctx.batch.targets).detach() for x in noisy])
    with torch.no_grad():
        logits = torch.stack([ctx.task.logits(ctx.model, x) for x in noisy])
        clean = ctx.task.logits(ctx.model, ctx.batch.inputs)
    return Reexplained(noisy, explanations, logits, clean)


def sensitivities(reference: Tensor, perturbed: Tensor, valid: Tensor) -> Tensor:
    """``||e(x + d_i) - e(x)||_F / ||e(x)||_F`` ``[B, n]`` for ``perturbed [n, B, *F]``."""
    return (masked_frobenius(perturbed - reference, valid) / masked_frobenius(reference, valid)).T


class Sensitivity(Metric):
    """Relative change of the explanation under ``n_samples`` uniform input noises, reduced over
    the noises by the subclass (max or mean).

    ``d_i`` is uniform in ``[-radius, radius]`` on the task's continuous input
    (``Task.perturb``) and the norms are taken over valid features. Lower is better (0 for an
    explainer that ignores its input); a zero explanation gives NaN (0/0) or inf.

    Defaults follow Quantus: ``radius = 0.2`` (its ``lower_bound``), no normalisation and no
    absolute value; ``normalise=True`` divides both explanations by their own max ``|value|``.
    ``n_samples`` is 10 instead of Quantus' 200 to keep the cost at ten re-explanations per
    batch, each one batched explainer call, shared by every robustness metric
    (``perturbed_explanations``). The radius is in the units of the task's continuous input:
    pixels in [0, 1], node features, and for text the standard deviation of the word-embedding
    entries. Quantus' ``return_nan_when_prediction_changes`` is off by default, so here too
    every noise counts. Defined for every modality: all of them have a continuous input to perturb.
    """

    family = "robustness"
    direction = "lower"
    value_range = (0.0, float("inf"))
    needs_explainer = True
    reference = "Yeh et al., On the (In)fidelity and Sensitivity of Explanations, NeurIPS 2019"
    defaults = {"n_samples": 10, "radius": 0.2, "normalise": False}

    def compute(self, ctx: MetricContext) -> Tensor:
        shared = perturbed_explanations(ctx, self.params["n_samples"], self.params["radius"])
        valid = ctx.batch.valid
        normalise = self.params["normalise"]
        reference, perturbed = (maybe_normalise(e, valid, normalise) for e in (ctx.explanation, shared.explanations))
        return self.reduce(sensitivities(reference, perturbed, valid))

    @abstractmethod
    def reduce(self, ratios: Tensor) -> Tensor:
        """Per-sample score ``[B]`` from the ratios ``[B, n]``."""


@METRICS.register("max_sensitivity")
class MaxSensitivity(Sensitivity):
    """Max-sensitivity: ``SENS_max(x) = max_i ||e(x + d_i) - e(x)||_F / ||e(x)||_F``."""

    name = "max_sensitivity"
    checked_against = "quantus.MaxSensitivity, captum.metrics.sensitivity_max (same noisy inputs, 1e-5)"
    deviation = (
        "10 noise samples instead of Quantus's 200 (ten batched re-explanations); normalisation per sample, "
        "not over the batch"
    )

    def reduce(self, ratios: Tensor) -> Tensor:
        return ratios.amax(dim=1)


@METRICS.register("avg_sensitivity")
class AvgSensitivity(Sensitivity):
    """Avg-sensitivity: ``SENS_avg(x) = mean_i ||e(x + d_i) - e(x)||_F / ||e(x)||_F``, Yeh et al.'s
    expected sensitivity; on the same noises it is never above max-sensitivity."""

    name = "avg_sensitivity"
    checked_against = "quantus.AvgSensitivity (same noisy inputs, 1e-5)"
    deviation = (
        "10 noise samples instead of Quantus's 200, shared with the other robustness metrics; normalisation "
        "per sample"
    )

    def reduce(self, ratios: Tensor) -> Tensor:
        return ratios.mean(dim=1)

"""Robustness: how much an explanation changes under small input perturbations.

Max- and avg-sensitivity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations",
NeurIPS 2019; as Quantus' ``MaxSensitivity`` / ``AvgSensitivity``, Hedström et al., JMLR 2023).

Every robustness metric re-runs the explainer on the same noisy copies of the batch, and
re-explaining is their whole cost (an occlusion explanation is hundreds of forwards), so the
noisy inputs, their explanations and their logits are computed once per (task, method, batch)
and shared: ``perturbed_explanations``. The stability metrics (``stability.py``) read them too.
The logits are computed when first read (only relative input and output stability read them):
with a gradient explainer they are as many forward rows as the re-explanations themselves.

The copies are explained several at a time, concatenated into one batch (``concat_inputs``), so
the model sees fewer, larger passes; how many per call follows the removal engine's rows per
pass on the device.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
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
    ``[n, B, *F]``, ``logits`` ``[n, B, C]`` and ``clean_logits`` ``[B, C]`` (the unperturbed
    batch), both computed by ``outputs`` on first read.
    """

    noisy: list[Any]
    explanations: Tensor
    outputs: Callable[[], tuple[Tensor, Tensor]] = field(repr=False)

    @cached_property
    def _logits(self) -> tuple[Tensor, Tensor]:
        return self.outputs()

    @property
    def logits(self) -> Tensor:
        return self._logits[0]

    @property
    def clean_logits(self) -> Tensor:
        return self._logits[1]


def perturbed_explanations(ctx: MetricContext, n_samples: int, radius: float) -> Reexplained:
    """The batch's noisy copies, re-explained, computed once for all robustness metrics.

    The runner gives every metric of a (task, method) pair the same context, so the result
    lives in that context's memo, keyed by ``n_samples`` and ``radius``. Noise ``i`` comes from
    ``ctx.generator(i)`` and the explainer runs on the copies in order ``i = 0..n-1`` before any
    other work, so an explainer that draws from the global RNG sees the same stream under
    ``torch.manual_seed`` whichever robustness metric comes first.

    Copies are explained ``max(1, chunk_rows // B)`` at a time (the engine's rows per pass on
    this device; at least one copy, so never fewer rows per call than the batch), as one
    concatenated batch where the inputs' type allows (``concat_inputs``). An explainer that is
    deterministic per sample gives the same explanations as one call per copy, up to float
    round-off; one whose random draws depend on the call's batch (SmoothGrad's noise,
    GNNExplainer's mask initialisation, the random control's seeded scores) draws differently
    than it did with one call per copy, and its scores depend on how many copies share a call.
    """
    if ctx.explain is None:
        raise ValueError("robustness metrics re-run the explainer, but only precomputed explanations were given")
    return ctx.shared(("reexplained", n_samples, radius), lambda: _reexplain(ctx, n_samples, radius))


def _reexplain(ctx: MetricContext, n_samples: int, radius: float) -> Reexplained:
    noisy = [ctx.task.perturb(ctx.batch.inputs, radius, ctx.generator(i)) for i in range(n_samples)]
    groups = _groups(ctx, noisy)
    explanations = torch.cat([_explain_copies(ctx, group, concat_inputs(group)) for group in groups])
    # the context without its memos, which will hold this result: no reference cycle keeps a
    # finished pair's tensors alive until the garbage collector runs
    bare = replace(ctx, memo={}, task_memo={})
    return Reexplained(noisy, explanations, lambda: _logits(bare, groups))


def _groups(ctx: MetricContext, noisy: list[Any]) -> list[list[Any]]:
    """The copies in groups of ``max(1, chunk_rows // B)``, one model call each."""
    per_call = max(1, ctx.engine.chunk_rows // len(ctx.batch))
    return [noisy[start : start + per_call] for start in range(0, len(noisy), per_call)]


def _logits(ctx: MetricContext, groups: list[list[Any]]) -> tuple[Tensor, Tensor]:
    """The copies' logits ``[n, B, C]`` and the batch's ``[B, C]`` (the removal engine's, which
    the faithfulness metrics of the same context may have computed already)."""
    with torch.no_grad():
        logits = torch.cat([_copies_logits(ctx, group, concat_inputs(group)) for group in groups])
    return logits, ctx.engine.logits(ctx.batch.inputs)


def concat_inputs(parts: list[Any]) -> Any | None:
    """``parts`` (a task's inputs) as one batch, rows of ``parts[0]`` first; ``None`` where their
    type does not say how.

    Tensors (images) concatenate along the batch; a task's own input type opts in with a
    ``concat`` classmethod (``TextInputs``, ``GraphInputs``), as it provides ``to``.
    """
    if all(isinstance(part, Tensor) for part in parts):
        return torch.cat(parts)
    concat = getattr(type(parts[0]), "concat", None)
    return None if concat is None else concat(parts)


def _explain_copies(ctx: MetricContext, copies: list[Any], joined: Any | None) -> Tensor:
    """Explanations ``[k, B, *F]`` of ``k`` noisy copies: one explainer call on ``joined``, their
    concatenation, else one call per copy."""
    if joined is None:
        return torch.stack([ctx.explain(ctx.model, x, ctx.batch.targets).detach() for x in copies])
    explanation = ctx.explain(ctx.model, joined, ctx.batch.targets.repeat(len(copies))).detach()
    return explanation.view(len(copies), len(ctx.batch), *explanation.shape[1:])


def _copies_logits(ctx: MetricContext, copies: list[Any], joined: Any | None) -> Tensor:
    """Logits ``[k, B, C]`` of ``k`` noisy copies, in one pass over ``joined`` where there is one."""
    if joined is None:
        return torch.stack([ctx.task.logits(ctx.model, x) for x in copies])
    return ctx.task.logits(ctx.model, joined).view(len(copies), len(ctx.batch), -1)


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

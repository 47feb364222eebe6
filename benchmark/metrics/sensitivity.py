"""Robustness: max-sensitivity of an explanation to small input perturbations.

Reference: Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019;
implemented as in Quantus' ``MaxSensitivity`` (Hedström et al., JMLR 2023).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS


def masked_frobenius(values: Tensor, valid: Tensor) -> Tensor:
    """Frobenius norm ``[B]`` of ``values [B, *F]`` over the valid feature slots only."""
    return values.masked_fill(~valid, 0.0).flatten(1).norm(dim=1)


def normalise_by_max(explanation: Tensor, valid: Tensor) -> Tensor:
    """Each sample divided by its largest absolute valid value (all-zero samples unchanged).

    Per sample, as Quantus' ``normalise_by_max`` with ``normalise_axes`` = the feature axes
    (Quantus' default axes take one maximum over the whole batch).
    """
    peak = explanation.abs().masked_fill(~valid, 0.0).flatten(1).amax(dim=1)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return explanation / peak.view(-1, *([1] * (explanation.dim() - 1)))


@METRICS.register("max_sensitivity")
class MaxSensitivity(Metric):
    """Max-sensitivity: the largest relative change of the explanation under input noise.

    ``SENS_max(x) = max_{i=1..n} ||e(x + d_i) - e(x)||_F / ||e(x)||_F`` with ``d_i`` uniform in
    ``[-radius, radius]`` on the task's continuous input (``Task.perturb``) and the norms taken
    over valid features. Lower is better (0 for an explainer that ignores its input); a zero
    explanation gives NaN (0/0) or inf.

    Defaults follow Quantus' ``MaxSensitivity``: ``radius = 0.2`` (its ``lower_bound``), no
    normalisation and no absolute value; ``normalise=True`` divides both explanations by their
    own max ``|value|``. ``n_samples`` is 10 instead of Quantus' 200 to keep the cost at ten
    re-explanations per batch; each is one batched explainer call. The radius is in the units
    of the task's continuous input (``Task.perturb``): pixels in [0, 1], node features, and for
    text the standard deviation of the word-embedding entries.
    """

    name = "max_sensitivity"
    family = "robustness"
    direction = "lower"
    value_range = (0.0, float("inf"))
    needs_explainer = True
    reference = "Yeh et al., On the (In)fidelity and Sensitivity of Explanations, NeurIPS 2019"
    checked_against = "quantus.MaxSensitivity (same noisy inputs, 1e-5)"
    defaults = {"n_samples": 10, "radius": 0.2, "normalise": False}

    def compute(self, ctx: MetricContext) -> Tensor:
        if ctx.explain is None:
            raise ValueError(f"{self.name} re-runs the explainer, but only precomputed explanations were given")
        valid = ctx.batch.valid
        reference = self._prepare(ctx.explanation, valid)
        scale = masked_frobenius(reference, valid)
        ratios = []
        for i in range(self.params["n_samples"]):
            noisy = ctx.task.perturb(ctx.batch.inputs, self.params["radius"], ctx.generator(i))
            changed = self._prepare(ctx.explain(ctx.model, noisy, ctx.batch.targets), valid)
            ratios.append(masked_frobenius(changed - reference, valid) / scale)
        return torch.stack(ratios, dim=1).amax(dim=1)

    def _prepare(self, explanation: Tensor, valid: Tensor) -> Tensor:
        return normalise_by_max(explanation, valid) if self.params["normalise"] else explanation

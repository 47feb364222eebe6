"""Complexity metrics: how concise an explanation is, regardless of the model or ground truth.

A reader can only take in a few features at once; an explanation that concentrates its mass
on few features is easier to read (and, when faithful, more useful) than one spread thinly
over all of them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import Metric, MetricContext
from ..registry import METRICS


def gini_sparseness(attributions: Tensor, valid: Tensor) -> Tensor:
    """Gini index of ``|attributions|`` over each sample's valid features, ``[B]``.

    With the ``n`` valid magnitudes sorted ascending, ``a_1 <= ... <= a_n``:
    ``G = sum_i (2i - n - 1) a_i / (n sum_i a_i)``, which is 0 for a uniform map and
    ``1 - 1/n`` for a one-hot map. An all-zero map is uniform, so it scores 0.

    Padding slots are set to 0 and sort first; shifting every index by the padding count
    ``p`` gives the valid features their ranks ``1..n``, and padding contributes ``0 * ...``.
    """
    valid = valid.flatten(1).bool()
    a = attributions.flatten(1).abs().to(torch.float64).masked_fill(~valid, 0.0)
    ordered = a.sort(dim=1).values
    n = valid.sum(1, keepdim=True)
    rank = torch.arange(1, a.shape[1] + 1, device=a.device) - (a.shape[1] - n)
    total = ordered.sum(1)
    gini = ((2 * rank - n - 1) * ordered).sum(1) / (n.squeeze(1) * total)
    return gini.masked_fill(total == 0, 0.0).float()


@METRICS.register("sparseness")
class Sparseness(Metric):
    """Gini index of the absolute attributions over the valid features (higher = sparser).

    Equals ``quantus.Sparseness`` (``abs=True``) up to the ``1e-7`` Quantus adds to every value
    before the Gini sum, which shrinks its score by a factor ``S / (S + n 1e-7)`` for total
    mass ``S``; an all-zero map is 0 in both.
    """

    name = "sparseness"
    family = "user_proxy"
    direction = "higher"
    value_range = (0.0, 1.0)
    reference = (
        "Chalasani et al., 'Concise Explanations of Neural Networks using Adversarial "
        "Training', ICML 2020"
    )

    def compute(self, ctx: MetricContext) -> Tensor:
        return gini_sparseness(ctx.explanation, ctx.batch.valid)

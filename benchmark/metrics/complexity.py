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


def attribution_entropy(attributions: Tensor, valid: Tensor) -> Tensor:
    """Shannon entropy (nats) of ``|attributions|`` normalised to a distribution over each
    sample's valid features, ``[B]``: ``H = -sum_i p_i ln p_i`` with ``p_i = |a_i| / sum_j |a_j|``.

    0 for a one-hot map, ``ln n`` for a uniform map over ``n`` valid features; ``0 ln 0 = 0``.
    An all-zero map is uniform (as in ``gini_sparseness``), so it scores ``ln n``.
    """
    valid = valid.flatten(1).bool()
    a = attributions.flatten(1).abs().to(torch.float64).masked_fill(~valid, 0.0)
    a = torch.where((a == 0).all(1, keepdim=True), valid.to(torch.float64), a)
    p = a / a.sum(1, keepdim=True)
    return -torch.special.xlogy(p, p).sum(1).float()


@METRICS.register("sparseness")
class Sparseness(Metric):
    """Gini index of the absolute attributions over the valid features (higher = sparser).

    Equals ``quantus.Sparseness`` (``abs=True``) up to the ``1e-7`` Quantus adds to every value
    before the Gini sum, which shrinks its score by a factor ``S / (S + n 1e-7)`` for total
    mass ``S``; an all-zero map is 0 in both.
    """

    name = "sparseness"
    checked_against = "quantus.Sparseness (1e-5)"
    family = "user_proxy"
    direction = "higher"
    value_range = (0.0, 1.0)
    reference = (
        "Chalasani et al., 'Concise Explanations of Neural Networks using Adversarial "
        "Training', ICML 2020"
    )

    def compute(self, ctx: MetricContext) -> Tensor:
        return gini_sparseness(ctx.explanation, ctx.batch.valid)


@METRICS.register("complexity")
class Complexity(Metric):
    """Entropy of the normalised absolute attributions over the valid features (lower = simpler).

    ``H = -sum_i p_i ln p_i``, ``p_i = |a_i| / sum_j |a_j|`` (Bhatt et al., 2020): the log of
    the effective number of features the explanation spreads its mass over. Equals
    ``quantus.Complexity`` (``abs=True``) up to the ``1e-12`` Quantus adds inside the log; an
    all-zero map scores ``ln n`` here (uniform) and NaN in Quantus. The maximum ``ln n`` grows
    with the number of valid features, so values compare across methods on the same samples,
    not across tasks.
    """

    name = "complexity"
    family = "user_proxy"
    direction = "lower"
    value_range = (0.0, float("inf"))
    reference = (
        "Bhatt, Weller and Moura, 'Evaluating and Aggregating Feature-based Model Explanations', "
        "IJCAI 2020"
    )
    checked_against = "quantus.Complexity (abs=True, 1e-5)"

    def compute(self, ctx: MetricContext) -> Tensor:
        return attribution_entropy(ctx.explanation, ctx.batch.valid)

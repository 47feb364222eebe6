"""Explanations of another class: does the explanation depend on which class is explained?

An explanation of "why class c" that looks the same as the explanation of "why class c'" says
nothing about c. Both metrics here re-run the explainer once per batch for another class and
compare the two explanations by Spearman rank correlation over the valid features (as MPRT
does), which works alike for pixels, tokens and edges and ignores monotone rescaling.

- ``random_logit`` (sanity): the other class is drawn uniformly from the other classes, as in
  Sixt et al.'s random-logit test; lower similarity is better.
- ``class_sensitivity`` (user proxy, contrastivity): the other class is the model's most likely
  class besides the target, the one a user would contrast the target with; higher is better.

Both draw the other class from the target's decision group (:mod:`..decisions`): all classes,
except on a task whose outputs are several classifiers side by side (``image/digit-grid``: one
per cell), where it is another digit of the target's cell. The question both ask is whether the
explanation depends on *which class of this decision* is explained. Another cell's output is
explained by another cell's pixels, so a cell-local explainer would pass the random-logit test
on 30 of 39 draws by location alone. And another cell's output is no contrast a user asks
about ("why a 3 here and not a 7 in the next cell?"), yet, a confident log-probability near 0,
it would be the global runner-up almost always.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from ..decisions import DecisionMetric, group_size, in_target_group
from ..metric import Metric, MetricContext
from ..registry import METRICS
from .rank_correlation import spearman

#: salt of ``MetricContext.generator`` that draws random_logit's other classes
RANDOM_LOGIT_SALT = 101


def random_other_classes(targets: Tensor, per_group: int, generator: torch.Generator) -> Tensor:
    """One class per sample, uniform over the ``per_group - 1`` other classes of its target's
    decision group (the ``per_group`` consecutive classes from ``g * per_group``).

    Draws ``r`` uniform on ``0..G-2`` and skips the target (``r + (r >= target)``) within the
    group. With one group of all ``C`` classes this is how ``quantus.RandomLogit`` maps its
    ``np.random.randint(0, C - 1)`` draws to classes.
    """
    draws = torch.randint(0, per_group - 1, targets.shape, generator=generator, device=targets.device)
    start = targets - targets % per_group
    return start + draws + (draws >= targets - start).long()


def runner_up_classes(logits: Tensor, targets: Tensor) -> Tensor:
    """The highest-scoring class other than the target, per row of ``logits [B, C]``."""
    return logits.scatter(1, targets.view(-1, 1), -torch.inf).argmax(dim=1)


def class_similarity(ctx: MetricContext, others: Tensor, absolute: bool) -> Tensor:
    """Spearman similarity ``[B]`` of the explanation and the explanation of class ``others``."""
    if ctx.explain is None:
        raise ValueError("explaining another class re-runs the explainer, but only precomputed explanations were given")
    other = ctx.explain(ctx.model, ctx.batch.inputs, others)
    prepare = torch.abs if absolute else torch.clone
    return spearman(prepare(ctx.explanation), prepare(other), ctx.batch.valid).to(ctx.explanation.dtype)


class OtherClassMetric(DecisionMetric, Metric):
    """Compares the explanation with the explanation of another class of the target's decision
    group (module docstring); the subclass picks it."""

    value_range = (-1.0, 1.0)
    needs_explainer = True
    defaults = {"abs": False}

    @abstractmethod
    def other_classes(self, ctx: MetricContext) -> Tensor:
        """Long ``[B]``: the class each sample's explanation is compared with."""

    def compute(self, ctx: MetricContext) -> Tensor:
        return class_similarity(ctx, self.other_classes(ctx), self.params["abs"])


@METRICS.register("random_logit")
class RandomLogit(OtherClassMetric):
    """Random-logit test: Spearman similarity of the explanations of the target and of a random
    other class (lower = more class-specific, better).

    ``RL(x) = rho_s(e(x, y), e(x, y'))`` with ``y'`` uniform over the other classes of ``y``'s
    decision group (all classes but on a digit-grid: module docstring; seeded by
    ``ctx.generator(RANDOM_LOGIT_SALT)``). Equals ``quantus.RandomLogit`` with
    ``similarity_func=correlation_spearman`` and the same off-class draws, with
    ``normalise=False`` (max-normalisation, Quantus's default, does not change ranks) and
    ``abs=False`` (Quantus's default and ours: the sign is where class-specific evidence lies).
    Quantus's default similarity is SSIM, which exists only for images; Spearman over the valid
    features applies to every modality. NaN where either explanation is constant.
    """

    name = "random_logit"
    family = "sanity"
    direction = "lower"
    reference = (
        "Sixt, Granz and Landgraf, 'When Explanations Lie: Why Many Modified BP Attributions "
        "Fail', ICML 2020"
    )
    checked_against = "quantus.RandomLogit (Spearman similarity, same off-classes, 1e-5)"
    deviation = (
        "Spearman rank correlation instead of Quantus's SSIM, which exists only for images"
    )

    def other_classes(self, ctx: MetricContext) -> Tensor:
        generator = ctx.generator(RANDOM_LOGIT_SALT)
        return random_other_classes(ctx.batch.targets, group_size(ctx.task), generator)


@METRICS.register("class_sensitivity")
class ClassSensitivity(OtherClassMetric):
    """Contrastivity: ``1 - rho_s(e(x, y), e(x, y2))``, where ``y2`` is the model's most likely
    class other than the target ``y`` in ``y``'s decision group (module docstring; higher = the
    explanation changes more, better).

    The runner-up is the class a user would ask "why y and not y2?" about, so an explanation
    that does not change for it cannot answer that question (Nauta et al.'s *contrastivity*
    property, "target sensitivity"; Pope et al.'s class contrastivity for GNNs, there as a
    Hamming distance between binarised maps, here as rank dissimilarity so no threshold is
    pinned). 0 = identical ranking, 1 = unrelated, 2 = reversed; NaN where either explanation
    is constant. No library implements it; the tests check it against ``scipy.stats.spearmanr``.
    """

    name = "class_sensitivity"
    family = "user_proxy"
    direction = "higher"
    value_range = (0.0, 2.0)
    reference = (
        "Nauta et al., 'From Anecdotal Evidence to Quantitative Evaluation Methods: A Systematic "
        "Review on Evaluating Explainable AI', ACM Computing Surveys 55 (2023); Pope et al., "
        "'Explainability Methods for Graph Convolutional Neural Networks', CVPR 2019"
    )
    checked_against = "1 - scipy.stats.spearmanr of the two explanations (1e-5)"

    def other_classes(self, ctx: MetricContext) -> Tensor:
        with torch.no_grad():
            logits = ctx.task.logits(ctx.model, ctx.batch.inputs)
        return runner_up_classes(in_target_group(ctx.task, logits, ctx.batch.targets), ctx.batch.targets)

    def compute(self, ctx: MetricContext) -> Tensor:
        return 1 - super().compute(ctx)

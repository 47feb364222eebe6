"""Occlusion (Zeiler & Fergus, 2014) through the task's own removal operator.

Attribution of feature ``i`` is ``f(x) - f(x without i)`` for the target class. Going through
``Task.remove`` instead of overwriting tensor values makes the same code occlude pixels (the
task's imputation), tokens (mask token) and edges (edge dropped), and makes it the
brute-force model-query control the leaderboard needs: it asks the model exactly the question
the faithfulness metrics ask.

The score is the target's *logit*, not its probability: softmax saturation would hide the
effect of any single feature on a confident prediction, and the logit matches Captum's
``Occlusion`` on a model that returns logits, which the tests use as reference.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.benchmark.task import Task

from .base import Explainer


@METHODS.register("occlusion")
class OcclusionExplainer(Explainer):
    """Remove one feature (or one ``window x window`` pixel block) at a time.

    All keep-masks of a batch are one ``[B, K, *F]`` stack scored by the removal engine; ``K``
    is the largest number of valid groups in the batch, so padding slots cost no forward pass.
    With ``window > 1`` (images only) non-overlapping square windows with stride ``window`` are
    removed together and every pixel gets its window's score; windows at the right and bottom
    border are clipped rather than skipped, so every pixel is covered. Rows go to the model
    in the engine's chunk size for the device (``benchmark.device``), which never changes a
    value and so is no parameter of the method.
    """

    name = "occlusion"
    family = "perturbation"
    cost_class = "one pass per feature"
    passes = "1 forward per feature (window {window} x {window} on images)"
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"
    description = "Occlusion (Zeiler & Fergus 2014) via the task's removal operator, target logit"

    def __init__(self, window: int = 1) -> None:
        super().__init__(window=window)

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        valid = task.valid_features(inputs)
        groups = self.groups(task, inputs, valid).flatten(1)
        keep, removed, active = _single_group_removals(valid.flatten(1), groups)
        engine = RemovalEngine(task, model)
        full = engine.full(inputs, targets, output="logit")
        drops = full[:, None] - engine.scores(inputs, keep.view(*keep.shape[:2], *valid.shape[1:]), targets, "logit")
        group_scores = drops.new_zeros(valid.shape[0], int(groups.max()) + 1)
        group_scores.scatter_(1, removed, drops.where(active, 0.0))
        return group_scores.gather(1, groups).view(valid.shape).where(valid, 0.0)

    def groups(self, task: Task, inputs: Any, valid: Tensor) -> Tensor:
        """Group id of every feature, ``[B, *F]``: itself, or its pixel window."""
        window, shape = self.params["window"], valid.shape[1:]
        if window == 1:
            return torch.arange(math.prod(shape), device=valid.device).view(shape).expand_as(valid)
        if task.modality != "image" or len(shape) != 2:
            raise ValueError(f"occlusion: window={window} needs an image task with (H, W) features, got {task.name}")
        rows = torch.arange(shape[0], device=valid.device) // window
        cols = torch.arange(shape[1], device=valid.device) // window
        return (rows[:, None] * math.ceil(shape[1] / window) + cols[None, :]).expand_as(valid)


@METHODS.register("feature_ablation")
class FeatureAblationExplainer(OcclusionExplainer):
    """Remove one of the task's feature groups at a time (``Task.feature_groups``: superpixels
    on images), through the task's removal operator; every feature gets its group's score.

    Captum's ``FeatureAblation`` with a feature mask, asked the faithfulness metrics' question.
    Images only: on text and graphs every feature is its own group (a token, an edge), where
    feature ablation *is* occlusion, already on the board.
    """

    name = "feature_ablation"
    paper = "Captum FeatureAblation (Kokhlikyan et al., Captum: A unified and generic model interpretability library for PyTorch, arXiv 2020); superpixels: Achanta et al., SLIC Superpixels Compared to State-of-the-Art Superpixel Methods, TPAMI 2012"
    modalities = frozenset({"image"})
    description = "Feature ablation over SLIC superpixels via the task's removal operator, target logit"
    passes = "1 forward per superpixel (about 1 per 16 pixels)"

    def __init__(self) -> None:
        Explainer.__init__(self)

    def groups(self, task: Task, inputs: Any, valid: Tensor) -> Tensor:
        return task.feature_groups(inputs)


def _single_group_removals(valid: Tensor, groups: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Keep-masks ``[B, K, F]`` that each remove one group holding a valid feature, for
    per-sample group ids ``groups`` ``[B, F]``.

    Returns the masks, the group each one removes ``[B, K]`` and whether it removes anything
    ``[B, K]`` (samples with fewer valid groups than ``K`` get all-keep filler masks).
    """
    num_groups = int(groups.max()) + 1
    group_valid = torch.zeros(valid.shape[0], num_groups, device=valid.device).scatter_add_(1, groups, valid.float()) > 0
    counts = group_valid.sum(dim=1)
    k = int(counts.max())
    removed = torch.argsort((~group_valid).to(torch.uint8), dim=1, stable=True)[:, :k]
    active = torch.arange(k, device=valid.device)[None, :] < counts[:, None]
    keep = ~((groups[:, None, :] == removed[:, :, None]) & active[..., None])
    return keep, removed, active

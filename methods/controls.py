"""Control explainers: what a score looks like when an explanation carries no information.

Every leaderboard table shows them so a reader can see the floor: ``random`` knows nothing,
``input_magnitude`` knows the input but never the model. A method that does not beat them on a
metric is not explaining the model on that metric.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .base import Explainer


@METHODS.register("random")
class RandomExplainer(Explainer):
    """Uniform ``[0, 1)`` scores on valid features, drawn from a generator seeded per call.

    Seeding per call makes a batch's explanation reproducible (and cacheable) whatever ran
    before it.
    """

    name = "random"
    control = True
    control_kind = "random"
    description = "Control: uniform random scores, seeded"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        valid = task.valid_features(inputs)
        generator = torch.Generator(device=valid.device).manual_seed(self.params["seed"])
        scores = torch.rand(valid.shape, generator=generator, device=valid.device)
        return scores.where(valid, 0.0)


@METHODS.register("input_magnitude")
class InputMagnitudeExplainer(Explainer):
    """The task's model-free attribution (the input's own magnitude); never calls the model."""

    name = "input_magnitude"
    control = True
    control_kind = "model-independent"
    description = "Control: input magnitude per feature, model-independent"

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        attributions = task.model_free_attribution(inputs).detach()
        return attributions.where(task.valid_features(inputs), 0.0)

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
    """Uniform ``[0, 1)`` scores on valid features, fresh on every call, reproducible under a seed.

    Each call seeds its own generator from ``seed`` and one draw of the global RNG, which the
    runner seeds before explaining and before each metric: the batch's explanation is
    reproducible (and cacheable), and a re-explanation (of a noisy copy, under a randomised
    model) gets new scores, as a random explainer must. A control that returned the same map
    for a perturbed input would score a perfect 0 on every robustness metric and rank first.
    """

    name = "random"
    family = "control"
    cost_class = "no model pass"
    passes = "0"
    control = True
    control_kind = "random"
    description = "Control: uniform random scores, seeded"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        valid = task.valid_features(inputs)
        call_seed = int(torch.randint(2**31 - 1, ()))
        generator = torch.Generator(device=valid.device).manual_seed(self.params["seed"] * 1_000_003 + call_seed)
        scores = torch.rand(valid.shape, generator=generator, device=valid.device)
        return scores.where(valid, 0.0)


@METHODS.register("input_magnitude")
class InputMagnitudeExplainer(Explainer):
    """The task's model-free attribution (the input's own magnitude); never calls the model."""

    name = "input_magnitude"
    family = "control"
    cost_class = "no model pass"
    passes = "0"
    control = True
    control_kind = "model-independent"
    description = "Control: input magnitude per feature, model-independent"

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        attributions = task.model_free_attribution(inputs).detach()
        return attributions.where(task.valid_features(inputs), 0.0)

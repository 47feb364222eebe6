"""Control explainers: what a score looks like when an explanation carries no information.

Every leaderboard table shows them so a reader can see the floor: ``random`` knows nothing,
``input_magnitude`` knows the input but never the model. A method that does not beat them on a
metric is not explaining the model on that metric.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .base import Explainer


@METHODS.register("random")
class RandomExplainer(Explainer):
    """Uniform ``[0, 1)`` scores on valid features: a seeded random function of the input.

    The generator is seeded from the method's ``seed``, the run's seed (``torch.initial_seed()``,
    which the runner sets) and a digest of the input's tensors. So a perturbed input (a noisy
    copy in a robustness metric) gets new scores, as a random explainer must: a control that
    returned the same map would score a perfect 0 on every robustness metric and rank first.
    And the same input gets the same scores whatever the model or target, so the sanity metrics
    (MPRT, random logit) rightly read it as model-independent. Drawing from the global RNG
    instead made it neither: the runner reseeds before explaining and before each metric, so
    a metric's first re-explanation repeated the original map and the next ones did not (MPRT
    read 0.25, the mean of one 1 and three 0s over four layers).
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
        seed = (self.params["seed"] * 1_000_003 + torch.initial_seed() * 7_919 + content_digest(inputs)) % 2**63
        generator = torch.Generator(device=valid.device).manual_seed(seed)
        scores = torch.rand(valid.shape, generator=generator, device=valid.device)
        return scores.where(valid, 0.0)


def content_digest(inputs: Any) -> int:
    """A 63-bit digest of the bytes of every tensor in ``inputs`` (a tensor, or a dataclass of
    tensors as the text and graph tasks' inputs are)."""
    digest = hashlib.blake2b(digest_size=8)
    for tensor in _tensors(inputs):
        digest.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") >> 1


def _tensors(inputs: Any) -> Iterator[Tensor]:
    if isinstance(inputs, Tensor):
        yield inputs
    elif dataclasses.is_dataclass(inputs):
        for field in dataclasses.fields(inputs):
            yield from _tensors(getattr(inputs, field.name))


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

"""The explainer interface that every baseline and every submitted method implements.

Modelled on Captum's ``attr`` API: one class per method, one call. An explainer receives the
model, a batch of inputs, the classes to explain and the task (for its feature space, removal
operator and gradient access); it returns one score per feature, shaped like
``task.valid_features(inputs)`` (``[B, *task.feature_shape]`` except for graphs, whose edge
slots are padded per batch), higher meaning more important. It never sees ground-truth masks.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import Tensor, nn

from xaiboard.benchmark.task import Modality, Task


class Explainer(ABC):
    """Subclasses set ``name`` and ``modalities`` and implement ``explain``.

    Hyperparameters are constructor keyword arguments stored in ``self.params``; they are
    recorded in every result and enter the code hash, so changing one invalidates caches.
    """

    name: ClassVar[str]
    modalities: ClassVar[frozenset[Modality]] = frozenset({"image", "text", "graph"})
    #: a control row on the leaderboard (random, model-independent), not a real method
    control: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        self.params = params

    @abstractmethod
    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        """Attributions shaped like ``task.valid_features(inputs)`` for ``targets`` ``[B]``."""

    def supports(self, task: Task) -> bool:
        return task.modality in self.modalities

    def code_hash(self) -> str:
        """Hash of the method's source module and parameters: the cache and result key."""
        source = inspect.getsource(inspect.getmodule(type(self)))
        blob = source + json.dumps(self.params, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"<Explainer {self.name} {self.params}>"

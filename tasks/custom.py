"""Bases for tasks of one's own (``xaiboard run --plugin my_task.py``), so that a task is as short
to write as a method: what the harness can derive or does not need has a default.

Two ways to bring the model, one mixin each, put before the modality's base class:

- :class:`PretrainedModel`: the task brings its trained model (``model(device)``). There is no
  weights file, no recipe and nothing to train, so ``weights_stem``, ``recipe`` and
  ``train_model`` need no stubs (``xaiboard train-model`` says there is nothing to train).
  :class:`PretrainedImageTask`, :class:`PretrainedTextTask` and :class:`PretrainedGraphTask`
  are the mixin on each modality's base.
- :class:`TrainedModel`: the task trains its model by a recipe (``build_model``,
  ``train_model``, ``recipe``); ``xaiboard train-model TASK --plugin FILE --out DIR`` writes the
  weights, and ``xaiboard run ... --weights DIR`` loads them. The weights file's stem defaults
  to the task's name (``my/bars`` -> ``my_bars``).

Both give the defaults every custom task shares (:class:`CustomTask`): ``version`` ``"1"``; a
``card`` built from what the task declares (its docstring's first line as the dataset); and
``cam_layer``, the model's last ``nn.Conv2d``, so Grad-CAM-style methods run on any CNN
without a line of code, and are recorded *not applicable* (with the reason) on a model that
has no convolution, rather than failing.

These bases live in their own module, not in ``benchmark/task.py`` or the modality bases,
because a task's fingerprint hashes the modules of its base classes: the built-in tasks' results
do not depend on this file.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from xaiboard.benchmark.record import NotApplicable
from xaiboard.benchmark.task import TaskCard

from .graph import GraphTask
from .image import ImageTask
from .text import TextTask
from .weights import load_weights, weights_path

#: what the features of each modality are, for the default card
FEATURE_WORDS = {"image": "pixels", "text": "tokens", "graph": "edges"}


class CustomTask:
    """Defaults every custom task shares: version, card and CAM layer (see the module docstring)."""

    version: ClassVar[str] = "1"

    @property
    def card(self) -> TaskCard:
        """What the task declares, in card form; set ``card = TaskCard(...)`` to say more (the
        licence of the data, how the model was made, the test accuracy)."""
        doc = (type(self).__doc__ or "").strip()
        return TaskCard(
            dataset=doc.splitlines()[0] if doc else type(self).__name__,
            model=self.model_description(),
            feature_space=f"{FEATURE_WORDS[self.modality]} {'x'.join(map(str, self.feature_shape))}",
            removal=self.removal_name,
            ground_truth="per sample, from the task's samples()" if self.has_ground_truth else "none",
            licence="not stated",
            removal_baseline=getattr(self, "removal_baseline", ""),
        )

    def model_description(self) -> str:
        """The default card's ``model`` field."""
        return "the task's own"

    def cam_layer(self, model: nn.Module) -> nn.Module:
        """The model's last ``nn.Conv2d`` (in ``model.modules()`` order); override for another."""
        convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convolutions:
            raise NotApplicable(
                f"the model of {self.name} ({type(model).__name__}) has no nn.Conv2d layer for a CAM method to read; "
                "override the task's cam_layer(model) to name one"
            )
        return convolutions[-1]


class PretrainedModel(CustomTask):
    """The task brings its trained model: implement ``model(device)`` (in eval mode)."""

    weights_stem: ClassVar[str] = ""
    recipe: ClassVar[dict[str, Any]] = {}

    def build_model(self) -> nn.Module:
        """The model as brought: there is no untrained architecture to build."""
        return self.model()

    def train_model(self, seed: int = 0, device: torch.device | str = "cpu") -> tuple[nn.Module, float]:
        raise NotImplementedError(f"{self.name} brings its own trained model: it has no recipe to train")

    def model_description(self) -> str:
        return "brought by the task (not trained by xaiboard)"


class TrainedModel(CustomTask):
    """The task trains its model by a recipe: implement ``build_model()`` and
    ``train_model(seed, device)``, set ``recipe``; ``model()`` loads the trained weights."""

    recipe: ClassVar[dict[str, Any]] = {}

    @property
    def weights_stem(self) -> str:
        """The weights file's stem: the task's name with ``/`` as ``_``."""
        return self.name.replace("/", "_").replace("@", "_")

    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        """The weights ``xaiboard train-model`` wrote, loaded into ``build_model()``."""
        if not weights_path(self.weights_stem).exists():
            raise FileNotFoundError(
                f"no weights for {self.name}: train them with `xaiboard train-model {self.name} --plugin FILE --out DIR` "
                "and pass `--weights DIR` to `xaiboard run`"
            )
        return load_weights(self.build_model(), self.weights_stem).eval().to(device)

    def model_description(self) -> str:
        return f"trained by the task's recipe ({', '.join(f'{k}={v}' for k, v in self.recipe.items()) or 'no parameters'})"


class PretrainedImageTask(PretrainedModel, ImageTask):
    """An image task with its own model: set ``name``, ``num_classes``, ``image_shape``; implement
    ``model(device)`` and ``samples(split, n, seed)``."""


class PretrainedTextTask(PretrainedModel, TextTask):
    """A text task with its own model (and tokenizer, ``max_length``, ``token_counts``)."""


class PretrainedGraphTask(PretrainedModel, GraphTask):
    """A node-classification graph task with its own model (and graph, ``num_hops``)."""

"""The shared path of the CAM methods written after ``gradcam``: the task's CAM layer, a map over
its positions, upsampled bilinearly to the pixel grid (as ``gradcam`` does)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from captum.attr import LayerAttribution
from torch import Tensor, nn

from xaiboard.benchmark.task import Task

from .base import Explainer


class CamExplainer(Explainer):
    """Subclasses compute ``layer_map``; this finds the layer and brings the map to the pixels."""

    modalities = frozenset({"image"})

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        layer = task.cam_layer(model)
        if layer is None:
            raise ValueError(f"{self.name}: task {task.name} declares no CAM layer")
        cam = self.layer_map(model, layer, inputs, targets, task)
        valid = task.valid_features(inputs)
        upsampled = LayerAttribution.interpolate(cam.unsqueeze(1), tuple(valid.shape[1:]), interpolate_mode="bilinear")
        return upsampled.squeeze(1).where(valid, 0.0)

    @abstractmethod
    def layer_map(self, model: nn.Module, layer: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        """The map ``[B, h, w]`` over the CAM layer's positions."""

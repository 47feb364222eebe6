"""Grad-CAM (Selvaraju et al., 2017) on the task's CAM layer, via Captum's LayerGradCam.

The layer's activations are weighted by their spatially averaged gradients, summed over
channels and rectified (only evidence *for* the target counts), then upsampled bilinearly to
the task's pixel grid so the map lives in the same feature space as every other method.
"""

from __future__ import annotations

from typing import Any

from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .base import Explainer


@METHODS.register("gradcam")
class GradCamExplainer(Explainer):
    name = "gradcam"
    family = "gradient"
    cost_class = "one pass"
    passes = "1 forward + backward"
    paper = "Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, ICCV 2017"
    modalities = frozenset({"image"})
    description = "Grad-CAM (Selvaraju et al. 2017), Captum LayerGradCam, bilinear upsampling"

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        layer = task.cam_layer(model)
        if layer is None:
            raise ValueError(f"gradcam: task {task.name} declares no CAM layer")
        spec = task.gradient_spec(model, inputs)
        cam = LayerGradCam(spec.forward, layer).attribute(
            spec.inputs,
            target=targets,
            additional_forward_args=spec.additional_args or None,
            relu_attributions=True,
        )
        valid = task.valid_features(inputs)
        upsampled = LayerAttribution.interpolate(cam.detach(), tuple(valid.shape[1:]), interpolate_mode="bilinear")
        return upsampled.sum(dim=1).where(valid, 0.0)

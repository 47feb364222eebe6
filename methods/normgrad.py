"""NormGrad (Rebuffi et al. 2020): activation norm times gradient norm, per position of a layer.

At a layer with output activation ``a`` and gradient ``g`` of the target logit with respect to
it, position ``p`` scores ``||a_p|| * ||g_p||`` (norms over channels): the Frobenius norm of the
weight gradient that a 1x1 "virtual identity" convolution inserted after the layer would
receive at ``p``, the paper's basic form. Maps are upsampled bilinearly to the pixel grid, as
Grad-CAM's are. Two variants, as in the paper:

- ``normgrad``: the task's CAM layer only (``Task.cam_layer``: the last convolution);
- ``normgrad_aggregated``: every convolution whose map covers the whole image, plus the CAM
  layer, each map divided by its per-image maximum (so every layer weighs the same) and
  averaged. On ``image/digit-grid`` the convolutions see one cell at a time, so only the
  mosaic of cell maps (its CAM layer) covers the image and the two variants coincide.

Captum has Grad-CAM and gradient-times-activation layer methods, not NormGrad's product of
norms, so the hooks are written here: one forward and one backward pass per batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from captum.attr import LayerAttribution
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .base import Explainer


class NormGradExplainer(Explainer):
    """Shared path: hook the layers, one forward/backward, norms, upsample, combine."""

    modalities = frozenset({"image"})
    family = "gradient"
    cost_class = "one pass"
    passes = "1 forward + backward"
    aggregated: ClassVar[bool] = False

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        layer = task.cam_layer(model)
        if layer is None:
            raise ValueError(f"{self.name}: task {task.name} declares no CAM layer")
        layers = [*{m: None for m in [*self.extra_layers(model), layer]}]
        activations, gradients = layer_outputs_and_gradients(model, inputs, targets, task, layers)
        valid = task.valid_features(inputs)
        maps = [
            _upsample(a.norm(dim=1) * g.norm(dim=1), valid.shape[1:])
            for a, g in zip(activations, gradients)
            if a.shape[0] == valid.shape[0]
        ]
        if self.aggregated:
            maps = [m / m.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1) for m in maps]
        return torch.stack(maps).mean(dim=0).where(valid, 0.0)

    def extra_layers(self, model: nn.Module) -> list[nn.Module]:
        """Layers besides the CAM layer: none, or every convolution for the aggregated variant."""
        return [m for m in model.modules() if isinstance(m, nn.Conv2d)] if self.aggregated else []


def layer_outputs_and_gradients(
    model: nn.Module, inputs: Tensor, targets: Tensor, task: Task, layers: list[nn.Module]
) -> tuple[list[Tensor], list[Tensor]]:
    """Each layer's output on ``inputs`` and the gradient of the summed target logits w.r.t. it."""
    outputs: dict[int, Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, key=k: outputs.__setitem__(key, out))
        for k, layer in enumerate(layers)
    ]
    try:
        with torch.enable_grad():
            spec = task.gradient_spec(model, inputs)
            logits = spec.forward(spec.inputs.detach().requires_grad_(True), *spec.additional_args)
            captured = [outputs[k] for k in range(len(layers))]
            gradients = torch.autograd.grad(logits.gather(1, targets.view(-1, 1)).sum(), captured)
    finally:
        for hook in hooks:
            hook.remove()
    return [a.detach() for a in captured], [g.detach() for g in gradients]


def _upsample(maps: Tensor, size: torch.Size) -> Tensor:
    return LayerAttribution.interpolate(maps.unsqueeze(1), tuple(size), interpolate_mode="bilinear").squeeze(1)


@METHODS.register("normgrad")
class NormGradSingleExplainer(NormGradExplainer):
    """NormGrad at the task's CAM layer (the last convolution)."""

    name = "normgrad"
    paper = "Rebuffi, Fong, Ji and Vedaldi, There and Back Again: Revisiting Backpropagation Saliency Methods, CVPR 2020"
    description = "NormGrad (Rebuffi et al. 2020) at the last conv layer: |activation| x |gradient| per position"


@METHODS.register("normgrad_aggregated")
class NormGradAggregatedExplainer(NormGradExplainer):
    """NormGrad averaged over every convolution whose map covers the image, each map scaled to
    a maximum of 1 per image."""

    name = "normgrad_aggregated"
    paper = NormGradSingleExplainer.paper
    description = "NormGrad (Rebuffi et al. 2020) averaged over conv layers, each normalised to max 1"
    aggregated = True

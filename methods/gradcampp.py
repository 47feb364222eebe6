"""Grad-CAM++ (Chattopadhay et al., WACV 2018) on the task's CAM layer, from its closed form.

With the gradient ``g = dS/dA_k(i, j)`` of the target logit ``S`` at the CAM layer's activations
``A``, the paper's exponential-output simplification (``Y = exp(S)``, whose higher derivatives are
``exp(S)`` times powers of ``g`` for a piecewise-linear network) gives, per channel ``k`` and
position ``(i, j)``:

    alpha = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)        (0 where the denominator is 0, e.g. g = 0)
    w_k   = sum_ij alpha * relu(g)
    map   = relu(sum_k w_k A_k)

The positive per-sample factor ``exp(S)`` is dropped, as in the authors' and every library's code:
it scales a sample's map and changes no ranking. The map is upsampled bilinearly to the pixel
grid, as ``gradcam`` does. One forward and one backward pass per batch (the hooks of
``methods.normgrad``), every sample at once.

Written here rather than wrapped: of the two CAM libraries on PyPI, ``torchcam`` 0.5.0's
``GradCAMpp`` never applies its division (it divides a boolean-indexed copy in place, so its
weights are ``sum g^2 relu(g)``; checked against the closed form above), and ``grad-cam``
(pytorch-grad-cam) needs torchvision, ttach and OpenCV, none of which the project uses.

On a CAM layer whose activations can be negative (the tasks' last convolution before its ReLU,
the layer Grad-CAM reads too) the paper's ``A >= 0`` does not hold and ``alpha`` can be negative;
the formula is applied as it stands.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .cam import CamExplainer
from .normgrad import layer_outputs_and_gradients


@METHODS.register("gradcam_pp")
class GradCamPlusPlusExplainer(CamExplainer):
    name = "gradcam_pp"
    family = "gradient"
    cost_class = "one pass"
    passes = "1 forward + backward"
    paper = "Chattopadhay, Sarkar, Howlader and Balasubramanian, Grad-CAM++: Generalized Gradient-Based Visual Explanations for Deep Convolutional Networks, WACV 2018"
    description = "Grad-CAM++ (Chattopadhay et al. 2018), closed form with the exponential output, bilinear upsampling"
    #: not on the committed board until its baselines are regenerated; ``full`` keeps the board complete

    def layer_map(self, model: nn.Module, layer: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        (activations,), (gradients,) = layer_outputs_and_gradients(model, inputs, targets, task, [layer])
        return (channel_weights(activations, gradients)[..., None, None] * activations).sum(dim=1).relu()


def channel_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++'s ``w_k`` ``[B, K]`` from activations and target-logit gradients ``[B, K, H, W]``."""
    squared = gradients.square()
    denominator = 2 * squared + activations.sum(dim=(2, 3), keepdim=True) * squared * gradients
    nonzero = denominator != 0
    alpha = torch.where(nonzero, squared / torch.where(nonzero, denominator, 1.0), 0.0)
    return (alpha * gradients.relu()).sum(dim=(2, 3))

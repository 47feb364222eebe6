"""Score-CAM (Wang et al., CVPR Workshops 2020) on the task's CAM layer, via torchcam's ScoreCAM.

Each channel ``A_k`` of the CAM layer is upsampled to the input, min-max normalised to [0, 1]
(per sample and channel) and used as a soft mask: the model scores the masked input
``X * H_k``, and the channel's weight is the softmax over channels of the target logit it
earned; the map is ``relu(sum_k w_k A_k)``, upsampled bilinearly to the pixel grid as
``gradcam`` does. No gradients.

torchcam subtracts the unmasked input's logit before the softmax, which the softmax over
channels cancels; pytorch-grad-cam computes the same weights. (The authors' released code
instead weights each channel by the target's softmax *probability* on its masked input.)
Hyperparameters: none beyond the layer (the task's ``cam_layer``).

Batching: torchcam stacks every sample's ``K`` masked inputs (``B x K`` rows) and runs them in
chunks of the device's rows per call (``benchmark.device.chunk_rows``), no loop over samples.
Cost: one forward per channel of the CAM layer, plus two for the unmasked batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchcam.methods import ScoreCAM

from xaiboard.benchmark.device import chunk_rows
from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .cam import CamExplainer


@METHODS.register("scorecam")
class ScoreCamExplainer(CamExplainer):
    name = "scorecam"
    family = "perturbation"
    cost_class = "k passes"
    passes = "1 forward per channel of the CAM layer + 2"
    paper = "Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks, CVPR Workshops 2020"
    description = "Score-CAM (Wang et al. 2020), torchcam ScoreCAM on the CAM layer, bilinear upsampling"
    #: not on the committed board until its baselines are regenerated; ``full`` keeps the board complete

    def layer_map(self, model: nn.Module, layer: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        spec = task.gradient_spec(model, inputs)
        if spec.forward is not model or spec.additional_args:
            raise ValueError(f"scorecam: task {task.name}'s model must take the image alone (torchcam masks its first input)")
        rows = chunk_rows(spec.inputs.device, task)
        with torch.no_grad(), ScoreCAM(model, layer, batch_size=rows) as extractor:
            model(spec.inputs)  # torchcam's hooks keep the input and the layer's activations
            (cam,) = extractor(class_idx=targets.tolist(), normalized=False)
        return cam

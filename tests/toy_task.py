"""A tiny, fully known task for unit tests: 1x4x4 "images", a linear model, zero removal.

Its logit for class c is ``sum(w_c * x)``, so gradients, removal effects and ground truth are
all known in closed form, and it trains in no time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xaiboard.benchmark.task import Batch, GradientSpec, Task, TaskCard


class ToyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.fc = nn.Linear(2 * 16, 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).flatten(1))


class ToyTask(Task):
    """Class 1 iff the planted top-left 2x2 block is bright; ground truth = that block."""

    name = "toy/linear"
    version = "1"
    modality = "image"
    num_classes = 2
    removal_name = "zero"
    weights_stem = "toy_linear"
    has_ground_truth = True
    card = TaskCard("generated", "linear", "pixels 4x4", "zero", "planted block", "MIT")

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (4, 4)

    def valid_features(self, inputs: Tensor) -> Tensor:
        return torch.ones(inputs.shape[0], 4, 4, dtype=torch.bool, device=inputs.device)

    def build_model(self) -> nn.Module:
        return ToyModel()

    def model(self, device="cpu") -> nn.Module:
        torch.manual_seed(0)
        model = ToyModel()
        with torch.no_grad():
            model.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            gt = self.gt_mask().flatten().float()
            model.fc.weight.zero_()
            model.fc.weight[1, :16] = gt
            model.fc.weight[0, :16] = 0.5 * torch.ones(16)
        return model.eval().to(device)

    def gt_mask(self) -> Tensor:
        mask = torch.zeros(4, 4, dtype=torch.bool)
        mask[:2, :2] = True
        return mask

    def samples(self, split: str, n: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 2, (n,), generator=g)
        x = torch.rand(n, 1, 4, 4, generator=g) * 0.3
        x[labels == 1, :, :2, :2] += 1.0
        gt = self.gt_mask().expand(n, 4, 4).clone()
        valid = torch.ones(n, 4, 4, dtype=torch.bool)
        return Batch(x, labels, labels, valid, gt, torch.arange(n))

    def train_model(self, seed=0, device="cpu"):
        return self.model(device), 1.0

    def remove(self, inputs: Tensor, keep: Tensor) -> Tensor:
        b, k = keep.shape[:2]
        x = inputs.unsqueeze(1) * keep.unsqueeze(2).to(inputs.dtype)
        return x.reshape(b * k, *inputs.shape[1:])

    def predict(self, model: nn.Module, model_inputs: Tensor) -> Tensor:
        return model(model_inputs)

    def gradient_spec(self, model: nn.Module, inputs: Tensor) -> GradientSpec:
        return GradientSpec(model, inputs, torch.zeros_like(inputs))

    def pool(self, attributions: Tensor, inputs: Tensor) -> Tensor:
        return attributions.sum(dim=1)

    def model_free_attribution(self, inputs: Tensor) -> Tensor:
        return inputs.abs().sum(dim=1)

    def perturb(self, inputs: Tensor, radius: float, generator: torch.Generator) -> Tensor:
        noise = torch.rand(inputs.shape, generator=generator, device=inputs.device) * 2 - 1
        return inputs + radius * noise

    def cam_layer(self, model: nn.Module) -> nn.Module:
        return model.conv

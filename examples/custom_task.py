"""A task of your own, registered from a file: ``xaiboard run --plugin custom_task.py``.

The task: 8x8 grey images with one bright bar, horizontal (class 0) or vertical (class 1), on a
noisy background. The model is yours, here a fixed line detector (a 3x3 convolution per
orientation, ReLU, global sum pooling), so there is nothing to train. The ground truth is the
bar's pixels. ``PretrainedImageTask`` gives the feature space (pixels), the removal operator,
what explainers need (Grad-CAM reads the last convolution) and a card; you supply data and model.
"""

import torch
from torch import nn

from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import Batch
from xaiboard.tasks.custom import PretrainedImageTask


class LineDetector(nn.Module):
    """Logit of each class = the summed response of its oriented 3x3 line filter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3, padding=1, bias=False)
        line = torch.full((3, 3), -1 / 3)  # zero-sum: responds to a line, not to brightness
        line[1] = 2 / 3
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([line, line.T]).unsqueeze(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(images)).sum(dim=(2, 3))


@TASKS.register("my/bars")
class BarsTask(PretrainedImageTask):
    """generated 8x8 images with one horizontal or vertical bar"""

    name, num_classes, image_shape, has_ground_truth = "my/bars", 2, (1, 8, 8), True

    def model(self, device="cpu") -> nn.Module:
        return LineDetector().eval().to(device)

    def samples(self, split: str, n: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(2 * seed + ("train", "test").index(split))
        labels, where = torch.randint(0, 2, (n,), generator=g), torch.randint(0, 8, (n,), generator=g)
        bars = torch.zeros(n, 8, 8, dtype=torch.bool)
        bars[labels == 0, where[labels == 0], :] = True  # a row for class 0
        bars[labels == 1, :, where[labels == 1]] = True  # a column for class 1
        images = torch.where(bars, 1.0, 0.3 * torch.rand(n, 8, 8, generator=g)).unsqueeze(1)
        return Batch(images, labels, labels, self.valid_features(images), bars, torch.arange(n))

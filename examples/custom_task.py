"""A task of your own, registered from a file: ``xaiboard run --plugin custom_task.py --tasks my/bars``.

The task: 8x8 grey images with one bright bar, horizontal (class 0) or vertical (class 1), on a
noisy background. The model is yours, here a fixed line detector (a 3x3 convolution per
orientation, ReLU, global sum pooling), so there is nothing to train. The ground truth is the
bar's pixels. Subclassing ``ImageTask`` gives the feature space (pixels), the removal operator
(``zero``, ``mean`` or ``blur``) and everything explainers need; you supply data and model.
"""

import torch
from torch import nn

from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import Batch, TaskCard
from xaiboard.tasks.image import ImageTask

SPLITS = ("train", "test")


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
class BarsTask(ImageTask):
    name = "my/bars"
    version = "1"
    num_classes = 2
    image_shape = (1, 8, 8)
    has_ground_truth = True
    weights_stem = "my_bars"  # unused: the model has fixed weights
    recipe = {}
    card = TaskCard(
        dataset="generated 8x8 images with one horizontal or vertical bar",
        model="fixed oriented line detector (3x3 conv, ReLU, global sum)",
        feature_space="pixels 8x8",
        removal="zero",
        ground_truth="pixels of the bar",
        licence="MIT (generated)",
        removal_baseline="pixel value 0",
        splits="train and test drawn from disjoint seeds",
    )

    def build_model(self) -> nn.Module:
        return LineDetector()

    def model(self, device="cpu") -> nn.Module:
        return self.build_model().eval().to(device)

    def cam_layer(self, model: nn.Module) -> nn.Module:
        return model.conv

    def samples(self, split: str, n: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(2 * seed + SPLITS.index(split))
        labels = torch.randint(0, 2, (n,), generator=g)
        where = torch.randint(0, 8, (n,), generator=g)
        bars = torch.zeros(n, 8, 8, dtype=torch.bool)
        rows = torch.arange(n)
        bars[rows[labels == 0], where[labels == 0], :] = True
        bars[rows[labels == 1], :, where[labels == 1]] = True
        images = torch.where(bars, 1.0, 0.3 * torch.rand(n, 8, 8, generator=g)).unsqueeze(1)
        return Batch(images, labels, labels, self.valid_features(images), bars, torch.arange(n))

    def train_model(self, seed=0, device="cpu"):
        model = self.model(device)
        batch = self.samples("test", 512, seed)
        with torch.no_grad():
            accuracy = (model(batch.inputs.to(device)).argmax(1).cpu() == batch.labels).float().mean().item()
        return model, accuracy

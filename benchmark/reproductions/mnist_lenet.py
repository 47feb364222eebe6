"""A pretrained LeNet on MNIST test images, read (never copied) from ``$XAIBOARD_SHARED_DATA``.

The sanity-checks reproduction needs a network of the kind Adebayo et al. randomised: their own
MNIST replication (``notebooks/cnn_mnist_cascading_randomization.ipynb`` in
github.com/adebayoj/sanity_checks_saliency) is a LeNet-style CNN (two 5x5 conv + ReLU + 2x2 max
pool stages, then dense layers), and the board's image CNNs end in a global max pool instead.
Quantus ships such a LeNet trained on MNIST (99.0% on the 10,000 test images); the project's
offline copies of it and of MNIST's test set live in ``$XAIBOARD_SHARED_DATA`` (default
``../shared/data/`` beside the repository; ``quantus-lenet/`` and ``mnist-test/``, see their
``SOURCE.txt``). Nothing here is registered as a board task: the checkpoint is a third-party
test asset, used read-only by the reproduction.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from xaiboard.benchmark.paths import shared_data_dir
from xaiboard.benchmark.task import Batch, TaskCard
from xaiboard.tasks.digits import choose
from xaiboard.tasks.image import ImageTask

CHECKPOINT = Path("quantus-lenet") / "lenet_mnist_state_dict.pt"
IMAGES = Path("mnist-test") / "t10k-images-idx3-ubyte.gz"
LABELS = Path("mnist-test") / "t10k-labels-idx1-ubyte.gz"


def missing() -> str | None:
    """Why the LeNet or the MNIST copy cannot be read here, or ``None``."""
    absent = [str(shared_data_dir() / p) for p in (CHECKPOINT, IMAGES, LABELS) if not (shared_data_dir() / p).exists()]
    return f"not found: {', '.join(absent)} (set $XAIBOARD_SHARED_DATA)" if absent else None


class LeNet(nn.Module):
    """Quantus' LeNet (its parameter names, so the checkpoint loads as saved): conv 5x5 (6) -> ReLU
    -> max pool 2, conv 5x5 (16) -> ReLU -> max pool 2, dense 256 -> 120 -> 84 -> 10. Every ReLU
    is a module of its own, so guided backprop's hooks reach each of them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_1, self.relu_1, self.pool_1 = nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2)
        self.conv_2, self.relu_2, self.pool_2 = nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
        self.fc_1, self.relu_3 = nn.Linear(256, 120), nn.ReLU()
        self.fc_2, self.relu_4 = nn.Linear(120, 84), nn.ReLU()
        self.fc_3 = nn.Linear(84, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool_1(self.relu_1(self.conv_1(x)))
        x = self.pool_2(self.relu_2(self.conv_2(x))).flatten(1)
        return self.fc_3(self.relu_4(self.fc_2(self.relu_3(self.fc_1(x)))))


def read_idx(path: Path, offset: int) -> np.ndarray:
    """The uint8 payload of a gzipped IDX file (MNIST's format) after its ``offset``-byte header."""
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


@cache
def mnist_test() -> tuple[Tensor, Tensor]:
    """MNIST's 10,000 test images ``[N, 1, 28, 28]`` in ``[0, 1]`` (ink bright) and labels ``[N]``."""

    images = read_idx(shared_data_dir() / IMAGES, 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    return torch.from_numpy(images), torch.from_numpy(read_idx(shared_data_dir() / LABELS, 8).astype(np.int64))


class LeNetMnist(ImageTask):
    """Quantus' pretrained LeNet on MNIST's test images, as an image task for the board's explainers
    (pixels 28x28, zero removal baseline; Grad-CAM on ``conv_2``, the last convolution). Samples
    are drawn from all 10,000 test images (the LeNet was trained on MNIST's training set)."""

    name = "mnist/quantus-lenet"
    version = "1"
    num_classes = 10
    image_shape = (1, 28, 28)
    weights_stem = ""

    @property
    def card(self) -> TaskCard:
        return TaskCard(dataset=f"MNIST test set (10,000 images), read from {shared_data_dir() / IMAGES.parent}",
                        model="Quantus' LeNet (2 conv + max pool stages, 3 dense layers), pretrained, 99.0% test accuracy",
                        feature_space="pixels 28x28 (one channel)", removal=self.removal_name,
                        ground_truth="none (real handwriting)", licence="LeNet: LGPL-3.0-or-later (Quantus); MNIST: CC BY-SA 3.0")

    def build_model(self) -> nn.Module:
        return LeNet()

    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        model = self.build_model()
        model.load_state_dict(torch.load(shared_data_dir() / CHECKPOINT, map_location="cpu", weights_only=True))
        return model.eval().to(device)

    def samples(self, split: str, n: int, seed: int) -> Batch:
        if split != "test":
            raise ValueError(f"{self.name} holds MNIST's test images only, not split {split!r}")
        images, labels = mnist_test()
        pick = choose(len(labels), n, seed)
        return Batch(images[pick], labels[pick], labels[pick], torch.ones(n, 28, 28, dtype=torch.bool), None, pick)

    def train_model(self, seed: int = 0, device: torch.device | str = "cpu") -> tuple[nn.Module, float]:
        raise NotImplementedError(f"{self.name} uses Quantus' pretrained checkpoint; it has no training recipe here")

    def cam_layer(self, model: nn.Module) -> nn.Module:
        return model.conv_2

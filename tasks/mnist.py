"""``image/mnist`` (hub tier): MNIST digits from the Hugging Face hub, classified by a small CNN.

Data come from the hub dataset ``ylecun/mnist`` (columns ``image``: 28x28 greyscale PIL images,
``label``), pinned to a commit and loaded through ``tasks.hub.load_hub_dataset``, so a mirror
(``XAIBOARD_HUB_MIRROR``) or the hub itself serves the same code path. Pixels are scaled to
``[0, 1]``: white ink on a black background, so the ``zero`` baseline is blank paper.

Only the hub's ``test`` split is used, because the project's offline copy of MNIST (against
which the committed weights were trained and the tests run) is the 10,000 test images alone:
the recipe trains on its first 8,000 images and evaluates on the last 2,000, which are the only
images ``samples`` draws from. MNIST's test set is itself split between writers (first 5,000
easier "SD-3" writers, last 5,000 "SD-1" students), so the held-out 2,000 are all student
writing: a harder slice than the full test set, stated on the card.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import TaskCard

from .digits import LabelledImagesTask, check_split
from .hub import load_hub_dataset
from .weights import weights_meta

REPO = "ylecun/mnist"
#: the hub commit that holds ``mnist/{train,test}-00000-of-00001.parquet`` (as pinned by MTEB's MNIST task)
REVISION = "77f3279092a1c1579b2250db8eafed0ad422088c"
HUB_SPLIT = "test"
N_TRAIN = 8000
SIZE = 28


@TASKS.register("image/mnist")
class MnistTask(LabelledImagesTask):
    name = "image/mnist"
    version = "1"
    tier = "hub"
    image_shape = (1, SIZE, SIZE)
    weights_stem = "image_mnist"
    recipe: ClassVar[dict[str, Any]] = {
        "width": 16,
        "optimizer": "adam",
        "lr": 1e-2,
        "batch_size": 64,
        "epochs": 5,
        "threads": 1,
        "hub_split": HUB_SPLIT,
        "train_images": f"first {N_TRAIN}",
    }

    @property
    def card(self) -> TaskCard:
        return TaskCard(
            dataset=f"{REPO} (Hugging Face hub), split {HUB_SPLIT!r}, 28x28 greyscale",
            dataset_revision=REVISION,
            model="3-layer CNN, global max pooling (DigitCNN, as image/digits)",
            feature_space=f"pixels {SIZE}x{SIZE} (one channel)",
            removal=self.removal_name,
            removal_baseline=self.removal_baseline,
            ground_truth="none (real handwriting)",
            licence="CC BY-SA 3.0 (MNIST, LeCun, Cortes & Burges)",
            test_accuracy=weights_meta(self.weights_stem).get("test_accuracy"),
            splits=(
                f"only the hub's {HUB_SPLIT!r} split (10,000 images; the offline copy holds no more): the model "
                f"trained on its first {N_TRAIN:,} images; samples and test accuracy come from the last "
                f"{10_000 - N_TRAIN:,} (all from MNIST's student writers, a harder slice than the full test set)"
            ),
        )

    @cached_property
    def _hub_images(self) -> tuple[Tensor, Tensor]:
        """All images ``[N, 1, 28, 28]`` in ``[0, 1]`` and labels of the hub split, loaded once."""
        dataset = load_hub_dataset(REPO, REVISION, HUB_SPLIT)
        pixels = np.stack(
            [np.asarray(image, dtype=np.uint8) for image in dataset["image"]]
        )
        images = torch.from_numpy(pixels).unsqueeze(1).float() / 255.0
        return images, torch.as_tensor(dataset["label"], dtype=torch.long)

    def split_data(self, split: str) -> tuple[Tensor, Tensor, Tensor]:
        check_split(split)
        images, labels = self._hub_images
        ids = (
            torch.arange(N_TRAIN)
            if split == "train"
            else torch.arange(N_TRAIN, len(labels))
        )
        return images[ids], labels[ids], ids

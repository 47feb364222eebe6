"""Image classification tasks: pixels as features, removal by a named baseline image.

The feature space is the pixel grid ``(H, W)`` with channels pooled, so an attribution is a
heatmap. A pixel is "removed" by replacing all its channels with a baseline image; which
baseline (the missingness model) changes every faithfulness number, so it is a constructor
argument recorded as ``removal_name``:

- ``zero``: a constant value (0.0 by default), the classic deletion/insertion baseline;
- ``mean``: the per-channel mean of the training data, so removal does not shift brightness;
- ``blur``: a Gaussian-blurred copy of the image, which removes shape but keeps colour and
  low frequencies (Fong & Vedaldi, "Interpretable Explanations of Black Boxes by Meaningful
  Perturbation", ICCV 2017).

The same baseline is handed to gradient methods (Integrated Gradients' reference input), so
"removed" means one thing for every method and metric of a task.

Group-wise methods (feature ablation, LIME, KernelSHAP) switch **superpixels** on and off, as
LIME does for images: SLIC-zero (Achanta et al. 2012, scikit-image's ``slic(slic_zero=True)``,
which sets the compactness per superpixel, so no intensity-scale parameter is needed) with one
superpixel per ``SUPERPIXEL_AREA`` pixels (64 on a 32x32 image), on each image as it is.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaiboard.benchmark.task import GradientSpec, Task

ImageRemoval = Literal["zero", "mean", "blur"]
IMAGE_REMOVALS: tuple[ImageRemoval, ...] = ("zero", "mean", "blur")
#: pixels per superpixel (on average) for group-wise methods
SUPERPIXEL_AREA = 16


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Blur ``[B, C, H, W]`` images with a separable Gaussian (reflect-padded, 3 sigma radius)."""
    radius = max(1, round(3 * sigma))
    window = torch.signal.windows.gaussian(2 * radius + 1, std=sigma, dtype=images.dtype, device=images.device)
    window = window / window.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, window.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, window.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


class ImageTask(Task):
    """Base class for image classification tasks with inputs ``[B, C, H, W]``.

    Subclasses set ``image_shape``, ``weights_stem`` and ``recipe`` and implement the data,
    model and training methods and ``cam_layer``.
    """

    modality = "image"
    has_ground_truth: ClassVar[bool] = False
    #: ``(C, H, W)`` of one input image
    image_shape: ClassVar[tuple[int, int, int]]
    #: file stem of the committed weights under ``tasks/weights/``
    weights_stem: ClassVar[str]
    #: training hyperparameters, recorded with the committed weights
    recipe: ClassVar[dict[str, Any]]
    #: training samples averaged for the ``mean`` baseline
    mean_samples: ClassVar[int] = 2048
    #: ``(inputs, their in-place version, baseline)`` of the last batch ``remove`` saw
    _baseline_memo: tuple[Tensor, int, Tensor] | None = None

    def __init__(self, removal: ImageRemoval = "zero", baseline_value: float = 0.0, blur_sigma: float = 2.0) -> None:
        if removal not in IMAGE_REMOVALS:
            raise ValueError(f"unknown image removal {removal!r}; choose one of {', '.join(IMAGE_REMOVALS)}")
        self.removal_name = removal
        self.baseline_value = baseline_value
        self.blur_sigma = blur_sigma

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return self.image_shape[1:]

    def valid_features(self, inputs: Tensor) -> Tensor:
        return torch.ones(inputs.shape[0], *self.feature_shape, dtype=torch.bool, device=inputs.device)

    @cached_property
    def channel_mean(self) -> Tensor:
        """Per-channel mean ``[C]`` of the training split (seed 0), the ``mean`` baseline.

        Built as an ordinary tensor even when first asked for inside the removal engine's
        inference mode, because gradient methods later use it as their baseline.
        """
        with torch.inference_mode(False):
            return self.samples("train", self.mean_samples, seed=0).inputs.mean(dim=(0, 2, 3))

    @property
    def removal_baseline(self) -> str:
        """What a removed pixel becomes, in words, for the task card."""
        if self.removal_name == "blur":
            return f"a Gaussian-blurred copy of the image (sigma {self.blur_sigma} px)"
        if self.removal_name == "mean":
            return f"the per-channel mean of {self.mean_samples} train-split images"
        return f"the constant pixel value {self.baseline_value}"

    def baseline(self, inputs: Tensor) -> Tensor:
        """The fully removed version of each image, ``[B, C, H, W]``."""
        if self.removal_name == "blur":
            return gaussian_blur(inputs, self.blur_sigma)
        if self.removal_name == "mean":
            mean = self.channel_mean.to(device=inputs.device, dtype=inputs.dtype)
            return mean.view(1, -1, 1, 1).expand_as(inputs)
        return torch.full_like(inputs, self.baseline_value)

    def remove(self, inputs: Tensor, keep: Tensor) -> Tensor:
        batch, k = keep.shape[:2]
        kept = torch.where(keep.unsqueeze(2), inputs.unsqueeze(1), self._memo_baseline(inputs).unsqueeze(1))
        return kept.reshape(batch * k, *inputs.shape[1:])

    def _memo_baseline(self, inputs: Tensor) -> Tensor:
        """``baseline(inputs)``, built once per batch: the removal engine calls ``remove`` once per
        chunk of the same inputs, and a blur costs as much as a small model pass.

        Keyed by the tensor's identity and in-place version, so a new or modified batch gets a
        new baseline; the memo holds the batch itself, so its identity cannot be reused.
        Inference tensors have no version and are not memoised.
        """
        if inputs.is_inference():
            return self.baseline(inputs)
        memo = self._baseline_memo
        if memo is None or memo[0] is not inputs or memo[1] != inputs._version:
            memo = self._baseline_memo = (inputs, inputs._version, self.baseline(inputs))
        return memo[2]

    def predict(self, model: nn.Module, model_inputs: Tensor) -> Tensor:
        return model(model_inputs)

    def gradient_spec(self, model: nn.Module, inputs: Tensor) -> GradientSpec:
        return GradientSpec(model, inputs, self.baseline(inputs))

    def pool(self, attributions: Tensor, inputs: Tensor) -> Tensor:
        return attributions.sum(dim=1)

    def model_free_attribution(self, inputs: Tensor) -> Tensor:
        return inputs.abs().sum(dim=1)

    def feature_groups(self, inputs: Tensor) -> Tensor:
        """SLIC-zero superpixels of each image, ``[B, H, W]`` with ids ``0..G-1`` per image."""
        return superpixels(inputs, SUPERPIXEL_AREA)

    def perturb(self, inputs: Tensor, radius: float, generator: torch.Generator) -> Tensor:
        noise = torch.rand(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        return inputs + radius * (2 * noise - 1)

    @abstractmethod
    def cam_layer(self, model: nn.Module) -> nn.Module:
        """The last convolutional layer of the task's model."""


def superpixels(images: Tensor, area: int) -> Tensor:
    """SLIC-zero labels ``[B, H, W]`` for ``[B, C, H, W]`` images, about ``H * W / area``
    segments each, labels renumbered to ``0..G-1`` (SLIC may return fewer than asked)."""
    from skimage.segmentation import slic

    pixels = images.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    segments = max(1, pixels.shape[1] * pixels.shape[2] // area)
    labels = [
        torch.from_numpy(slic(image, n_segments=segments, slic_zero=True, start_label=0, channel_axis=-1))
        for image in pixels
    ]
    return _renumber(torch.stack(labels).to(images.device))


def _renumber(labels: Tensor) -> Tensor:
    """Labels per row renumbered to ``0..G-1`` in order of first value."""
    flat = labels.flatten(1)
    present = torch.zeros(flat.shape[0], int(flat.max()) + 1, dtype=torch.long, device=flat.device)
    present.scatter_(1, flat, 1)
    rank = present.cumsum(dim=1) - 1
    return rank.gather(1, flat).view_as(labels)


"""Grad-CAM++ and Score-CAM against their closed forms on a CAM layer feeding a linear
global-average-pooling head, and on every image task."""

from __future__ import annotations

import pytest
import torch
from hub_offline import offline_hub
from method_checks import assert_well_formed_and_deterministic
from mirror_image import MNIST_COPY, build_mnist_mirror
from torch import Tensor, nn

import xaiboard.tasks  # noqa: F401  (register the built-in tasks)
from toy_task import ToyTask
from xaiboard.benchmark.registry import METHODS, TASKS
from xaiboard.methods import gradcampp, scorecam  # noqa: F401  (register)
from xaiboard.tasks.mnist import MnistTask

FLOAT_TOL = 1e-5  # sums over 16 positions and 2 channels of values < 10, in float32
CONV = (1.0, -1.0)  # the 1x1 CAM layer: channel 1 is the image, channel 2 its negative
HEAD = ((0.5, -1.5), (2.0, 0.5))  # class c's logit = sum_k HEAD[c][k] * mean(A_k)


class GapModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(CONV).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor(HEAD))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class GapTask(ToyTask):
    """The toy task (its CAM layer is ``model.conv``) with a linear head on the pooled CAM layer."""

    def model(self, device="cpu") -> nn.Module:
        return GapModel().eval().to(device)


def test_gradcam_pp_on_a_linear_gap_head_is_its_closed_form():
    """With ``S = sum_k v_k mean(A_k)`` the gradient is ``v_k / (HW)`` everywhere, so
    ``alpha = 1 / (2 + v_k mean(A_k))`` and ``w_k = relu(v_k) / (2 + v_k mean(A_k))``
    (Grad-CAM's would be ``v_k / (HW)``); the map is ``relu(sum_k w_k A_k)``."""
    task = GapTask()
    model, batch = task.model(), task.samples("test", 6, seed=1)
    activations = model.conv(batch.inputs).detach()
    v = torch.tensor(HEAD)[batch.targets]  # [B, 2]
    weights = v.relu() / (2 + v * activations.mean(dim=(2, 3)))
    expected = (weights[..., None, None] * activations).sum(dim=1).relu()
    scores = METHODS.create("gradcam_pp").explain(model, batch.inputs, batch.targets, task)
    torch.testing.assert_close(scores, expected, atol=FLOAT_TOL, rtol=0)
    assert scores.flatten(1).amax(dim=1).gt(0).all()


def test_scorecam_on_a_linear_gap_head_is_its_closed_form():
    """Channel ``k``'s mask is ``H_k = minmax(A_k)``: ``minmax(x)`` for the image channel and
    ``1 - minmax(x)`` for its negative. The head is linear, so the masked input's logit is
    ``sum_m v_m CONV_m mean(x * H_k)``; the weights are its softmax over the two channels."""
    task = GapTask()
    model, batch = task.model(), task.samples("test", 6, seed=1)
    x = batch.inputs[:, 0]
    low, high = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
    masks = torch.stack([(x - low) / (high - low), (high - x) / (high - low)], dim=1)
    slope = (torch.tensor(HEAD)[batch.targets] * torch.tensor(CONV)).sum(dim=1)  # d logit / d mean(x)
    weights = (slope[:, None] * (x[:, None] * masks).mean(dim=(2, 3))).softmax(dim=1)
    expected = ((weights[:, 0] - weights[:, 1])[:, None, None] * x).relu()
    scores = METHODS.create("scorecam").explain(model, batch.inputs, batch.targets, task)
    torch.testing.assert_close(scores, expected, atol=FLOAT_TOL, rtol=0)


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    if not MNIST_COPY.is_dir():
        pytest.skip(f"no offline MNIST copy at {MNIST_COPY}")
    with offline_hub(build_mnist_mirror(tmp_path_factory.mktemp("hub"))):
        task = MnistTask()
        task.split_data("test")
        yield task


@pytest.mark.parametrize("task_name", ["image/shapes", "image/digits", "image/digit-grid", "image/mnist"])
@pytest.mark.parametrize("name", ["gradcam_pp", "scorecam"])
def test_cam_methods_on_the_image_tasks(task_name, name, request):
    """The explanation contract, and nonnegative. A sample's map may be all zero: it is the ReLU
    of a combination of the last convolution's pre-ReLU activations, as Grad-CAM's is; on
    image/digits those are mostly negative and most Score-CAM (and Grad-CAM) maps are zero. On
    image/shapes 58 of the first 64 Score-CAM maps are zero (the first non-zero one is the 37th),
    so "not all zero" is checked on 64 samples there."""
    task = request.getfixturevalue("mnist") if task_name == "image/mnist" else TASKS.create(task_name)
    method = METHODS.create(name)
    assert_well_formed_and_deterministic(method, task, n=64 if name == "scorecam" else 4)
    model, batch = task.model(), task.samples("test", 4, seed=0)
    assert (method.explain(model, batch.inputs, batch.targets, task) >= 0).all()

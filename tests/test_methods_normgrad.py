"""NormGrad against its closed form on the linear toy model, and on the image tasks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xaiboard.tasks  # noqa: F401  (register the built-in tasks)
from toy_task import ToyTask
from xaiboard.benchmark.registry import METHODS, TASKS
from xaiboard.methods import normgrad  # noqa: F401  (register)

FLOAT_TOL = 1e-5  # products of two norms over 2 channels, in float32


class ToyWithCam(ToyTask):
    def cam_layer(self, model: nn.Module) -> nn.Module:
        return model.conv


def test_normgrad_is_activation_norm_times_gradient_norm():
    """The toy model's 1x1 conv outputs ``(x, -x)``; the gradient at it is the fc weights of the
    target for both channels. So position p scores ``sqrt(2) |x_p| * ||w_t[:, p]||``; one layer,
    so both variants agree (the aggregated one up to its per-image scaling)."""
    task = ToyWithCam()
    model, batch = task.model(), task.samples("test", 6, seed=1)
    weights = model.fc.weight.view(2, 2, 4, 4)[batch.targets]  # [B, channel, 4, 4]
    expected = 2**0.5 * batch.inputs[:, 0].abs() * weights.norm(dim=1)
    single = METHODS.create("normgrad").explain(model, batch.inputs, batch.targets, task)
    torch.testing.assert_close(single, expected, atol=FLOAT_TOL, rtol=0)
    aggregated = METHODS.create("normgrad_aggregated").explain(model, batch.inputs, batch.targets, task)
    scaled = expected / expected.flatten(1).amax(dim=1).view(-1, 1, 1)
    torch.testing.assert_close(aggregated, scaled, atol=FLOAT_TOL, rtol=0)


@pytest.mark.parametrize("task_name", ["image/shapes", "image/digits", "image/digit-grid"])
@pytest.mark.parametrize("name", ["normgrad", "normgrad_aggregated"])
def test_normgrad_on_the_image_tasks(task_name, name):
    """Right shape, finite, nonnegative, deterministic; on digit-grid the variants coincide up to
    scale (only the mosaic covers the whole image)."""
    task = TASKS.create(task_name)
    model, batch = task.model(), task.samples("test", 4, seed=0)
    scores = METHODS.create(name).explain(model, batch.inputs, batch.targets, task)
    assert scores.shape == batch.valid.shape and torch.isfinite(scores).all() and (scores >= 0).all()
    assert scores.flatten(1).amax(dim=1).gt(0).all()
    assert torch.equal(scores, METHODS.create(name).explain(model, batch.inputs, batch.targets, task))
    if task_name == "image/digit-grid" and name == "normgrad_aggregated":
        single = METHODS.create("normgrad").explain(model, batch.inputs, batch.targets, task)
        torch.testing.assert_close(scores, single / single.flatten(1).amax(dim=1).view(-1, 1, 1), atol=1e-6, rtol=0)

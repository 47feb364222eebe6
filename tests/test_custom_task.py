"""A task of one's own: the bases of ``tasks/custom.py``, and the README's example file, copied
outside the package, end to end.

``examples/custom_task.py`` defines data, model and ground truth from scratch (8x8 bar images,
a fixed line detector) on top of ``PretrainedImageTask``; nothing in the package knows it. The
end-to-end test drives it through the CLI in a fresh process, as a user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import xaiboard.benchmark.metrics  # noqa: F401  (registers the built-in metrics)
import xaiboard.methods  # noqa: F401
from test_cli import CAPTUM_METHOD
from xaiboard.benchmark.cache import ExplanationCache
from xaiboard.benchmark.registry import METHODS, METRICS
from xaiboard.benchmark.runner import run
from xaiboard.benchmark.store import ResultStore
from xaiboard.benchmark.task import Batch
from xaiboard.tasks.custom import PretrainedImageTask, TrainedModel

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_task.py"


class Blocks(PretrainedImageTask):
    """4x4 images, class 1 iff the top-left 2x2 block is bright"""

    name, num_classes, image_shape, has_ground_truth = "test/blocks", 2, (1, 4, 4), True

    def model(self, device="cpu") -> nn.Module:
        """An MLP, fixed by its seed: no convolution for a CAM method to read."""
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)).eval().to(device)

    def samples(self, split: str, n: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 2, (n,), generator=g)
        images = 0.3 * torch.rand(n, 1, 4, 4, generator=g)
        images[labels == 1, :, :2, :2] += 1.0
        truth = torch.zeros(n, 4, 4, dtype=torch.bool)
        truth[:, :2, :2] = True
        return Batch(images, labels, labels, self.valid_features(images), truth, torch.arange(n))


def test_a_task_that_brings_its_model_needs_no_stubs():
    """No weights_stem, recipe, train_model, build_model, cam_layer, version or card in the class."""
    task = Blocks()
    assert (task.version, task.weights_stem, task.recipe) == ("1", "", {})
    assert isinstance(task.build_model(), nn.Sequential)
    with pytest.raises(NotImplementedError, match="test/blocks brings its own trained model"):
        task.train_model()
    card = task.card
    assert card.dataset == "4x4 images, class 1 iff the top-left 2x2 block is bright"
    assert (card.feature_space, card.removal, card.removal_baseline) == ("pixels 4x4", "zero", "the constant pixel value 0.0")
    assert card.model.startswith("brought by the task") and card.ground_truth.startswith("per sample")


def test_the_default_cam_layer_is_the_last_convolution():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 3, 3), nn.Flatten())
    assert Blocks().cam_layer(model) is model[2]


def test_cam_methods_are_not_applicable_to_a_model_without_convolution(tmp_path):
    """A CAM method on an MLP is recorded not applicable, with the reason; the others run."""
    records = run([Blocks()], ["gradcam", "saliency"], ["gt_auroc"], n=4, device="cpu", progress=False,
                  store=ResultStore(tmp_path / "results"), cache=ExplanationCache(tmp_path / "cache"))  # fmt: skip
    status = {r.method: (r.status, r.reason) for r in records}
    assert status["saliency"] == ("ok", None)
    assert status["gradcam"][0] == "not-applicable"
    assert status["gradcam"][1] == (
        "gradcam does not apply to test/blocks: the model of test/blocks (Sequential) has no nn.Conv2d layer "
        "for a CAM method to read; override the task's cam_layer(model) to name one"
    )


def test_a_task_with_a_recipe_names_its_weights_after_itself():
    class Recipe(TrainedModel, Blocks):
        name = "test/recipe@2"

    task = Recipe()
    assert task.weights_stem == "test_recipe_2" and task.card.model == "trained by the task's recipe (no parameters)"
    with pytest.raises(FileNotFoundError, match="no weights for test/recipe@2: train them with `xaiboard train-model"):
        task.model()


def _xaiboard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "xaiboard.benchmark.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_custom_task_from_a_file_runs_every_method_and_metric(tmp_path):
    plugin = shutil.copy(EXAMPLE, tmp_path / "my_task.py")
    env = {**os.environ, "XAIBOARD_CACHE": str(tmp_path / "cache")}

    shown = _xaiboard("task", "show", "my/bars", "--plugin", plugin, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "generated 8x8 images with one horizontal or vertical bar" in shown.stdout and "pixels 8x8" in shown.stdout

    # no --tasks: the plugin's task only; a method of one's own that calls Captum beside the
    # baselines; --quiet: nothing on stderr, not even Captum's warnings
    method = tmp_path / "raw_deeplift.py"
    method.write_text(CAPTUM_METHOD)
    results = tmp_path / "results"
    ran = _xaiboard("run", "--plugin", plugin, "--plugin", str(method), "--n", "6", "--device", "cpu",
                    "--results-dir", str(results), "--quiet", env=env)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stderr == ""
    records, errors = ResultStore(results).records()
    assert not errors and {r.task for r in records} == {"my/bars"}
    assert [(r.method, r.metric, r.error) for r in records if r.status != "ok"] == []
    assert {r.method for r in records if r.metric == "gt_auroc"} >= {"test-cli-raw-deeplift", "gradcam"}
    records = [r for r in records if r.method != "test-cli-raw-deeplift"]
    image_methods = {m for m in METHODS.names()
                     if METHODS.factory(m).__module__.startswith("xaiboard.") and "image" in METHODS.factory(m).modalities
                     and METHODS.factory(m).tier == "default"}  # fmt: skip
    image_metrics = {m for m in METRICS.names()
                     if METRICS.factory(m).__module__.startswith("xaiboard.") and "image" in METRICS.factory(m).modalities
                     and getattr(METRICS.factory(m), "tier", "default") == "default"}  # fmt: skip
    assert {(r.method, r.metric) for r in records} == {(m, k) for m in image_methods for k in image_metrics}
    auroc = {r.method: r.summary.mean for r in records if r.metric == "gt_auroc"}
    # the detector is piecewise linear in the bar pixels: IG (zero baseline) ranks the bar first
    assert auroc["integrated_gradients"] > 0.95
    assert abs(auroc["random"] - 0.5) < 0.15  # 6 samples x 64 pixels, bar share 1/8

    train = _xaiboard("run", "--plugin", plugin, "--methods", "saliency", "--metrics", "gt_auroc", "--n", "6",
                      "--split", "train", "--device", "cpu", "--results-dir", str(tmp_path / "train"), "--quiet", env=env)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    on_train = ResultStore(tmp_path / "train").find("my/bars", "saliency", "gt_auroc")
    on_test = ResultStore(results).find("my/bars", "saliency", "gt_auroc")
    assert (on_train.split, on_test.split) == ("train", "test") and on_train.scores != on_test.scores

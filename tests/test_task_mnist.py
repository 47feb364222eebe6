"""``image/mnist`` (hub tier): loaded through the real ``datasets`` path from a local mirror of
``ylecun/mnist`` built from ``../shared/data/mnist-test``, offline."""

from __future__ import annotations

import pytest
import torch
from hub_offline import offline_hub
from mirror_image import (
    MNIST_COPY,
    build_mnist_mirror,
    check_removal_ends,
    run_end_to_end,
)
from xaiboard.benchmark.registry import TASKS
from xaiboard.tasks.digits import accuracy
from xaiboard.tasks.mnist import N_TRAIN, REVISION, MnistTask
from xaiboard.tasks.weights import weights_meta

pytestmark = pytest.mark.skipif(
    not MNIST_COPY.is_dir(), reason=f"no offline MNIST copy at {MNIST_COPY}"
)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The task with its data loaded from the mirror under HF_HUB_OFFLINE (no network)."""
    mirror = build_mnist_mirror(tmp_path_factory.mktemp("hub"))
    with offline_hub(mirror):
        task = MnistTask()
        task.split_data("test")  # loads and caches the hub split
        yield task


@pytest.fixture(scope="module")
def model(task):
    return task.model()


def test_registered_hub_task_with_pinned_revision(task):
    assert isinstance(TASKS.create("image/mnist"), MnistTask)
    card = task.card
    assert task.tier == "hub" and not task.has_ground_truth
    assert card.dataset_revision == REVISION and len(REVISION) == 40
    assert "first 8,000" in card.splits and "last 2,000" in card.splits
    assert card.test_accuracy == weights_meta("image_mnist")["test_accuracy"]


def test_splits_come_from_the_hub_test_split(task):
    train_images, _, train_ids = task.split_data("train")
    test_images, test_labels, test_ids = task.split_data("test")
    assert train_images.shape == (N_TRAIN, 1, 28, 28) and test_images.shape == (
        10_000 - N_TRAIN,
        1,
        28,
        28,
    )
    assert torch.equal(torch.cat([train_ids, test_ids]), torch.arange(10_000))
    assert test_images.min() == 0 and test_images.max() == 1
    assert torch.bincount(test_labels, minlength=10).min() > 150
    assert test_labels[-1] == 6  # the last label of the canonical MNIST test set


def test_samples_are_deterministic_and_held_out(task):
    a = task.samples("test", 64, seed=3)
    assert torch.equal(a.ids, task.samples("test", 64, seed=3).ids)
    assert torch.equal(a.inputs[:8], task.samples("test", 8, seed=3).inputs)
    assert (
        a.ids.min() >= N_TRAIN
        and a.ground_truth is None
        and torch.equal(a.targets, a.labels)
    )


def test_committed_weights_accuracy_on_the_held_out_images(task, model):
    measured = accuracy(model, *task.split_data("test")[:2])
    assert measured >= 0.97
    assert measured == pytest.approx(
        weights_meta("image_mnist")["test_accuracy"], abs=1e-6
    )


def test_removal_of_nothing_and_everything(task, model):
    check_removal_ends(task, model, task.samples("test", 4, seed=0).inputs)


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_saliency_and_deletion_end_to_end(task, tmp_path):
    record = run_end_to_end(task, "deletion_auc", 4, tmp_path)
    assert 0 <= record.summary.mean <= 1


@pytest.mark.slow
def test_train_model_reproduces_committed_accuracy(task):
    """~25 s on the shared 2-core CPU, hence slow."""
    _, measured = task.train_model(seed=0)
    assert measured == pytest.approx(
        weights_meta("image_mnist")["test_accuracy"], abs=0.01
    )

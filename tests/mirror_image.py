"""Shared helpers of the image tasks' tests: hub mirrors built from the offline copies in
``../shared/data/``, and the removal and end-to-end checks every image task passes.

A mirror is laid out like the hub repository (``<mirror>/<owner>/<name>/<files>``) with the
hub's columns and feature types, so the task loads it with the same ``datasets`` code path it
uses against the hub (see ``tasks/hub.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import xaiboard.benchmark.metrics
import xaiboard.methods  # noqa: F401  (registers the baselines)
from torch import Tensor, nn
from xaiboard.benchmark.cache import ExplanationCache
from xaiboard.benchmark.record import ResultRecord
from xaiboard.benchmark.runner import run
from xaiboard.benchmark.reproductions.mnist_lenet import read_idx
from xaiboard.benchmark.store import ResultStore
from xaiboard.tasks.image import ImageTask

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_COPY = SHARED_DATA / "mnist-test"


def build_mnist_mirror(mirror: Path) -> Path:
    """Write ``ylecun/mnist``'s test split as on the hub (``mnist/test-00000-of-00001.parquet``:
    ``image`` as PNG-encoded Image, ``label`` as ClassLabel '0'..'9'); returns the mirror root."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    images = read_idx(MNIST_COPY / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = read_idx(MNIST_COPY / "t10k-labels-idx1-ubyte.gz", 8)
    features = Features(
        {"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])}
    )
    data = {
        "image": [PILImage.fromarray(image, mode="L") for image in images],
        "label": labels.tolist(),
    }
    target = mirror / "ylecun" / "mnist" / "mnist" / "test-00000-of-00001.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(data, features=features).to_parquet(str(target))
    return mirror


def check_removal_ends(task: ImageTask, model: nn.Module, inputs: Tensor) -> None:
    """Removing nothing reproduces the model's logits; removing everything gives the task's
    documented baseline image (and the model's logits on it)."""
    keep = torch.stack(
        [
            torch.ones(len(inputs), *task.feature_shape),
            torch.zeros(len(inputs), *task.feature_shape),
        ],
        1,
    )
    rows = task.remove(inputs, keep.bool())
    assert torch.equal(rows[0::2], inputs) and torch.equal(
        rows[1::2], task.baseline(inputs)
    )
    with torch.no_grad():
        logits = task.predict(model, rows).view(len(inputs), 2, -1)
        torch.testing.assert_close(
            logits[:, 0], task.logits(model, inputs), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            logits[:, 1], model(task.baseline(inputs)), atol=1e-5, rtol=0
        )


def run_end_to_end(task: ImageTask, metric: str, n: int, tmp: Path) -> ResultRecord:
    """Saliency and one metric through the runner on ``n`` test samples; the one ok record."""
    store, cache = ResultStore(tmp / "results"), ExplanationCache(tmp / "cache")
    (record,) = run(
        [task],
        ["saliency"],
        [metric],
        n=n,
        device="cpu",
        store=store,
        cache=cache,
        progress=False,
    )
    assert record.status == "ok", record.error
    return record

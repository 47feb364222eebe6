"""``text/movie-rationales`` loaded through the hub code path from an offline mirror of
``eraser-benchmark/movie_rationales`` (built from the ERASER archive in ``../shared/data``)."""

from __future__ import annotations

import pytest
import torch
import xaiboard.benchmark.metrics
import xaiboard.methods  # noqa: F401  (registers the methods)
from hub_offline import offline_hub
from mirror_text import eraser_movies, movie_rationales_mirror
from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.registry import METHODS, METRICS, TASKS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.tasks.minilm import WINDOW
from xaiboard.tasks.movie_rationales import (
    CHUNKS,
    PER_CHUNK,
    MovieRationales,
    rationale_words,
)

N_ACCURACY = 24  # reviews re-scored here (~1 s each on a CPU); the card's accuracy is over all 199


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> MovieRationales:
    mirror = movie_rationales_mirror(tmp_path_factory.mktemp("hub"))
    with offline_hub(mirror):
        yield MovieRationales()


@pytest.fixture(scope="module")
def model(task):
    return task.model()


@pytest.fixture(scope="module")
def batch(task):
    return task.samples("test", 6, seed=3)


def test_registered_hub_task_with_card():
    task = TASKS.create("text/movie-rationales")
    assert (
        isinstance(task, MovieRationales)
        and task.tier == "hub"
        and task.has_ground_truth
    )
    card = task.card
    assert (
        card.dataset_revision and card.removal_baseline and card.splits and card.licence
    )
    assert card.test_accuracy >= 0.80


def test_splits_match_eraser(task):
    assert [len(task.texts(s)[0]) for s in ("train", "validation", "test")] == [
        1600,
        200,
        199,
    ]


def test_rationale_strings_map_to_erasers_token_offsets():
    """The hub gives rationale strings; matching them as word sequences recovers ERASER's offsets."""
    agree = total = 0
    for row in eraser_movies()["test"]:
        gold = [False] * len(row["review"].split())
        for e in (e for group in row["evidences"] for e in group):
            gold[e["start_token"] : e["end_token"]] = [True] * (
                e["end_token"] - e["start_token"]
            )
        _, marked = rationale_words(
            row["review"], tuple(e["text"] for g in row["evidences"] for e in g)
        )
        agree += sum(a == b for a, b in zip(gold, marked))
        total += len(gold)
    assert agree / total > 0.999


def test_known_review_layout_and_ground_truth(task):
    review = "a dull film .\nbut the cast is great fun ."
    ids, truth = task.layout(review, ("great fun",))
    tokens = task.tokenizer.convert_ids_to_tokens(ids)
    assert tokens == [
        "[CLS]",
        "a",
        "dull",
        "film",
        ".",
        "but",
        "the",
        "cast",
        "is",
        "great",
        "fun",
        ".",
        "[SEP]",
    ]
    assert [t for t, g in zip(tokens, truth) if g] == ["great", "fun"]


def test_long_reviews_are_chunked_and_capped(task, batch):
    tok = task.tokenizer
    ids = batch.inputs.input_ids
    assert ids.shape == (6, CHUNKS * WINDOW)
    assert batch.valid.sum(dim=1).max() <= CHUNKS * PER_CHUNK
    for row in ids:
        used = int((row != tok.pad_token_id).sum())
        starts = torch.arange(0, used, WINDOW)
        assert (row[starts] == tok.cls_token_id).all()  # every chunk opens with [CLS]
        assert int((row == tok.sep_token_id).sum()) == len(starts)


def test_ground_truth_share_is_plausible(task):
    batch = task.samples("test", 40, seed=0)
    assert not (batch.ground_truth & ~batch.valid).any()
    share = batch.ground_truth.sum() / batch.valid.sum()
    assert 0.15 < share < 0.45  # ERASER's comprehensive test rationales: ~31 % of words


def test_samples_are_deterministic(task, batch):
    again = task.samples("test", 6, seed=3)
    assert torch.equal(again.inputs.input_ids, batch.inputs.input_ids)
    assert torch.equal(again.ground_truth, batch.ground_truth) and torch.equal(
        again.labels, batch.labels
    )


def test_committed_head_accuracy(task, model):
    assert sum(v.numel() for v in model.state_dict().values()) < 50_000
    assert (
        task.accuracy(model, task.samples("test", N_ACCURACY, seed=0), rows=8) >= 0.75
    )


def test_removing_nothing_and_everything(task, model):
    batch = task.samples("test", 2, seed=1)
    keep = torch.ones(2, 1, *task.feature_shape, dtype=torch.bool)
    with torch.no_grad():
        full = task.logits(model, batch.inputs)
        torch.testing.assert_close(
            task.predict(model, task.remove(batch.inputs, keep)),
            full,
            atol=1e-5,
            rtol=0,
        )
        removed = task.remove(batch.inputs, ~keep)
    assert torch.equal(removed.input_ids == task.tokenizer.mask_token_id, batch.valid)


def test_saliency_and_gt_auroc_end_to_end(task, model):
    batch = task.samples("test", 2, seed=0)
    explanation = METHODS.create("saliency").explain(
        model, batch.inputs, batch.targets, task
    )
    assert explanation.shape == batch.valid.shape and torch.isfinite(explanation).all()
    ctx = MetricContext(
        task,
        model,
        batch,
        explanation,
        RemovalEngine(task, model),
        seed=0,
        device=torch.device("cpu"),
    )
    scores = METRICS.create("gt_auroc").compute(ctx)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()

"""``text/sst2`` loaded through the hub code path from an offline mirror of ``stanfordnlp/sst2``."""

from __future__ import annotations

import pytest
import torch
import xaiboard.benchmark.metrics
import xaiboard.methods  # noqa: F401  (registers the methods)
from hub_offline import offline_hub
from mirror_text import sst2_mirror
from test_metrics_robustness_sanity import assert_cascade_randomises_block_by_block
from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.sensitivity import perturbed_explanations
from xaiboard.benchmark.registry import METHODS, METRICS, TASKS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.tasks.sst2 import SST2


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> SST2:
    mirror = sst2_mirror(tmp_path_factory.mktemp("hub"))
    with offline_hub(mirror):
        yield SST2()


@pytest.fixture(scope="module")
def model(task):
    return task.model()


@pytest.fixture(scope="module")
def batch(task):
    return task.samples("test", 8, seed=3)


def test_registered_hub_task_with_card():
    task = TASKS.create("text/sst2")
    assert isinstance(task, SST2) and task.tier == "hub" and task.version == "1"
    card = task.card
    assert (
        card.dataset_revision and card.removal_baseline and card.splits and card.licence
    )
    assert card.test_accuracy >= 0.80


def test_splits_are_the_hub_train_and_validation(task):
    train, test = task.texts("train"), task.texts("test")
    assert len(train[0]) == 67349 and len(test[0]) == 872
    assert set(test[1].tolist()) == {0, 1}
    with pytest.raises(ValueError, match="unknown split"):
        task.samples("validation", 4, seed=0)


def test_samples_are_deterministic_and_prefix_stable(task, batch):
    again = task.samples("test", 8, seed=3)
    assert torch.equal(again.inputs.input_ids, batch.inputs.input_ids) and torch.equal(
        again.labels, batch.labels
    )
    assert torch.equal(task.samples("test", 4, seed=3).ids, batch.ids[:4])
    assert not torch.equal(task.samples("test", 8, seed=4).ids, batch.ids)


def test_features_are_wordpieces_without_specials(task, batch):
    tok = task.tokenizer
    ids = batch.inputs.input_ids
    special = (
        (ids == tok.cls_token_id)
        | (ids == tok.sep_token_id)
        | (ids == tok.pad_token_id)
    )
    assert torch.equal(batch.valid, ~special) and batch.ground_truth is None
    texts, _ = task.texts("test")
    pieces = [
        len(tok(texts[i], add_special_tokens=False)["input_ids"])
        for i in batch.ids.tolist()
    ]
    assert batch.valid.sum(dim=1).tolist() == pieces


def test_committed_weights_are_small_and_accurate(task, model):
    """All 872 validation sentences, as the card's accuracy."""
    assert (
        sum(v.numel() for v in model.state_dict().values()) < 50_000
    )  # head + BitFit parameters only
    accuracy = task.accuracy(model, task.samples("test", 872, seed=0), rows=128)
    assert accuracy >= 0.80
    assert accuracy == pytest.approx(
        task.card.test_accuracy, abs=0.003
    )  # batch-size float noise


def test_removing_nothing_and_everything(task, model, batch):
    keep = torch.ones(len(batch), 1, *task.feature_shape, dtype=torch.bool)
    with torch.no_grad():
        full = task.logits(model, batch.inputs)
        torch.testing.assert_close(
            task.predict(model, task.remove(batch.inputs, keep)),
            full,
            atol=1e-5,
            rtol=0,
        )
        removed = task.remove(batch.inputs, ~keep)
        assert torch.equal(
            removed.input_ids == task.tokenizer.mask_token_id, batch.valid
        )  # the documented baseline
        assert not torch.allclose(task.predict(model, removed), full, atol=1e-3)


def test_saliency_and_deletion_auc_end_to_end(task, model):
    batch = task.samples("test", 4, seed=0)
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
    scores = METRICS.create("deletion_auc").compute(ctx)
    assert scores.shape == (4,) and ((scores >= 0) & (scores <= 1)).all()


def test_mprt_randomises_minilm_block_by_block(model):
    """Head, the 6 encoder layers top down, embeddings: 8 steps instead of 54 parameter-owning
    modules; the unused pooler is not a step."""
    layers = [f"encoder.encoder.layer.{i}" for i in range(5, -1, -1)]
    assert_cascade_randomises_block_by_block(model, ["head", *layers, "encoder.embeddings"])


def test_noisy_copies_explained_together_equal_one_by_one(task, model):
    """Robustness metrics explain concatenated noisy copies (TextInputs.concat) in one call."""
    batch = task.samples("test", 3, seed=0)
    explain = lambda m, x, t: METHODS.create("saliency").explain(m, x, t, task)  # noqa: E731
    ctx = MetricContext(task, model, batch, batch.valid.float(), RemovalEngine(task, model), 0, torch.device("cpu"), explain)
    shared = perturbed_explanations(ctx, 2, 0.2)
    one_by_one = torch.stack([explain(model, x, batch.targets) for x in shared.noisy])
    torch.testing.assert_close(shared.explanations, one_by_one, atol=1e-6, rtol=1e-4)
    with torch.no_grad():
        logits = torch.stack([task.logits(model, x) for x in shared.noisy])
    torch.testing.assert_close(shared.logits, logits, atol=1e-5, rtol=0)

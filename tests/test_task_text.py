"""The text modality and the ``text/planted`` task (both versions): removal, features, data,
committed model; version 2's matched evidence frequencies."""

from __future__ import annotations

import pytest
import torch

from xaiboard.benchmark.metrics.ground_truth import gt_auroc
from xaiboard.benchmark.registry import TASKS
from xaiboard.tasks.planted_text import FILLER, MIRROR_RANKS, NEGATIVE, POSITIVE, PlantedText, PlantedTextV2


@pytest.fixture(scope="module", params=[PlantedText, PlantedTextV2], ids=["v1", "v2"])
def task(request) -> PlantedText:
    return request.param()


@pytest.fixture(scope="module")
def model(task):
    return task.model()


@pytest.fixture(scope="module")
def batch(task):
    return task.samples("test", 16, seed=3)


def test_registered_versions():
    """The default suite runs version 2; version 1 stays loadable under its own name, archived."""
    current, archived = TASKS.create("text/planted"), TASKS.create("text/planted@1")
    assert type(current) is PlantedTextV2 and current.version == "2" and current.tier == "built-in"
    assert type(archived) is PlantedText and archived.version == "1" and archived.tier == "archived"
    assert archived.name == "text/planted@1" and archived.weights_stem != current.weights_stem


def test_valid_excludes_special_tokens_and_padding(task, batch):
    tok = task.tokenizer
    ids, valid = batch.inputs.input_ids, batch.valid
    assert not valid[:, 0].any() and (ids[:, 0] == tok.cls_token_id).all()
    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (ids == tok.pad_token_id)
    assert torch.equal(valid, ~special)
    words = torch.tensor([len(t.split()) for t in tok.batch_decode(ids, skip_special_tokens=True)])
    assert torch.equal(valid.sum(dim=1), words)
    assert words.min() >= 8 and words.max() <= 20


def test_ground_truth_is_evidence_positions(task, batch):
    tokens = [task.tokenizer.convert_ids_to_tokens(row) for row in batch.inputs.input_ids]
    for row, gt, label in zip(tokens, batch.ground_truth, batch.labels):
        evidence = {row[i] for i in gt.nonzero().flatten().tolist()}
        others = {row[i] for i in (~gt).nonzero().flatten().tolist()}
        assert 1 <= int(gt.sum()) <= 3
        assert evidence <= set(POSITIVE if label == 1 else NEGATIVE)
        assert not others & set(NEGATIVE + POSITIVE)
    assert not (batch.ground_truth & ~batch.valid).any()


def test_samples_are_deterministic_and_splits_disjoint(task):
    a, b = task.samples("test", 64, seed=5), task.samples("test", 64, seed=5)
    assert torch.equal(a.inputs.input_ids, b.inputs.input_ids) and torch.equal(a.labels, b.labels)
    test = {tuple(r) for r in task.samples("test", 1000, seed=0).inputs.input_ids.tolist()}
    train = {tuple(r) for r in task.samples("train", 2000, seed=0).inputs.input_ids.tolist()}
    assert len(test) == 1000 and not test & train
    with pytest.raises(ValueError, match="unknown split"):
        task.samples("validation", 4, seed=0)


def test_removal_keep_all_reproduces_logits(task, model, batch):
    keep = torch.ones(len(batch), 2, *task.feature_shape, dtype=torch.bool)
    with torch.no_grad():
        removed = task.predict(model, task.remove(batch.inputs, keep))
        full = task.logits(model, batch.inputs)
    # same ids through the same model; only the batch size differs (float reduction order)
    torch.testing.assert_close(removed.view(len(batch), 2, -1), full.unsqueeze(1).expand(-1, 2, -1), atol=1e-5, rtol=0)


def test_removal_masks_valid_tokens_in_b_times_k_order(task, batch):
    b, k = 3, 4
    inputs = task.samples("test", b, seed=7).inputs
    keep = torch.rand(b, k, task.max_length, generator=torch.Generator().manual_seed(0)) < 0.5
    out = task.remove(inputs, keep)
    assert out.input_ids.shape == (b * k, task.max_length)
    valid = task.valid_features(inputs)
    mask_id = task.tokenizer.mask_token_id
    for i in range(b):
        for j in range(k):
            row = out.input_ids[i * k + j]
            removed = ~keep[i, j] & valid[i]
            assert (row[removed] == mask_id).all()
            assert torch.equal(row[~removed], inputs.input_ids[i][~removed])
            assert torch.equal(out.attention_mask[i * k + j], inputs.attention_mask[i])
    # specials and padding are never masked, even when keep says remove everything
    none = task.remove(inputs, torch.zeros(b, 1, task.max_length, dtype=torch.bool))
    assert torch.equal(none.input_ids == mask_id, valid)


def test_removal_zeroes_noise_of_removed_tokens(task, batch):
    noisy = task.perturb(batch.inputs, 0.1, torch.Generator().manual_seed(0))
    bound = 0.1 * task.embedding_scale  # the radius is in units of the embeddings' std
    assert 0.01 < task.embedding_scale < 1
    assert bound * 0.9 < noisy.embedding_noise.abs().max() <= bound
    keep = torch.rand(len(batch), 2, task.max_length, generator=torch.Generator().manual_seed(1)) < 0.5
    out = task.remove(noisy, keep)
    removed = (~keep & batch.valid.unsqueeze(1)).reshape(-1, task.max_length)
    assert (out.embedding_noise[removed] == 0).all()
    expected = noisy.embedding_noise.unsqueeze(1).expand(-1, 2, -1, -1).reshape(out.embedding_noise.shape)
    assert torch.equal(out.embedding_noise[~removed], expected[~removed])


def test_gradient_spec_accepts_captum_style_repeats(task, model, batch):
    spec = task.gradient_spec(model, batch.inputs)
    with torch.no_grad():
        once = spec.forward(spec.inputs, *spec.additional_args)
        thrice = spec.forward(spec.inputs.repeat(3, 1, 1), *(a.repeat(3, 1) for a in spec.additional_args))
        torch.testing.assert_close(once, task.logits(model, batch.inputs), atol=1e-5, rtol=0)
    torch.testing.assert_close(thrice, once.repeat(3, 1), atol=1e-5, rtol=0)  # batch-size float noise
    # the baseline is [MASK]'s embedding exactly at valid positions
    mask_embed = task.embedding_layer(model).weight[task.tokenizer.mask_token_id]
    assert torch.equal(spec.baselines[batch.valid], mask_embed.expand(int(batch.valid.sum()), -1))
    assert torch.equal(spec.baselines[~batch.valid], spec.inputs[~batch.valid])
    assert task.pool(spec.inputs, batch.inputs).shape == batch.valid.shape


def test_model_free_attribution_is_rarity_on_valid_tokens(task, batch):
    rarity = task.model_free_attribution(batch.inputs)
    assert (rarity[~batch.valid] == 0).all() and (rarity[batch.valid] > 0).all()
    the = task.tokenizer.convert_tokens_to_ids("the")
    hospital = task.tokenizer.convert_tokens_to_ids("hospital")  # last, rarest Zipfian filler word
    assert task.token_rarity[the] < task.token_rarity[hospital]


def test_committed_weights_accuracy(task, model):
    assert task.accuracy(model, task.samples("test", 512, seed=11)) >= 0.95
    assert task.card.test_accuracy >= 0.95


def test_evidence_removal_drops_confidence(task, model):
    """Masking all evidence leaves the model with no reason: it was trained towards 50/50."""
    batch = task.samples("test", 64, seed=12)
    with torch.no_grad():
        probs = task.predict(model, task.remove(batch.inputs, ~batch.ground_truth.unsqueeze(1))).softmax(-1)
    assert (probs.max(dim=1).values < 0.75).float().mean() >= 0.9


def _priors(task: PlantedText, n: int = 512) -> dict[str, float]:
    """Mean ground-truth AUROC of the model-free priors on a fixed test sample: rarity (the
    control; -log frequency in the task's own training corpus) and position (earlier first)."""
    batch = task.samples("test", n, seed=0)
    position = -torch.arange(task.max_length, dtype=torch.float).expand(n, -1)
    scores = {"rarity": task.model_free_attribution(batch.inputs), "position": position}
    return {k: gt_auroc(v, batch.ground_truth, batch.valid).nanmean().item() for k, v in scores.items()}


def test_v2_model_free_priors_do_not_find_the_evidence():
    """Version 1's evidence words are rarer than most fillers (rarity finds them); version 2's
    are not. Positions are uniformly random in both."""
    v1, v2 = _priors(PlantedText()), _priors(PlantedTextV2())
    assert v1["rarity"] > 0.65
    assert v2["rarity"] <= 0.6 and v2["position"] <= 0.6 and v1["position"] <= 0.6


def test_v2_evidence_words_are_as_frequent_as_their_mirrored_fillers():
    """In the training corpus each evidence word occurs as often as the filler word whose Zipf
    rank it mirrors. The rarest pair has ~130 occurrences each, so the log of a count ratio has a
    Poisson standard deviation of about sqrt(2 / 130) = 0.12: 0.4 is over three of them, and the
    mean over 20 words (0.06 measured) has a far smaller spread than its 0.12 bound."""
    task = PlantedTextV2()
    counts = task.token_counts().float()
    ids = task.tokenizer.convert_tokens_to_ids
    mirrored = counts[[ids(FILLER[r]) for r in MIRROR_RANKS]]
    for words in (NEGATIVE, POSITIVE):
        log_ratio = (counts[[ids(w) for w in words]] / mirrored).log().abs()
        assert log_ratio.max() < 0.4 and log_ratio.mean() < 0.12

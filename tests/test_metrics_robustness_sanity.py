"""Max-sensitivity and MPRT: closed-form properties, and equivalence with Quantus."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import quantus
import scipy.stats
import torch
from captum.attr import Saliency
from torch import Tensor, nn

from toy_task import ToyTask
from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.rank_correlation import spearman
from xaiboard.benchmark.metrics.randomisation import (
    RANDOMISATION_SALT,
    cascading_randomisation,
    mprt_similarities,
    randomisable_layers,
    randomise,
)
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.benchmark.task import Batch
from xaiboard.tasks.planted_text import PlantedText

SEED = 5


class CNNTask(ToyTask):
    """The toy task on 1x8x8 inputs with a small ReLU CNN, so gradients depend on the input."""

    name = "toy/cnn"
    num_classes = 3

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (8, 8)

    def valid_features(self, inputs: Tensor) -> Tensor:
        return torch.ones(inputs.shape[0], 8, 8, dtype=torch.bool)

    def model(self, device="cpu") -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(256, 3),
        ).eval()

    def samples(self, split: str, n: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, 1, 8, 8, generator=g)
        targets = torch.randint(0, 3, (n,), generator=g)
        return Batch(x, targets, targets, self.valid_features(x))


def saliency(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Signed input gradient, channels summed: one explainer for us and for Quantus."""
    inputs = inputs.detach().requires_grad_()
    return Saliency(model).attribute(inputs, target=targets, abs=False).sum(dim=1).detach()


def quantus_saliency(model, inputs, targets, **_) -> np.ndarray:
    return saliency(model, torch.as_tensor(inputs), torch.as_tensor(targets))[:, None].numpy()


def run_quantus(metric, ctx):
    """Run a Quantus metric on the context's model, batch and explanation, re-explaining with
    the same saliency as ours."""
    return metric(
        ctx.model,
        ctx.batch.inputs.numpy(),
        ctx.batch.targets.numpy(),
        a_batch=ctx.explanation[:, None].numpy(),
        explain_func=quantus_saliency,
        channel_first=True,
        device="cpu",
    )


def context(task, explain, n=4, batch=None) -> MetricContext:
    model = task.model()
    batch = batch or task.samples("test", n, seed=1)
    explanation = explain(model, batch.inputs, batch.targets)
    engine = RemovalEngine(task, model)
    return MetricContext(task, model, batch, explanation, engine, SEED, torch.device("cpu"), explain)


def constant(model, inputs, targets):
    return torch.ones(inputs.shape[0], *inputs.shape[2:])


def model_free(model, inputs, targets):
    return inputs.abs().sum(dim=1)


# ---- max-sensitivity ------------------------------------------------------------------


def test_constant_explainer_has_zero_sensitivity_even_with_noisy_padding():
    task = CNNTask()
    batch = task.samples("test", 3, seed=1)
    valid = batch.valid.clone()
    valid[:, :, 6:] = False

    def noisy_padding(model, inputs, targets):  # inputs may hold several noisy copies of the batch
        padding = ~valid.repeat(len(inputs) // len(valid), 1, 1)
        return constant(model, inputs, targets) + padding * torch.randn(padding.shape)

    ctx = context(task, noisy_padding, batch=replace(batch, valid=valid))
    assert METRICS.create("max_sensitivity").compute(ctx).tolist() == [0.0, 0.0, 0.0]


def test_identity_explainer_sensitivity_is_the_largest_relative_noise():
    task = CNNTask()
    ctx = context(task, lambda m, x, t: x.sum(dim=1))
    score = METRICS.create("max_sensitivity", n_samples=3, radius=0.1).compute(ctx)
    x = ctx.batch.inputs
    noise = torch.stack([task.perturb(x, 0.1, ctx.generator(i)) - x for i in range(3)])
    ratios = noise.flatten(2).norm(dim=2) / x.flatten(1).norm(dim=1)
    torch.testing.assert_close(score, ratios.amax(dim=0))
    assert (score > 0.05).all()


class Replay:
    """A Quantus perturb_func that hands out our perturbed inputs in order (same noise for both)."""

    def __init__(self, perturbed: list[Tensor]) -> None:
        self.perturbed = iter(perturbed)

    def __call__(self, arr: np.ndarray, **_) -> np.ndarray:
        return next(self.perturbed).numpy().reshape(arr.shape)


@pytest.mark.parametrize("normalise", [False, True])
def test_max_sensitivity_equals_quantus(normalise):
    task = CNNTask()
    ctx = context(task, saliency, n=5)
    ours = METRICS.create("max_sensitivity", n_samples=4, normalise=normalise).compute(ctx)
    perturbed = [task.perturb(ctx.batch.inputs, 0.2, ctx.generator(i)) for i in range(4)]
    metric = quantus.MaxSensitivity(
        nr_samples=4,
        perturb_func=Replay(perturbed),
        normalise=normalise,
        normalise_func_kwargs={"normalise_axes": (1, 2, 3)},  # per sample, as ours
        disable_warnings=True,
    )
    theirs = run_quantus(metric, ctx)
    assert (ours > 0.1).all()  # ReLU patterns change under noise, so the comparison is not 0 == 0
    # float32 norms of the same gradients, computed in torch (ours) and numpy (Quantus)
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-6)


# ---- MPRT -----------------------------------------------------------------------------


def test_spearman_matches_scipy_with_ties_and_padding():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (5, 12), generator=g).float()
    b = torch.randint(0, 4, (5, 12), generator=g).float()
    valid = torch.rand(5, 12, generator=g) > 0.3
    expected = [scipy.stats.spearmanr(a[i][valid[i]], b[i][valid[i]])[0] for i in range(5)]
    np.testing.assert_allclose(spearman(a, b, valid).numpy(), expected, rtol=1e-6)
    assert spearman(a, torch.ones_like(a), valid).isnan().all()


def test_model_independent_explanation_scores_one_and_leaves_the_model_alone():
    task = CNNTask()
    ctx = context(task, model_free)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    rng = torch.random.get_rng_state()
    cascade = mprt_similarities(ctx)
    assert cascade.names == ["5", "2", "0"]
    assert torch.equal(cascade.similarity, torch.ones(4, 3, dtype=torch.float64))
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert torch.equal(rng, torch.random.get_rng_state())


def test_gradients_decorrelate_and_constant_explanations_give_nan():
    task = CNNTask()
    scores = METRICS.create("mprt").compute(context(task, saliency))
    assert (scores < 0.5).all()
    assert METRICS.create("mprt").compute(context(task, constant)).isnan().all()


def test_mprt_equals_quantus():
    task = CNNTask()
    ctx = context(task, saliency, n=5)
    cascade = mprt_similarities(ctx)
    names, ours = cascade.names, cascade.similarity
    assert (cascade.excluded == 0).all()  # no zeros: Quantus' default similarity applies as is
    seed = ctx.generator(RANDOMISATION_SALT).initial_seed()
    metric = quantus.MPRT(layer_order="top_down", seed=seed - 1, disable_warnings=True)
    theirs = run_quantus(metric, ctx)
    assert list(theirs)[1:] == names  # "original" first: the unrandomised model
    expected = np.stack([theirs[name] for name in names], axis=1)
    assert np.ptp(expected) > 0.2  # layers differ, so the layer order is really being checked
    # float32 Pearson of identical ranks: torch vs scipy's float64
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-5)
    score = METRICS.create("mprt").compute(ctx)
    np.testing.assert_allclose(score.numpy(), expected.mean(axis=1), rtol=0, atol=1e-5)


# ---- MPRT over transformer encoders: block by block ------------------------------------------


def assert_cascade_randomises_block_by_block(model: nn.Module, expected: list[str]) -> None:
    """The cascade's units are ``expected``, and each step changes every parameter of its own
    block and nothing else (earlier blocks stay as randomised, later ones as trained)."""
    assert [name for name, _ in randomisable_layers(model)] == expected
    before = {k: v.clone() for k, v in model.named_parameters()}
    previous = before
    for name, randomised in cascading_randomisation(model, seed=11):
        now = {k: v.detach().clone() for k, v in randomised.named_parameters()}
        changed = {k for k in now if not torch.equal(now[k], previous[k])}
        inside = {k for k in now if k.startswith(name + ".")}
        assert changed == inside, name
        previous = now
    assert all(torch.equal(before[k], v) for k, v in model.named_parameters())  # the model itself untouched


def test_planted_text_bert_is_randomised_block_by_block():
    """Classifier, pooler, encoder layers top down, embeddings: 5 steps instead of 22 layers."""
    blocks = ["bert.classifier", "bert.bert.pooler", "bert.bert.encoder.layer.1", "bert.bert.encoder.layer.0",
              "bert.bert.embeddings"]
    assert_cascade_randomises_block_by_block(PlantedText().model(), blocks)


def test_block_randomisation_is_seeded_and_a_single_layer_gets_its_own_reset():
    """A block is reset under one seed: the same seed gives the same weights; a lone layer gets
    exactly what its ``reset_parameters`` gives under that seed (Quantus' per-layer values)."""
    model = PlantedText().model()
    block = model.bert.bert.encoder.layer[0]
    twins = [copy.deepcopy(block) for _ in range(2)]
    for twin in twins:
        randomise(twin, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(twins[0].parameters(), twins[1].parameters()))
    layer, reference = nn.Linear(4, 3), nn.Linear(4, 3)
    randomise(layer, seed=3)
    torch.manual_seed(3)
    reference.reset_parameters()
    assert torch.equal(layer.weight, reference.weight) and torch.equal(layer.bias, reference.bias)


def test_cnn_cascade_stays_per_layer():
    assert [name for name, _ in randomisable_layers(CNNTask().model())] == ["5", "2", "0"]

"""MPRT over features that are not structurally zero, smooth and efficient MPRT: known answers,
equivalence with Quantus, and what the runner records (the share left out, the passes)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import quantus
import scipy.stats
import torch
from torch import Tensor, nn

from test_metrics_robustness_sanity import CNNTask, context, model_free, quantus_saliency, run_quantus, saliency
from test_runner import N, Gradient, run_toy
from xaiboard.benchmark.bench import nonzero_spearman_reference
from xaiboard.benchmark.metrics.mprt_variants import (
    SMOOTH_SALT,
    discrete_entropy,
    noise_draws,
    smooth_cascade,
    smooth_explanation,
)
from xaiboard.benchmark.metrics.randomisation import RANDOMISATION_SALT, mprt_similarities, nonzero_spearman, randomisable_layers
from xaiboard.benchmark.metrics.rank_correlation import spearman
from xaiboard.benchmark.record import ResultRecord
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.runner import results_table

#: float32 explanations ranked in torch (ours) and by scipy in float64 (Quantus): the ranks are
#: identical, so the correlations differ by float32 round-off of the Pearson sums (~1e-7 for
#: 64 features); smoothed maps add the order of float32 sums over noise draws and one ulp of
#: input difference (Quantus adds float64 noise), both ~1e-7 relative, far below 1e-5
TOLERANCE = 1e-5


def zeroed_batch(task: CNNTask, n: int) -> object:
    """Samples whose right 5 of 8 columns are black: 62.5% of pixels are 0, so input x gradient
    is 0 there under every model (a structural zero)."""
    batch = task.samples("test", n, seed=1)
    inputs = batch.inputs.clone()
    inputs[..., 3:] = 0.0
    return replace(batch, inputs=inputs)


def input_x_gradient(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    return saliency(model, inputs, targets) * inputs.sum(dim=1)


def quantus_input_x_gradient(model, inputs, targets, **_) -> np.ndarray:
    return input_x_gradient(model, torch.as_tensor(inputs), torch.as_tensor(targets))[:, None].numpy()


def weight_seeded_noise(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Uniform noise seeded by the model's weights, zero where the input is: a map that is
    independent of the original one after any randomisation, and structurally zero where x = 0."""
    seed = int(sum(p.detach().double().abs().sum() for p in model.parameters()) * 1e6) % 2**31
    noise = torch.rand(inputs.shape[0], *inputs.shape[2:], generator=torch.Generator().manual_seed(seed))
    return noise * (inputs.sum(dim=1) != 0)


# ---- MPRT over the features that are not zero in both maps ----------------------------------------


def test_nonzero_spearman_is_scipy_over_the_kept_features_and_reports_the_share():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 20, generator=g) * (torch.rand(6, 20, generator=g) > 0.5)
    b = torch.rand(6, 20, generator=g) * (torch.rand(6, 20, generator=g) > 0.5)
    valid = torch.rand(6, 20, generator=g) > 0.2
    similarity, share = nonzero_spearman(a, b, valid)
    keep = valid & ((a != 0) | (b != 0))
    expected = [scipy.stats.spearmanr(a[i][keep[i]], b[i][keep[i]])[0] for i in range(6)]
    np.testing.assert_allclose(similarity.numpy(), expected, rtol=1e-6)  # float32 ranks vs scipy's float64
    assert share.tolist() == ((valid & ~keep).sum(1) / valid.sum(1)).double().tolist()
    assert nonzero_spearman(torch.zeros(2, 5), torch.zeros(2, 5), torch.ones(2, 5, dtype=torch.bool))[0].isnan().all()


def test_model_independent_map_still_scores_one_over_its_nonzero_features():
    task = CNNTask()
    ctx = context(task, model_free, batch=zeroed_batch(task, 4))
    cascade = mprt_similarities(ctx)
    assert torch.equal(cascade.similarity, torch.ones(4, 3, dtype=torch.float64))
    assert torch.equal(cascade.excluded, torch.full((4, 3), 5 / 8, dtype=torch.float64))
    assert METRICS.create("mprt").details(ctx) == {"excluded_share": 0.625, "excluded_share_min": 0.625,
                                                  "excluded_share_max": 0.625}


def test_maps_independent_after_randomisation_score_zero_not_their_shared_zeros():
    """All-feature Spearman reads ~0.85 from the 62.5% shared zeros alone; over the rest it is 0
    within 4 standard errors of a mean of B*L independent null correlations, 1/sqrt((n-1)BL)."""
    task = CNNTask()
    ctx = context(task, weight_seeded_noise, n=16, batch=zeroed_batch(task, 16))
    scores = METRICS.create("mprt").compute(ctx)
    layers, kept = len(randomisable_layers(ctx.model)), 24
    standard_error = 1 / math.sqrt((kept - 1) * len(scores) * layers)
    assert abs(scores.mean()) < 4 * standard_error
    randomised = weight_seeded_noise(nn.Linear(1, 1), ctx.batch.inputs, ctx.batch.targets)
    assert spearman(ctx.explanation, randomised, ctx.batch.valid).mean() > 0.7  # what the old MPRT read


def test_mprt_with_structural_zeros_equals_quantus_given_the_same_exclusion():
    """input x gradient on black columns: Quantus with our exclusion as its ``similarity_func``."""
    task = CNNTask()
    ctx = context(task, input_x_gradient, n=5, batch=zeroed_batch(task, 5))
    cascade = mprt_similarities(ctx)
    assert (cascade.excluded >= 5 / 8).all()
    seed = ctx.generator(RANDOMISATION_SALT).initial_seed()
    metric = quantus.MPRT(layer_order="top_down", seed=seed - 1, similarity_func=nonzero_spearman_reference,
                          disable_warnings=True)
    theirs = metric(ctx.model, ctx.batch.inputs.numpy(), ctx.batch.targets.numpy(), a_batch=ctx.explanation[:, None].numpy(),
                    explain_func=quantus_input_x_gradient, channel_first=True, device="cpu")
    expected = np.stack([theirs[name] for name in cascade.names], axis=1)
    np.testing.assert_allclose(cascade.similarity.numpy(), expected, rtol=0, atol=TOLERANCE)


# ---- smooth MPRT ------------------------------------------------------------------------------


def test_smooth_mprt_equals_quantus(monkeypatch):
    """Same bottom-up randomisation, same noise (our draws replayed as Quantus' ``np.random.randn``),
    same saliency (Quantus' smoothing calls ``quantus.explain``)."""
    task, nr_samples = CNNTask(), 4
    ctx = context(task, saliency, n=5)
    cascade = smooth_cascade(ctx, nr_samples, 0.1, absolute=True)
    assert (cascade.excluded == 0).all()  # no zeros: Quantus' own similarity applies as is
    generator = ctx.generator(SMOOTH_SALT)
    draws = [noise_draws(generator, nr_samples, ctx.batch.inputs) for _ in range(len(cascade.names) + 1)]
    replay = iter([z.double().numpy() for state in draws for z in state])
    monkeypatch.setattr(np.random, "randn", lambda *shape: next(replay))
    monkeypatch.setattr(quantus, "explain", lambda model, x, y, **_: quantus_saliency(model, x.astype(np.float32), y))
    original = smooth_explanation(ctx, ctx.model, draws[0], 0.1).abs().numpy()
    seed = ctx.generator(RANDOMISATION_SALT).initial_seed()
    metric = quantus.SmoothMPRT(seed=seed - 1, nr_samples=nr_samples, noise_magnitude=0.1, disable_warnings=True)
    theirs = metric(ctx.model, ctx.batch.inputs.numpy(), ctx.batch.targets.numpy(), a_batch=original[:, None],
                    explain_func=quantus_saliency, channel_first=True, device="cpu")
    assert list(theirs)[1:] == cascade.names == ["0", "2", "5"]  # bottom up
    np.testing.assert_allclose(theirs["original"], 1.0, atol=TOLERANCE)  # our original map, same noise
    expected = np.stack([theirs[name] for name in cascade.names], axis=1)
    assert np.ptp(expected) > 0.1  # layers differ, so the order is really checked
    np.testing.assert_allclose(cascade.similarity.numpy(), expected, rtol=0, atol=TOLERANCE)


def test_smooth_mprt_known_answers():
    """Model-independent maps of the clean input: 1; weight-seeded noise: 0 within 4 standard errors."""
    task = CNNTask()
    assert torch.equal(METRICS.create("smooth_mprt", nr_samples=3, noise_magnitude=0.0).compute(
        context(task, model_free, batch=zeroed_batch(task, 4))), torch.ones(4, dtype=torch.float64))
    # no black pixels (smoothing would scale them by the share of noisy copies, a shared pattern):
    # the map is the model's noise itself, all 64 features are compared, 16 samples x 3 layers
    ctx = context(task, weight_seeded_noise, n=16)
    scores = METRICS.create("smooth_mprt", nr_samples=3).compute(ctx)
    assert abs(scores.mean()) < 4 / math.sqrt(63 * 16 * 3)


# ---- efficient MPRT ------------------------------------------------------------------------------


def test_discrete_entropy_equals_numpy_histogram_entropy_on_edges_and_padding():
    """Quantised values sit exactly on bin edges (0.25 on the 25th of 100); padding is ignored."""
    g = torch.Generator().manual_seed(0)
    values = torch.cat([torch.randint(0, 17, (3, 40), generator=g) / 16, torch.randn(3, 40, generator=g)])
    valid = torch.rand(6, 40, generator=g) > 0.3
    expected = [scipy.stats.entropy(np.histogram(v[m].numpy(), bins=100)[0]) for v, m in zip(values, valid)]
    np.testing.assert_allclose(discrete_entropy(values, valid, 100).numpy(), expected, rtol=1e-12)  # same counts
    assert discrete_entropy(torch.ones(1, 5), torch.ones(1, 5, dtype=torch.bool), 100).item() == 0.0


def test_efficient_mprt_known_answers():
    """Two-level map (entropy ln 2) that turns into 64 distinct values, one per bin (ln 64), under
    the randomised model: (ln 64 - ln 2) / ln 2 = 5. Model-independent: 0. Constant: NaN."""
    task = CNNTask()
    trained = task.model()[5].weight.detach().clone()

    def flat_then_spread(model, inputs, targets):
        b = inputs.shape[0]
        if torch.equal(model[5].weight, trained):
            return (torch.arange(64) % 2).float().expand(b, 64).reshape(b, 8, 8)
        return torch.arange(64.0).expand(b, 64).reshape(b, 8, 8)

    metric = METRICS.create("efficient_mprt")
    torch.testing.assert_close(metric.compute(context(task, flat_then_spread)), torch.full((4,), 5.0, dtype=torch.float64))
    assert metric.compute(context(task, model_free)).tolist() == [0.0] * 4
    assert metric.compute(context(task, lambda m, x, t: torch.ones(x.shape[0], 8, 8))).isnan().all()


def test_efficient_mprt_equals_quantus():
    task = CNNTask()
    ctx = context(task, saliency, n=5)
    ours = METRICS.create("efficient_mprt").compute(ctx)
    seed = ctx.generator(RANDOMISATION_SALT).initial_seed()
    theirs = run_quantus(quantus.EfficientMPRT(seed=seed - 1, disable_warnings=True), ctx)
    assert np.ptp(theirs) > 0.05  # samples differ: not a constant that any randomisation would give
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=TOLERANCE)


# ---- what the runner records ---------------------------------------------------------------------


def test_runner_records_the_share_left_out_and_counts_every_pass(toy_task, tmp_path):
    """smooth MPRT explains nr_samples copies per model state (original + L steps), efficient MPRT
    the batch once; each gradient explanation is one forward and one backward per row."""
    metrics = [METRICS.create("mprt"), METRICS.create("smooth_mprt", nr_samples=3), METRICS.create("efficient_mprt")]
    records = {r.metric: r for r in run_toy(toy_task, [Gradient()], metrics, tmp_path)}
    layers = len(randomisable_layers(toy_task.model()))
    expected = {"mprt": layers * N, "smooth_mprt": 3 * (layers + 1) * N, "efficient_mprt": N}
    for name, passes in expected.items():
        record = records[name]
        assert record.status == "ok", record.error
        assert (record.metric_cost["forward_passes"], record.metric_cost["backward_passes"]) == (passes, passes)
    assert 0 <= records["mprt"].details["excluded_share"] <= 1
    assert records["efficient_mprt"].details == {}
    cell = results_table(list(records.values())).iloc[0]["mprt"]
    assert cell.endswith("left out)")


def test_records_without_details_still_load():
    from test_store import make_record

    data = make_record().to_dict()
    del data["details"]
    assert ResultRecord.from_dict(data).details == {}
    with pytest.raises(ValueError, match="details.share"):
        ResultRecord.from_dict({**data, "details": {"share": "most"}})


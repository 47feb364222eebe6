"""Avg-sensitivity, local Lipschitz estimate, relative input/output stability and the shared
re-explanations: closed-form values, and equivalence with Quantus and Captum on replayed noise."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
import quantus
import torch
from captum.attr import InputXGradient
from captum.metrics import sensitivity_max
from test_metrics_robustness_sanity import (
    CNNTask,
    Replay,
    constant,
    context,
    run_quantus,
    saliency,
)
from torch import Tensor
from toy_task import ToyTask
from xaiboard.benchmark.cost import count_passes
from xaiboard.benchmark.metric import MetricContext
from xaiboard.benchmark.metrics.sensitivity import Reexplained, concat_inputs, perturbed_explanations
from xaiboard.benchmark.metrics.stability import (
    LIPSCHITZ_EPS,
    grouped_norm,
    input_distances,
    max_where,
)
from xaiboard.benchmark.registry import METHODS, METRICS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.methods import gradients, occlusion  # noqa: F401  (register)
from xaiboard.tasks.ba_2motifs import BA2MotifsTask
from xaiboard.tasks.ba_shapes import BAShapesTask
from xaiboard.tasks.graph import GraphInputs
from xaiboard.tasks.planted_text import PlantedText

ROBUSTNESS = ["max_sensitivity", "avg_sensitivity", "local_lipschitz", "relative_input_stability", "relative_output_stability"]
PER_SAMPLE = {"normalise_func_kwargs": {"normalise_axes": (1, 2, 3)}}  # Quantus normalises per sample, as ours


def identity(model, inputs: Tensor, targets: Tensor) -> Tensor:
    """The input itself (one channel) as the explanation."""
    return inputs.sum(dim=1)


def input_x_gradient(model, inputs: Tensor, targets: Tensor) -> Tensor:
    inputs = inputs.detach().requires_grad_()
    return InputXGradient(model).attribute(inputs, target=targets).sum(dim=1).detach()


def noises(ctx, n: int, radius: float = 0.2) -> list[Tensor]:
    """The perturbed inputs every robustness metric sees (``ctx.generator(i)``, i < n)."""
    return [ctx.task.perturb(ctx.batch.inputs, radius, ctx.generator(i)) for i in range(n)]


def same_class(ctx, perturbed: list[Tensor]) -> np.ndarray:
    """``[n, B]``: does noise ``i`` keep sample ``b``'s predicted class?"""
    with torch.no_grad():
        clean = ctx.model(ctx.batch.inputs).argmax(dim=1)
        return torch.stack([ctx.model(x).argmax(dim=1) == clean for x in perturbed]).numpy()


# ---- the shared re-explanations --------------------------------------------------------


def test_all_robustness_metrics_share_one_set_of_reexplanations():
    calls = []

    def counted(model, inputs, targets):
        calls.append(len(inputs))
        return saliency(model, inputs, targets)

    ctx = context(CNNTask(), counted)
    calls.clear()
    for name in ROBUSTNESS:
        METRICS.create(name).compute(ctx)
    assert calls == [40]  # the 10 noisy copies of 4 samples, concatenated into one call
    another_pair = replace(ctx, explain=lambda *a: counted(*a), memo={})  # the runner's next (task, method)
    METRICS.create("max_sensitivity").compute(another_pair)
    assert calls == [40, 40]


def test_copies_per_call_follow_the_engines_rows_per_pass():
    """At least one copy per call, else as many copies as ``chunk_rows`` rows hold."""
    calls = []

    def counted(model, inputs, targets):
        calls.append(len(inputs))
        return saliency(model, inputs, targets)

    for rows, expected in [(12, [12, 12, 12, 4]), (3, [4] * 10)]:
        ctx = context(CNNTask(), counted)
        ctx.engine.chunk_rows = rows
        calls.clear()
        METRICS.create("max_sensitivity").compute(ctx)
        assert calls == expected


def test_noisy_logits_are_computed_only_for_the_metrics_that_read_them():
    """Max/avg sensitivity and local Lipschitz read the re-explanations only: one forward and one
    backward per noisy row (10 copies of 4 samples), no logits. Relative input and output
    stability read the copies' logits (one forward per noisy row, once for both) and the batch's
    own, which the removal engine already holds where a faithfulness metric asked for them."""
    ctx = context(CNNTask(), saliency)
    with count_passes(ctx.model) as cost:
        for name in ("max_sensitivity", "avg_sensitivity", "local_lipschitz"):
            METRICS.create(name).compute(ctx)
    assert (cost.forward_passes, cost.backward_passes) == (40, 40)
    ctx.engine.full(ctx.batch.inputs, ctx.batch.targets)
    with count_passes(ctx.model) as cost:
        for name in ("relative_input_stability", "relative_output_stability"):
            METRICS.create(name).compute(ctx)
    assert (cost.forward_passes, cost.backward_passes) == (40, 0)
    shared = perturbed_explanations(ctx, 10, 0.2)
    with torch.no_grad():
        torch.testing.assert_close(shared.clean_logits, ctx.model(ctx.batch.inputs), atol=0, rtol=0)
        # the copies ran as one 40-row call: the CNN's float32 sums differ by rounding from 4 rows
        torch.testing.assert_close(shared.logits[3], ctx.model(shared.noisy[3]), atol=1e-6, rtol=0)


def one_by_one(ctx, n: int) -> Tensor:
    """The re-explanations as one explainer call per noisy copy ``[n, B, *F]``."""
    return torch.stack([ctx.explain(ctx.model, x, ctx.batch.targets) for x in noises(ctx, n)])


@pytest.mark.parametrize(
    ("task", "method"),
    [(CNNTask(), "saliency"), (PlantedText(), "integrated_gradients"), (PlantedText(), "occlusion"),
     (BAShapesTask(), "saliency"), (BAShapesTask(), "occlusion"), (BA2MotifsTask(), "integrated_gradients")],
    ids=["image-saliency", "text-ig", "text-occlusion", "node-saliency", "node-occlusion", "graph-ig"],
)
def test_concatenated_copies_give_the_explanations_of_one_call_per_copy(task, method):
    """Deterministic per-sample explainers: batching the noisy copies changes float round-off only."""
    explainer = METHODS.create(method)
    ctx = context(task, lambda m, x, t: explainer.explain(m, x, t, task), n=3)
    shared = perturbed_explanations(ctx, 4, 0.2)
    torch.testing.assert_close(shared.explanations, one_by_one(ctx, 4), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        logits = torch.stack([task.logits(ctx.model, x) for x in shared.noisy])
    torch.testing.assert_close(shared.logits, logits, atol=1e-5, rtol=1e-5)


def test_graph_copies_concatenate_into_one_union():
    """GraphInputs.concat of two copies is the builder's union of each sample taken twice."""
    task = BAShapesTask()
    inputs = task.samples("test", 3, 0).inputs
    joined = GraphInputs.concat([inputs, inputs])
    tiled = task.select(inputs, torch.arange(3).repeat(2), task.valid_features(inputs).float().repeat(2, 1))
    assert joined.edge_weight is None  # as the unmodified inputs
    for name in (f.name for f in fields(GraphInputs) if f.name != "edge_weight"):
        assert torch.equal(getattr(joined, name), getattr(tiled, name)), name


def test_inputs_that_do_not_concatenate_are_explained_one_copy_per_call():
    assert concat_inputs([Opaque(), Opaque()]) is None
    assert torch.equal(concat_inputs([torch.zeros(2, 3), torch.ones(1, 3)]), torch.tensor([[0.0] * 3] * 2 + [[1.0] * 3]))


class Opaque:
    """A task input type without ``concat``."""


def test_metric_order_does_not_change_max_sensitivity_of_a_random_explainer():
    """An explainer drawing from the global RNG (as SmoothGrad does) sees the same stream under
    the runner's ``torch.manual_seed`` whichever robustness metric fills the cache first."""

    def noisy_saliency(model, inputs, targets):
        return saliency(model, inputs, targets) + 0.1 * torch.rand(inputs.shape[0], 8, 8)

    task = CNNTask()
    alone, after_avg = context(task, noisy_saliency), context(task, noisy_saliency)
    torch.manual_seed(0)
    expected = METRICS.create("max_sensitivity").compute(alone)
    torch.manual_seed(0)
    METRICS.create("avg_sensitivity").compute(after_avg)
    torch.manual_seed(0)
    assert torch.equal(METRICS.create("max_sensitivity").compute(after_avg), expected)


def test_max_sensitivity_equals_captum():
    ctx = context(CNNTask(), saliency, n=5)
    ours = METRICS.create("max_sensitivity", n_samples=4).compute(ctx)
    perturbed = torch.stack(noises(ctx, 4), dim=1)  # [B, n, ...]: Captum's repeat_interleave order

    def explain(inputs: Tensor | tuple[Tensor], target: Tensor) -> tuple[Tensor]:  # Captum passes both forms
        return (saliency(ctx.model, inputs[0] if isinstance(inputs, tuple) else inputs, target),)

    theirs = sensitivity_max(
        explain,
        ctx.batch.inputs,
        perturb_func=lambda expanded: perturbed.reshape(expanded.shape),
        n_perturb_samples=4,
        target=ctx.batch.targets,
    )
    assert (ours > 0.1).all()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


# ---- avg-sensitivity --------------------------------------------------------------------


def test_gradient_of_a_linear_model_is_constant_so_both_sensitivities_are_zero():
    ctx = context(ToyTask(), saliency)
    for name in ("max_sensitivity", "avg_sensitivity"):
        assert METRICS.create(name).compute(ctx).tolist() == [0.0] * 4


def test_identity_explainer_avg_sensitivity_is_the_mean_relative_noise():
    task = CNNTask()
    ctx = context(task, identity)
    score = METRICS.create("avg_sensitivity", n_samples=3, radius=0.1).compute(ctx)
    x = ctx.batch.inputs
    noise = torch.stack([d - x for d in noises(ctx, 3, 0.1)])
    torch.testing.assert_close(score, (noise.flatten(2).norm(dim=2) / x.flatten(1).norm(dim=1)).mean(dim=0))
    assert (METRICS.create("avg_sensitivity").compute(context(task, constant)) == 0).all()


@pytest.mark.parametrize("normalise", [False, True])
def test_avg_sensitivity_equals_quantus_and_stays_below_max(normalise):
    ctx = context(CNNTask(), saliency, n=5)
    ours = METRICS.create("avg_sensitivity", n_samples=4, normalise=normalise).compute(ctx)
    metric = quantus.AvgSensitivity(
        nr_samples=4, perturb_func=Replay(noises(ctx, 4)), normalise=normalise, disable_warnings=True, **PER_SAMPLE
    )
    theirs = run_quantus(metric, ctx)
    assert (ours > 0.05).all()
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-6)
    highest = METRICS.create("max_sensitivity", n_samples=4, normalise=normalise).compute(ctx)
    assert (ours <= highest).all() and (ours < highest).any()


# ---- local Lipschitz estimate --------------------------------------------------------------


def test_input_x_gradient_of_a_linear_model_has_lipschitz_constant_its_weight():
    """Class 0 of the toy model has weight 0.5 on every pixel: e(x) = 0.5 x, so L = 0.5."""
    task = ToyTask()
    batch = task.samples("test", 4, seed=1)
    ctx = context(task, input_x_gradient, batch=replace(batch, targets=torch.zeros(4, dtype=torch.long)))
    score = METRICS.create("local_lipschitz", normalise=False).compute(ctx)
    torch.testing.assert_close(score, torch.full((4,), 0.5))
    assert (METRICS.create("local_lipschitz").compute(context(task, constant)) == 0).all()


def test_lipschitz_of_the_identity_is_one_and_of_a_block_its_noise_share():
    """Class 1 depends on the 2x2 block only: e(x) = x on the block, so L = max ||d_block|| / ||d||."""
    task = ToyTask()
    batch = task.samples("test", 4, seed=1)
    score = METRICS.create("local_lipschitz", normalise=False).compute(context(task, identity, batch=batch))
    torch.testing.assert_close(score, torch.ones(4))
    ctx = context(task, input_x_gradient, batch=replace(batch, targets=torch.ones(4, dtype=torch.long)))
    d = torch.stack([x - ctx.batch.inputs for x in noises(ctx, 10)])
    expected = (d[..., :2, :2].flatten(2).norm(dim=2) / (d.flatten(2).norm(dim=2) + LIPSCHITZ_EPS)).amax(dim=0)
    torch.testing.assert_close(METRICS.create("local_lipschitz", normalise=False).compute(ctx), expected)


@pytest.mark.parametrize("normalise", [False, True])
def test_local_lipschitz_equals_quantus(normalise):
    ctx = context(CNNTask(), saliency, n=5)
    ours = METRICS.create("local_lipschitz", n_samples=4, normalise=normalise).compute(ctx)
    metric = quantus.LocalLipschitzEstimate(
        nr_samples=4, perturb_func=Replay(noises(ctx, 4)), normalise=normalise, disable_warnings=True, **PER_SAMPLE
    )
    theirs = run_quantus(metric, ctx)
    assert (ours > 0.01).all()
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-6)


# ---- relative input / output stability -----------------------------------------------------


def test_max_where_leaves_out_flipped_neighbours():
    values = torch.tensor([[1.0, 5.0, 2.0], [3.0, 4.0, 0.0]])
    keep = torch.tensor([[True, False, True], [False, False, False]])
    result = max_where(values, keep)
    assert result[0] == 2.0 and result[1].isnan()


def test_grouped_norm_groups_rows_by_sample():
    rows = torch.tensor([[3.0, 0.0], [0.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(grouped_norm(rows, torch.tensor([0, 0, 2, 2]), 3), torch.tensor([5.0, 0.0, 1.0]))


def test_identity_explainer_has_relative_input_stability_one_and_a_constant_one_zero():
    task = CNNTask()
    ctx = context(task, identity)
    torch.testing.assert_close(METRICS.create("relative_input_stability").compute(ctx), torch.ones(4))
    for name in ("relative_input_stability", "relative_output_stability"):
        assert (METRICS.create(name).compute(context(task, constant)) == 0).all()


def test_relative_output_stability_of_the_identity_on_a_linear_model():
    """Logits of the toy model move by (0.5 sum d, sum_block d); e(x) = x moves by ||d / x||."""
    ctx = context(ToyTask(), identity, n=4)
    x = ctx.batch.inputs
    d = torch.stack([x - moved for moved in noises(ctx, 10)])
    logit_change = torch.stack([0.5 * d.flatten(2).sum(dim=2), d[..., :2, :2].flatten(2).sum(dim=2)], dim=-1)
    ratios = (d / x).flatten(2).norm(dim=2) / logit_change.norm(dim=-1)
    keep = torch.as_tensor(same_class(ctx, noises(ctx, 10)))
    expected = max_where(ratios.T, keep.T)
    # the model's float32 logits vs the closed form: sums of 16 noises cancel, so 1e-5 relative
    torch.testing.assert_close(METRICS.create("relative_output_stability").compute(ctx), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    ("name", "reference"),
    [("relative_input_stability", quantus.RelativeInputStability), ("relative_output_stability", quantus.RelativeOutputStability)],
)
def test_relative_stability_equals_quantus_where_no_prediction_flips(name, reference):
    """Quantus NaNs a whole sample when any neighbour flips its prediction; ours leaves those
    neighbours out. So: equal where Quantus is finite, and everywhere equal to the maximum of
    Quantus' own per-neighbour objective over the neighbours that keep the class."""
    ctx = context(CNNTask(), saliency, n=8)
    ours = METRICS.create(name, n_samples=6).compute(ctx).numpy()
    perturbed = noises(ctx, 6)
    metric = reference(nr_samples=6, perturb_func=Replay(perturbed), disable_warnings=True)
    theirs = np.asarray(run_quantus(metric, ctx))
    kept = same_class(ctx, perturbed)
    finite = np.isfinite(theirs)
    assert 0 < finite.sum() < len(finite) and np.isfinite(ours).sum() > finite.sum()  # flips matter here
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-5)
    objectives = np.where(kept, np.stack([_objective(metric, ctx, x) for x in perturbed]), -np.inf).max(axis=0)
    np.testing.assert_allclose(ours, np.where(kept.any(axis=0), objectives, np.nan), rtol=1e-5)


def _objective(metric, ctx, perturbed: Tensor) -> np.ndarray:
    """Quantus' own RIS/ROS objective for one neighbour ``[B]``."""
    e_x, e_xs = (saliency(ctx.model, x, ctx.batch.targets)[:, None].numpy() for x in (ctx.batch.inputs, perturbed))
    if isinstance(metric, quantus.RelativeInputStability):
        return metric.relative_input_stability_objective(ctx.batch.inputs.numpy(), perturbed.numpy(), e_x, e_xs)
    with torch.no_grad():
        h_x, h_xs = ctx.model(ctx.batch.inputs).numpy(), ctx.model(perturbed).numpy()
    return metric.relative_output_stability_objective(h_x, h_xs, e_x, e_xs)


# ---- the continuous input space of text and graph tasks -----------------------------------


@pytest.mark.parametrize("task", [PlantedText(), BAShapesTask()], ids=["text", "graph"])
def test_input_distance_is_the_noise_norm_over_each_samples_own_input(task):
    """Text: word-token embeddings only (no [PAD]/[CLS]/[SEP]); graphs: each sample's node features."""
    model, batch = task.model(), task.samples("test", 3, 0)
    ctx = MetricContext(task, model, batch, batch.valid.float(), RemovalEngine(task, model), 0, torch.device("cpu"))
    shared = Reexplained(noises(ctx, 2), torch.empty(0), lambda: (torch.empty(0), torch.empty(0)))
    if task.modality == "text":
        noise = torch.stack([x.embedding_noise for x in shared.noisy]) * batch.valid[None, :, :, None]
        expected = noise.flatten(2).norm(dim=2)
    else:
        noise = torch.stack([x.x - batch.inputs.x for x in shared.noisy]).pow(2).sum(dim=2)
        expected = torch.zeros(2, 3).index_add(1, batch.inputs.node_sample, noise).sqrt()
    torch.testing.assert_close(input_distances(ctx, shared, relative=False), expected)

"""The image modality (``tasks/image.py``) and the ``image/shapes`` task."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from sklearn.metrics import roc_auc_score
from torch import nn

from xaiboard.benchmark import device, priors
from xaiboard.benchmark.device import chunk_rows
from xaiboard.benchmark.metrics.ground_truth import gt_auroc
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.tasks.image import gaussian_blur
from xaiboard.tasks.shapes import (
    CLASS_NAMES,
    HALF_EXTENT,
    MIN_CONTRAST,
    ShapesTask,
    ShapesTaskV2,
    ShapesTaskV3,
    _distinct_colours,
    distractor_masks,
    shape_masks,
)
from xaiboard.tasks.weights import weights_meta


@pytest.fixture(scope="module")
def batch():
    return ShapesTask().samples("test", 6, seed=0)


@pytest.fixture(scope="module")
def model():
    return ShapesTask().model()


def test_registered_versions():
    """The default suite runs version 3; versions 1 and 2 stay loadable under their own names, archived."""
    current = TASKS.create("image/shapes")
    assert type(current) is ShapesTaskV3 and current.version == "3" and current.tier == "built-in"
    for version, kind in (("1", ShapesTask), ("2", ShapesTaskV2)):
        archived = TASKS.create(f"image/shapes@{version}")
        assert type(archived) is kind and archived.version == version and archived.tier == "archived"
        assert archived.name == f"image/shapes@{version}" and archived.weights_stem != current.weights_stem


def test_unknown_removal_and_split_are_rejected():
    with pytest.raises(ValueError, match="unknown image removal 'noise'"):
        ShapesTask(removal="noise")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        ShapesTask().samples("dev", 2, seed=0)


@pytest.mark.parametrize("removal", ["zero", "mean", "blur"])
def test_keep_all_reproduces_input_and_keep_none_gives_baseline(removal, batch):
    task = ShapesTask(removal=removal)
    x = batch.inputs
    keep = torch.stack([torch.ones(len(x), 32, 32), torch.zeros(len(x), 32, 32)], dim=1).bool()
    rows = task.remove(x, keep)
    assert rows.shape == (2 * len(x), 3, 32, 32)
    assert torch.equal(rows[0::2], x)
    assert torch.equal(rows[1::2], task.baseline(x))
    assert torch.equal(task.gradient_spec(nn.Identity(), x).baselines, task.baseline(x))


def test_known_pixel_mask(batch):
    """Row b*K+k keeps exactly keep[b, k]: one kept pixel survives, the rest is zeroed."""
    task = ShapesTask(removal="zero", baseline_value=0.0)
    x = batch.inputs[:2] + 1.0  # no pixel is zero before removal
    keep = torch.zeros(2, 3, 32, 32, dtype=torch.bool)
    keep[1, 2, 3, 5] = True
    rows = task.remove(x, keep)
    assert rows.abs().sum(dim=1).nonzero().tolist() == [[5, 3, 5]]
    assert torch.equal(rows[5, :, 3, 5], x[1, :, 3, 5])


def test_baselines(batch):
    x = batch.inputs
    mean_task = ShapesTask(removal="mean")
    expected = mean_task.samples("train", mean_task.mean_samples, seed=0).inputs.mean(dim=(0, 2, 3))
    assert torch.allclose(mean_task.baseline(x)[2, :, 7, 9], expected)
    assert torch.equal(ShapesTask(baseline_value=0.5).baseline(x), torch.full_like(x, 0.5))
    blurred = ShapesTask(removal="blur").baseline(x)
    assert blurred.shape == x.shape
    # A blur preserves a constant image (up to float rounding of the normalised kernel)
    # and strictly lowers the pixel variance of a cluttered one.
    assert torch.allclose(gaussian_blur(torch.full((1, 3, 32, 32), 0.7), 2.0), torch.tensor(0.7), atol=1e-6)
    assert (blurred.var(dim=(2, 3)) < x.var(dim=(2, 3))).all()


def test_engine_keep_all_matches_full_prediction(batch, model):
    task = ShapesTask()
    engine = RemovalEngine(task, model, chunk_rows=8)
    keep = torch.ones(len(batch), 3, 32, 32, dtype=torch.bool)
    scores = engine.scores(batch.inputs, keep, batch.targets)
    assert scores.shape == (len(batch), 3)
    # Chunked and unchunked forwards may differ in the last float bits.
    assert torch.allclose(scores, engine.full(batch.inputs, batch.targets).unsqueeze(1).expand(-1, 3), atol=1e-6)


def test_ground_truth_is_the_planted_object():
    b = ShapesTask().samples("test", 200, seed=3)
    gt = b.ground_truth
    assert gt.shape == (200, 32, 32) and gt.dtype == torch.bool
    areas = gt.sum(dim=(1, 2))
    assert areas.min() >= 20
    # The object is drawn last in one colour, so every ground-truth pixel has that colour.
    pixels = b.inputs.permute(0, 2, 3, 1)
    colour = pixels[gt.nonzero(as_tuple=True)]
    first = pixels.flatten(1, 2)[torch.arange(200), gt.flatten(1).float().argmax(1)]
    assert torch.equal(colour, first.repeat_interleave(areas, dim=0))
    # A square is the only class whose mask fills its bounding box.
    rows, cols = gt.any(dim=2), gt.any(dim=1)
    box = rows.sum(1) * cols.sum(1)
    assert torch.equal(areas == box, b.labels == CLASS_NAMES.index("square"))
    assert set(b.labels.tolist()) == {0, 1, 2, 3}
    assert b.valid.all() and torch.equal(b.targets, b.labels)


def test_samples_are_deterministic_prefix_stable_and_splits_disjoint():
    task = ShapesTask()
    a = task.samples("test", 300, seed=1)
    assert torch.equal(a.inputs, task.samples("test", 300, seed=1).inputs)
    assert torch.equal(a.inputs[:10], task.samples("test", 10, seed=1).inputs)
    assert not torch.equal(a.inputs, task.samples("test", 300, seed=2).inputs)
    train = task.samples("train", 300, seed=1).inputs.flatten(1)
    distance = torch.cdist(a.inputs.flatten(1), train)
    assert distance.min() > 1.0


def test_committed_weights_accuracy(model):
    b = ShapesTask().samples("test", 512, seed=0)
    with torch.no_grad():
        accuracy = (model(b.inputs).argmax(1) == b.labels).float().mean().item()
    assert accuracy >= 0.95
    recorded = weights_meta("image_shapes")["test_accuracy"]
    assert recorded >= 0.95
    assert ShapesTask().card.test_accuracy == recorded


def test_model_free_attribution_perturb_and_cam_layer(batch, model):
    task = ShapesTask()
    x = batch.inputs
    assert torch.equal(task.model_free_attribution(x), x.abs().sum(dim=1))
    assert task.model_free_attribution(x).shape == (len(x), 32, 32)
    noisy = task.perturb(x, 0.1, torch.Generator().manual_seed(0))
    assert noisy.shape == x.shape
    assert 0.09 < (noisy - x).abs().max() <= 0.1
    assert torch.equal(noisy, task.perturb(x, 0.1, torch.Generator().manual_seed(0)))
    assert task.pool(torch.ones(len(x), 3, 32, 32), x).eq(3).all()
    assert isinstance(task.cam_layer(model), nn.Conv2d)


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_gradients_find_the_ground_truth(model):
    """The mask is what the model uses: mean per-sample AUROC of gradient maps against it
    clearly beats uniform random scores. Random sits at 0.5 up to a standard deviation of about
    0.004 for a mean of 64 AUROCs (~90 object vs ~930 background pixels each), so the 0.05 band
    is generous, not tuned."""
    task = ShapesTask()
    b = task.samples("test", 64, seed=0)
    spec = task.gradient_spec(model, b.inputs)
    saliency = task.pool(Saliency(model).attribute(spec.inputs, target=b.targets, abs=True), b.inputs)
    ig = IntegratedGradients(model).attribute(spec.inputs, spec.baselines, target=b.targets, n_steps=32)
    noise = torch.rand(saliency.shape, generator=torch.Generator().manual_seed(0))

    def auroc(scores: torch.Tensor) -> float:
        pairs = zip(b.ground_truth.flatten(1).numpy(), scores.detach().flatten(1).numpy())
        return sum(roc_auc_score(gt, s) for gt, s in pairs) / len(b)

    random = auroc(noise)
    assert abs(random - 0.5) < 0.05
    assert auroc(saliency) - random >= 0.15
    assert auroc(task.pool(ig, b.inputs)) - random >= 0.15


def test_removal_baseline_is_built_once_per_batch_and_again_when_the_batch_changes(batch, monkeypatch):
    """The engine calls ``remove`` once per chunk of one batch: a blur is built once for it."""
    task = ShapesTask(removal="blur")
    built = []
    monkeypatch.setattr(task, "baseline", lambda x: built.append(x) or gaussian_blur(x, task.blur_sigma))
    x = batch.inputs.clone()
    keep = torch.rand(len(x), 2, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.5
    first = task.remove(x, keep)
    assert torch.equal(task.remove(x, keep), first) and len(built) == 1
    x.add_(0.25)  # the same tensor, changed in place
    expected = torch.where(keep.unsqueeze(2), x.unsqueeze(1), gaussian_blur(x, 2.0).unsqueeze(1)).flatten(0, 1)
    assert torch.equal(task.remove(x, keep), expected) and len(built) == 2
    task.remove(x.clone(), keep)
    assert len(built) == 3


def test_engine_values_do_not_depend_on_its_chunks_and_are_ordinary_tensors(batch, monkeypatch):
    """Chunks of 3 to 10,000 rows (the model split into near-equal parts), and the size the engine
    measures itself, give the same scores bit for bit; no call has a single row."""
    monkeypatch.setattr(device, "MEASURED", {})
    monkeypatch.setattr(device, "PENDING", {})
    task = ShapesTask(removal="blur")
    model = task.model()
    calls = []
    model.register_forward_hook(lambda _m, args, _out: calls.append(len(args[0])))
    keep = torch.rand(len(batch), 61, 32, 32, generator=torch.Generator().manual_seed(1)) < 0.5
    reference = RemovalEngine(task, model, 10_000).scores(batch.inputs, keep, batch.targets)
    for rows in (3, 7, 24, 100):
        assert torch.equal(RemovalEngine(task, model, rows).scores(batch.inputs, keep, batch.targets), reference)
    engine = RemovalEngine(task, model)
    for _ in range(6):  # 8 timed chunks of 10 to 61 masks (untimed: a call's rest), then settled
        scores = engine.scores(batch.inputs, keep, batch.targets)
        assert torch.equal(scores, reference)
    assert list(device.MEASURED.values()) == [engine._rows()] and engine._rows() in device.CANDIDATES["cpu"]
    assert min(calls) > 1
    assert not scores.is_inference() and not engine.full(batch.inputs, batch.targets).is_inference()


def test_engines_of_one_task_carry_one_measurement_on_until_it_settles(batch, model, monkeypatch):
    """Engines that each run fewer chunks than the schedule (one mask per call: one chunk) carry
    the process's measurement on, so the eighth engine settles the size: each engine's one chunk
    is timed at the next candidate size (before, each new engine started the schedule again)."""
    monkeypatch.setattr(device, "MEASURED", {})
    monkeypatch.setattr(device, "PENDING", {})
    monkeypatch.delenv("XAIBOARD_CHUNK_ROWS", raising=False)
    task = ShapesTask()
    keep = torch.rand(len(batch), 1, 32, 32, generator=torch.Generator().manual_seed(2)) < 0.5
    schedule = [*device.CANDIDATES["cpu"], *reversed(device.CANDIDATES["cpu"])]
    for step, rows in enumerate(schedule):
        engine = RemovalEngine(task, model)
        assert engine._rows() == rows and not device.MEASURED, step
        engine.scores(batch.inputs, keep, batch.targets)
    assert not device.PENDING and list(device.MEASURED.values()) == [RemovalEngine(task, model)._rows()]


def test_chunk_size_defaults_and_override(model, monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("XAIBOARD_CHUNK_ROWS", raising=False)
    assert RemovalEngine(ShapesTask(), model).chunk_rows == 64  # an image CNN on a CPU
    monkeypatch.setenv("XAIBOARD_CHUNK_ROWS", "40")
    engine = RemovalEngine(ShapesTask(), model)
    assert engine.chunk_rows == 40 and engine._rows() == 40
    assert RemovalEngine(ShapesTask(), model, 8).chunk_rows == 8
    assert chunk_rows(cpu) == chunk_rows(cpu, ShapesTask(), model) == 40


# ---- version 2: only the shape identifies the object ------------------------------------------


@pytest.fixture(scope="module")
def v2_batch():
    return ShapesTaskV2().samples("test", 256, seed=0)


def _mean_auroc(scores: torch.Tensor, batch) -> float:
    return gt_auroc(scores, batch.ground_truth, batch.valid).nanmean().item()


def test_v2_object_background_and_distractors_share_one_colour_distribution(v2_batch):
    """The object's colour and the background's (the image's median, since the background covers
    most pixels) have the same quantiles: brightness says nothing about which is which. The band
    is about four standard errors of a decile of 256 draws per channel (~0.02)."""
    x, gt = v2_batch.inputs, v2_batch.ground_truth
    background = x.flatten(2).median(dim=2).values
    obj = (x * gt[:, None]).sum(dim=(2, 3)) / gt.sum(dim=(1, 2))[:, None]
    q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    assert torch.allclose(obj.flatten().quantile(q), background.flatten().quantile(q), atol=0.08)


def test_v2_distractors_share_the_size_distribution_and_are_no_class_shape():
    """Distractors take the object's half-extents; their mean areas lie within the class shapes'
    range (down to 0.9 of the smallest: a frame is a little smaller than a cross, 38 vs 40
    pixels), and none coincides with a class shape of the same size."""
    half = torch.linspace(*HALF_EXTENT, 21)
    centre = torch.full_like(half, 15.0)
    classes, distractors = shape_masks(centre, centre, half), distractor_masks(centre, centre, half)
    class_areas = classes.sum(dim=(2, 3)).float().mean(0)
    distractor_areas = distractors.sum(dim=(2, 3)).float().mean(0)
    assert 0.9 * class_areas.min() <= distractor_areas.min() and distractor_areas.max() <= class_areas.max()
    same = (classes.unsqueeze(2) == distractors.unsqueeze(1)).flatten(3).all(dim=3)
    assert not same.any()


def test_v2_model_free_priors_do_not_find_the_object(v2_batch):
    """Input magnitude (the control), brightness and closeness to the centre rank object pixels
    near chance on a fixed sample (version 1: 0.99, 0.99 and 0.84)."""
    x = v2_batch.inputs
    y, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centre = -((y - 15.5) ** 2 + (xx - 15.5) ** 2).sqrt().expand(len(x), 32, 32)
    task = ShapesTaskV2()
    for prior in (task.model_free_attribution(x), x.mean(dim=1), centre):
        assert _mean_auroc(prior, v2_batch) <= 0.65
    assert _mean_auroc(task.model_free_attribution(x), v2_batch) <= 0.55  # same colours: chance


def test_v2_contrast_to_the_median_colour_finds_the_object(v2_batch):
    """Version 2's known shortcut, the reason for version 3: its one-colour background is every
    image's median colour, and the object differs from it (0.95 measured; distractors, which
    also differ, are a minority of the other pixels)."""
    assert _mean_auroc(priors.contrast(ShapesTaskV2(), v2_batch.inputs), v2_batch) > 0.9


def test_v2_samples_are_deterministic_and_prefix_stable():
    task = ShapesTaskV2()
    a = task.samples("test", 300, seed=1)
    assert torch.equal(a.inputs[:10], task.samples("test", 10, seed=1).inputs)
    assert torch.equal(a.ground_truth, task.samples("test", 300, seed=1).ground_truth)
    assert set(a.labels.tolist()) == {0, 1, 2, 3} and a.ground_truth.sum(dim=(1, 2)).min() >= 20


def test_v2_training_batch_removes_pixels_and_objects(v2_batch):
    """Augmentation: removed pixels are the `zero` baseline; an image whose object was removed
    entirely gets the uniform target, every other image its one-hot label."""
    task = ShapesTaskV2()
    idx = torch.arange(64)
    torch.manual_seed(0)
    inputs, targets = task.training_batch(v2_batch, idx)
    removed = (inputs == 0).all(dim=1) & (v2_batch.inputs[idx] != 0).any(dim=1)
    gone = (removed | ~v2_batch.ground_truth[idx]).flatten(1).all(dim=1)
    assert gone.any() and (~gone).any()
    assert torch.equal(targets[gone], torch.full((int(gone.sum()), 4), 0.25))
    assert torch.equal(targets[~gone].argmax(1), v2_batch.labels[idx][~gone]) and (targets[~gone].max(1).values == 1).all()


@pytest.fixture(scope="module", params=[ShapesTaskV2, ShapesTaskV3], ids=["v2", "v3"])
def task_and_model(request):
    task = request.param()
    return task, task.model()


def test_committed_weights_accuracy_of_versions_2_and_3(task_and_model):
    task, model = task_and_model
    b = task.samples("test", 256, seed=0)
    with torch.no_grad():
        accuracy = (model(b.inputs).argmax(1) == b.labels).float().mean().item()
    assert accuracy >= 0.95
    assert weights_meta(task.weights_stem)["test_accuracy"] >= 0.95
    assert task.card.test_accuracy == weights_meta(task.weights_stem)["test_accuracy"]


def test_removing_the_object_drops_the_target_probability_more_than_random_pixels(task_and_model):
    """The faithfulness check: removing the object's pixels (`zero`) lowers the target class
    probability at least twice as much as removing as many random pixels."""
    task, model = task_and_model
    b = task.samples("test", 64, seed=0)
    g = torch.Generator().manual_seed(0)
    rank = torch.rand(b.ground_truth.flatten(1).shape, generator=g).argsort(1).argsort(1)
    random = (rank < b.ground_truth.flatten(1).sum(1, keepdim=True)).view_as(b.ground_truth)
    keep = torch.stack([torch.ones_like(random), ~b.ground_truth, ~random], dim=1)
    with torch.no_grad():
        p = model(task.remove(b.inputs, keep)).softmax(-1).view(64, 3, -1)
    p = p.gather(2, b.targets.view(64, 1, 1).expand(64, 3, 1)).squeeze(2)
    drop_truth, drop_random = (p[:, 0] - p[:, 1]).mean(), (p[:, 0] - p[:, 2]).mean()
    assert drop_truth >= 2 * drop_random and drop_truth > 0.3


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_saliency_finds_the_object(task_and_model):
    """Where the priors stay near chance, the model's gradients find the object (measured on 64
    images: 0.95 on both versions; the 0.85 bar is the issue's target)."""
    task, model = task_and_model
    b = task.samples("test", 64, seed=0)
    saliency = Saliency(model).attribute(b.inputs.clone(), target=b.targets, abs=True)
    assert _mean_auroc(task.pool(saliency, b.inputs), b) >= 0.85


@pytest.fixture(scope="module")
def v3_batch():
    return ShapesTaskV3().samples("test", 256, seed=0)


def test_v3_keeps_version_2s_layout_and_changes_only_the_background(v2_batch, v3_batch):
    """Under one seed both versions draw the same labels, objects and positions."""
    assert torch.equal(v3_batch.labels, v2_batch.labels) and torch.equal(v3_batch.ground_truth, v2_batch.ground_truth)
    assert not torch.equal(v3_batch.inputs, v2_batch.inputs)


def test_shape_colours_contrast_with_every_region_they_overlap_and_only_those():
    """A colour is redrawn until it differs by ``MIN_CONTRAST`` from the regions its shape
    overlaps; regions it does not overlap do not constrain it."""
    regions = torch.tensor([[[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]]).expand(500, 2, 3)
    overlap = torch.tensor([True, False]).expand(500, 1, 2)
    colours = _distinct_colours((500, 1), regions, overlap, torch.Generator().manual_seed(0))
    assert ((colours[:, 0] - 0.5).abs().amax(-1) >= MIN_CONTRAST).all()
    assert ((colours[:, 0] - 0.25).abs().amax(-1) < MIN_CONTRAST).any()


def test_v3_model_free_priors_do_not_find_the_object(v3_batch):
    """Every image prior, the contrast to the median colour included, stays at or below the
    issue's 0.65 on 256 test images (measured: contrast 0.58, centre 0.60, input magnitude and
    brightness 0.51)."""
    task = ShapesTaskV3()
    found = {"input_magnitude": task.model_free_attribution(v3_batch.inputs)}
    found.update({name: prior(task, v3_batch.inputs) for name, prior in priors.priors(task, v3_batch.inputs).items()})
    aurocs = {name: _mean_auroc(scores, v3_batch) for name, scores in found.items()}
    reach = {name: max(auroc, 1 - auroc) for name, auroc in aurocs.items()}
    assert set(reach) == {"input_magnitude", "centre", "brightness", "contrast"}
    assert max(reach.values()) <= 0.65, reach

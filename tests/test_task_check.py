"""``xaiboard task check``: shortcut scores of model-free priors and the ground-truth faithfulness
check, on toy tasks whose answers are known; the priors on hand-made inputs; the record, which the
result store never mistakes for a method and the board shows beside the task's records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_leaderboard import SHAPES, write_root
from toy_task import ToyTask
from torch import Tensor, nn

import xaiboard.methods  # noqa: F401  (registers input_magnitude)
from xaiboard.benchmark import priors
from xaiboard.benchmark.cli import main
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.store import ResultStore
from xaiboard.benchmark.task import Batch
from xaiboard.benchmark.task_check import TaskCheck, check_task, random_sets, write_check
from xaiboard.benchmark.task_check_record import FLAG_AUROC, PASS_RULE, check_path, read_checks
from xaiboard.leaderboard import tables

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_task.py"
BLOCK = 2  # ground-truth blocks are 2x2 of the toy's 4x4 pixels


class WeightedPixels(nn.Module):
    """Class-1 logit ``sum(weight * x) + bias``, class-0 logit 0: which pixels it reads is ``weight``."""

    def __init__(self, weight: Tensor, bias: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.float(), requires_grad=False)
        self.bias = bias

    def forward(self, x: Tensor) -> Tensor:
        one = (x.sum(1) * self.weight).sum((1, 2)) + self.bias
        return torch.stack([torch.zeros_like(one), one], dim=1)


class BrightTruth(ToyTask):
    """Every sample is class 1 with a bright 2x2 block at a random place: the block is the truth."""

    name = "toy/bright-truth"
    reads: str = "truth"

    def samples(self, split: str, n: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        corner = torch.randint(0, 4 - BLOCK + 1, (n, 2), generator=g)
        rows, cols = torch.arange(4).view(1, 4, 1), torch.arange(4).view(1, 1, 4)
        top, left = corner[:, :1, None], corner[:, 1:, None]
        truth = (rows >= top) & (rows < top + BLOCK) & (cols >= left) & (cols < left + BLOCK)
        x = (torch.rand(n, 1, 4, 4, generator=g) * 0.3 + truth.unsqueeze(1)).float()
        ones = torch.ones(n, dtype=torch.long)
        return Batch(x, ones, ones, torch.ones(n, 4, 4, dtype=torch.bool), truth, torch.arange(n))


class FixedBlockReader(BrightTruth):
    """The truth is always the top-left block; the model reads only it, or only the other pixels."""

    def samples(self, split: str, n: int, seed: int) -> Batch:
        batch = super().samples(split, n, seed)
        truth = self.gt_mask().expand(n, 4, 4).clone()
        g = torch.Generator().manual_seed(seed + 1)
        x = (torch.rand(n, 1, 4, 4, generator=g) * 0.3 + truth.unsqueeze(1)).float()
        return Batch(x, batch.targets, batch.labels, batch.valid, truth, batch.ids)

    def model(self, device="cpu") -> nn.Module:
        truth = self.gt_mask().float()
        # reads the truth: logit 2*sum(block) - 4 is ~+5 with the block, -4 without it;
        # ignores it: 2*sum(others) - 1 reads only the 12 dim pixels
        weight, bias = (2 * truth, -4.0) if self.reads == "truth" else (2 * (1 - truth), -1.0)
        return WeightedPixels(weight, bias).eval().to(device)


class IgnoresTruth(FixedBlockReader):
    reads = "others"


class NoiseTruth(ToyTask):
    """Uniform noise pixels and a ground truth of 4 random pixels, drawn independently of them."""

    name = "toy/noise-truth"

    def samples(self, split: str, n: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, 1, 4, 4, generator=g)
        truth = torch.rand(n, 16, generator=g).argsort(1).argsort(1).lt(4).view(n, 4, 4)
        labels = torch.randint(0, 2, (n,), generator=g)
        return Batch(x, labels, labels, torch.ones(n, 4, 4, dtype=torch.bool), truth, torch.arange(n))


def auroc(check: TaskCheck, prior: str) -> float:
    return next(p.auroc for p in check.priors if p.prior == prior)


def test_a_truth_that_is_the_brightest_region_is_found_by_the_magnitude_prior_and_flagged():
    check = check_task(BrightTruth(), n=32)
    # the block (>= 1.0) outshines every other pixel (< 0.3), so every sample's AUROC is exactly 1
    assert auroc(check, "input_magnitude") == auroc(check, "brightness") == 1.0
    assert check.flagged and check.best_prior.prior in ("input_magnitude", "brightness")


class DarkTruth(BrightTruth):
    """The same blocks, now the only dark pixels of a bright image."""

    def samples(self, split: str, n: int, seed: int) -> Batch:
        batch = super().samples(split, n, seed)
        return Batch(1.5 - batch.inputs, batch.targets, batch.labels, batch.valid, batch.ground_truth, batch.ids)


def test_a_prior_that_ranks_the_truth_last_finds_it_reversed_and_flags_the_task():
    check = check_task(DarkTruth(), n=16)
    # the block (<= 0.5) is darker than every other pixel (> 1.2): magnitude AUROC exactly 0, reach 1
    assert auroc(check, "input_magnitude") == 0.0 and check.best_prior.reach == 1.0 and check.flagged


def test_a_truth_uncorrelated_with_every_prior_scores_chance_and_is_not_flagged():
    n = 512
    check = check_task(NoiseTruth(), n=n)
    # Under the null a sample's AUROC with P=4 truth and N=12 other pixels has variance
    # (P+N+1)/(12PN) = 17/576 (Mann-Whitney, no ties; the centre prior's ties only lower it), so the
    # mean over n samples has standard error sqrt(17/576/n) = 0.0076; 4 standard errors = 0.030.
    tolerance = 4 * math.sqrt(17 / 576 / n)
    for prior in ("input_magnitude", "centre", "brightness", "contrast"):
        assert auroc(check, prior) == pytest.approx(0.5, abs=tolerance), prior
    assert not check.flagged and check.best_prior.reach < FLAG_AUROC


def test_the_faithfulness_check_passes_a_model_that_reads_the_truth_and_fails_one_that_ignores_it():
    reads = check_task(FixedBlockReader(), n=64).faithfulness
    # removing the block takes the logit from ~+5 to -4 (drop ~0.98); the 4 random pixels are drawn
    # outside the block, which the model never reads: their drop is exactly 0
    assert reads.applicable and reads.passed and reads.gt_drop > 0.9 and reads.random_drop == 0.0
    ignores = check_task(IgnoresTruth(), n=64).faithfulness
    # the model never reads the block: removing it changes nothing (exactly 0), random pixels do
    assert ignores.gt_drop == 0.0 and ignores.random_drop > 0 and ignores.passed is False
    assert ignores.rule == PASS_RULE and "outside the ground truth" in PASS_RULE


def test_random_sets_choose_exactly_k_valid_features_per_draw_and_never_padding():
    valid = torch.tensor([[True] * 5 + [False] * 3, [True] * 8])
    chosen = random_sets(valid, torch.tensor([2, 5]), draws=6, seed=0)
    assert chosen.shape == (2, 6, 8)
    assert chosen.sum(-1).tolist() == [[2] * 6, [5] * 6] and not chosen[0, :, 5:].any()
    assert torch.equal(chosen, random_sets(valid, torch.tensor([2, 5]), draws=6, seed=0))  # seeded
    # asked for more than the mask allows (the check's draws outside a large truth): all it allows
    assert random_sets(valid, torch.tensor([7, 8]), draws=2, seed=0).sum(-1).tolist() == [[5, 5], [8, 8]]


def test_a_task_without_ground_truth_says_why_both_checks_do_not_apply():
    task = ToyTask()
    task.has_ground_truth = False
    check = check_task(task, n=4)
    assert check.priors == [] and not check.flagged and not check.faithfulness.applicable
    assert "has no ground truth" in check.faithfulness.reason


def test_image_priors_prefer_the_centre_and_bright_pixels():
    x = torch.zeros(1, 2, 3, 3)
    x[0, :, 0, 2] = torch.tensor([0.2, 0.6])
    centre = priors.centre(ToyTask(), x)[0]
    assert centre[1, 1] == 0 and centre[0, 0] == pytest.approx(-math.sqrt(2))  # distance to (1, 1)
    assert priors.brightness(ToyTask(), x)[0, 0, 2] == pytest.approx(0.4)  # channel mean


def test_the_contrast_prior_finds_objects_darker_or_lighter_than_the_background():
    """A grey image (0.5) with one bright and one dark pixel: both stand out by their L1 distance
    from the median colour, summed over channels; the background scores 0."""
    x = torch.full((1, 3, 4, 4), 0.5)
    x[0, :, 0, 0], x[0, :, 3, 3] = 0.9, 0.2
    scores = priors.contrast(ToyTask(), x)[0]
    assert scores[0, 0] == pytest.approx(1.2) and scores[3, 3] == pytest.approx(0.9)  # 3 x 0.4, 3 x 0.3
    assert scores.sum() == pytest.approx(2.1)


def test_graph_priors_score_hop_distance_and_degree_of_each_edge_on_a_path():
    from xaiboard.tasks.graph import GraphInputs

    # path 0 - 1 - 2 - 3 (both directions), explained node 0
    src, dst = [0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]
    inputs = GraphInputs(x=torch.ones(4, 1), edge_index=torch.tensor([src, dst]), edge_sample=torch.zeros(6, dtype=torch.long),
                         edge_slot=torch.arange(6), center=torch.tensor([0]), node_sample=torch.zeros(4, dtype=torch.long),
                         node_id=torch.arange(4))  # fmt: skip
    task = TASKS.create("graph/ba-shapes")
    assert priors.distance(task, inputs)[0].tolist() == [-1, -1, -3, -3, -5, -5]  # hops 0,1,2,3 summed per edge
    assert priors.degree(task, inputs)[0].tolist() == [3, 3, 4, 4, 3, 3]  # degrees 1,2,2,1 summed per edge
    assert priors.cycle(task, inputs)[0].tolist() == [0] * 6  # a path is all bridges
    assert priors.triangle(task, inputs)[0].tolist() == [0] * 6
    assert set(priors.priors(task, inputs)) == {"distance", "degree", "cycle", "triangle"}


def test_the_cycle_prior_marks_the_edges_of_each_samples_cycles_and_not_its_bridges():
    """Two samples in one union: a triangle 0-1-2 with a pendant edge 2-3, and a path 4-5 with a
    self-loop on 5 (not a cycle through two nodes: the prior scores it 0)."""
    from xaiboard.tasks.graph import GraphInputs

    pairs = [(0, 1), (1, 2), (2, 0), (2, 3), (4, 5)]
    src = [a for a, b in pairs] + [b for a, b in pairs] + [5]
    dst = [b for a, b in pairs] + [a for a, b in pairs] + [5]
    sample = torch.tensor([0, 0, 0, 0, 1] * 2 + [1])
    slot = torch.tensor([0, 1, 2, 3, 0, 4, 5, 6, 7, 1, 2])
    inputs = GraphInputs(x=torch.ones(6, 1), edge_index=torch.tensor([src, dst]), edge_sample=sample, edge_slot=slot,
                         center=torch.tensor([0, 4]), node_sample=torch.tensor([0, 0, 0, 0, 1, 1]), node_id=torch.arange(6))  # fmt: skip
    scores = priors.cycle(TASKS.create("graph/ba-shapes"), inputs)
    assert scores[0].tolist() == [1, 1, 1, 0, 1, 1, 1, 0]  # the triangle's six directed edges, the pendant's two
    assert scores[1, :3].tolist() == [0, 0, 0]  # the path's two directions and the self-loop


def test_the_triangle_prior_marks_edges_whose_ends_share_a_neighbour_and_not_other_cycles():
    """Two samples in one union: a triangle 0-1-2 with a pendant edge 2-3, and a square 4-5-6-7
    with a self-loop on 7. The square is a cycle (the cycle prior marks it) but holds no triangle."""
    from xaiboard.tasks.graph import GraphInputs

    samples = [[(0, 1), (1, 2), (2, 0), (2, 3)], [(4, 5), (5, 6), (6, 7), (7, 4), (7, 7)]]
    edges = [(u, v, k) for k, pairs in enumerate(samples) for a, b in pairs for u, v in dict.fromkeys([(a, b), (b, a)])]
    src, dst, sample = (torch.tensor(column) for column in zip(*edges))
    slot = torch.cat([torch.arange(int((sample == k).sum())) for k in range(2)])
    inputs = GraphInputs(x=torch.ones(8, 1), edge_index=torch.stack([src, dst]), edge_sample=sample, edge_slot=slot,
                         center=torch.tensor([0, 4]), node_sample=torch.tensor([0] * 4 + [1] * 4), node_id=torch.arange(8))  # fmt: skip
    task = TASKS.create("graph/ba-shapes")
    on_triangle = [[u, v] != [2, 3] and [u, v] != [3, 2] for u, v, k in edges if k == 0]
    assert priors.triangle(task, inputs)[0, : len(on_triangle)].tolist() == [float(x) for x in on_triangle]
    assert priors.triangle(task, inputs)[1].sum() == 0 and priors.cycle(task, inputs)[1].sum() == 8


def test_text_priors_put_early_tokens_first_and_rare_training_tokens_first():
    from xaiboard.tasks.text import TextInputs

    class Corpus:
        """Training tokens 5, 5, 5, 6 (id 7 is padding-like and invalid)."""

        def valid_features(self, inputs):
            return inputs.input_ids != 7

        def samples(self, split, n, seed):
            ids = torch.tensor([[5, 5, 5, 6, 7]])
            return Batch(TextInputs(ids, torch.ones_like(ids)), None, None, ids != 7)

    ids = torch.tensor([[6, 5, 4, 7]])
    inputs = TextInputs(ids, torch.ones_like(ids))
    assert priors.position(Corpus(), inputs).tolist() == [[0, -1, -2, 0]]
    # add-one counts over ids 0..7: id 5 -> 4, id 6 -> 2, the 6 others -> 1; total 12
    expected = [-math.log(2 / 12), -math.log(4 / 12), -math.log(1 / 12), 0.0]
    assert priors.rarity(Corpus(), inputs)[0].tolist() == pytest.approx(expected, rel=1e-6)  # float32 logs


def test_task_check_runs_on_the_readme_custom_task_and_writes_a_record_the_store_ignores(tmp_path):
    result = CliRunner().invoke(main, ["task", "check", "my/bars", "--plugin", str(EXAMPLE), "-n", "16",
                                       "--results-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "shortcut scores" in result.output and "faithfulness: PASS" in result.output
    # the bar (1.0) is brighter than the background (< 0.3): the magnitude prior finds it
    assert "FLAGGED: ground truth reachable without the model" in result.output
    path = check_path(tmp_path, "my/bars")
    assert path.name == "my%2Fbars.json" and f"record: {path}" in result.output
    checks, problems = read_checks(tmp_path)
    assert problems == [] and checks["my/bars"]["flagged"] and checks["my/bars"]["task_version"] == "1"
    assert ResultStore(tmp_path).records() == ([], []) and ResultStore(tmp_path).cards() == ({}, [])


def test_the_board_shows_a_current_check_flags_its_task_and_keeps_a_stale_one_apart(tmp_path):
    write_root(tmp_path, SHAPES)
    before = tables.content_keys(tmp_path)
    check = check_task(BrightTruth(), n=8)
    record = {**check.to_dict(), "task": "image/shapes", "task_version": "1.0", "task_fingerprint": ""}
    check_path(tmp_path, "image/shapes").parent.mkdir()
    check_path(tmp_path, "image/shapes").write_text(json.dumps(record))
    after = tables.content_keys(tmp_path)
    assert after.board != before.board and after.tasks == before.tasks  # only the board's key covers checks
    loaded, _ = tables.load(tmp_path)
    assert loaded.task_check("image/shapes") == (record, "")
    assert loaded.flagged("image/shapes")[0].startswith("image/shapes: ground truth reachable without the model")
    tables.build(tmp_path)
    stored, notice = tables.load(tmp_path)
    assert notice == "" and stored.task_checks == loaded.task_checks  # stored with the tables, read back as is
    stale = {**record, "task_version": "0.9"}
    check_path(tmp_path, "image/shapes").write_text(json.dumps(stale))
    loaded, _ = tables.load(tmp_path)
    assert "version 0.9" in loaded.task_check("image/shapes")[1] and loaded.flagged("image/shapes") == []


def test_a_bad_or_misplaced_check_file_is_one_problem_line_and_never_shown(tmp_path):
    write_root(tmp_path, SHAPES)
    check = check_task(BrightTruth(), n=8)
    write_check(tmp_path, check)  # lands in toy%2Fbright-truth.json
    misplaced = tmp_path / "_tasks" / "image%2Fshapes.json"
    misplaced.write_text(json.dumps(check.to_dict()))
    (tmp_path / "_tasks" / "broken.json").write_text("{not json")
    loaded, _ = tables.load(tmp_path)
    assert set(loaded.task_checks) == {"toy/bright-truth"}
    assert sum("_tasks" in line for line in loaded.problems) == 2


def test_the_app_marks_a_flagged_task_on_the_overview_and_shows_its_check_on_the_task_page(tmp_path, monkeypatch):
    from test_leaderboard_app import open_app

    write_root(tmp_path, SHAPES)
    check = check_task(IgnoresTruth(), n=8)  # flagged (bright block) and failing (the model ignores it)
    record = {**check.to_dict(), "task": "image/shapes", "task_version": "1.0", "task_fingerprint": ""}
    check_path(tmp_path, "image/shapes").parent.mkdir()
    check_path(tmp_path, "image/shapes").write_text(json.dumps(record))
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("ground truth reachable without the model" in w for w in warnings)
    assert any("does not read the ground truth" in w for w in warnings)
    at = at.switch_page("views/task.py").run()
    assert not at.exception
    assert "Shortcut scores and ground-truth faithfulness" in [h.value for h in at.subheader]
    frames = [frame.value for frame in at.dataframe]
    priors_shown = next(f for f in frames if "gt_auroc" in f.columns)
    assert priors_shown["prior"].tolist() == ["input_magnitude", "centre", "brightness", "contrast"]
    assert any("mean drop of p(target)" in f.columns for f in frames)
    assert "faithfulness: FAIL" in "\n".join(c.value for c in at.code)

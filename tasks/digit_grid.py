"""``image/digit-grid``: which digit is in the target cell of a 2x2 grid? (DiFull)

DiFull (Rao, Böhle & Schiele, "Better Understanding Differences in Attribution Methods via
Systematic Evaluations", TPAMI 2023) evaluates attributions on grids of images whose model
*provably* cannot use anything outside one cell for that cell's outputs, so every bit of
attribution outside the target cell is wrong by construction, not by assumption.

Here a grid is four real sklearn digits (16x16 each, bilinear from 8x8; four distinct digits,
as in GridPG/DiFull grids) tiled into one 32x32 image. The model runs one shared ``DigitCNN``
on each cell separately: cells are cut apart before the first convolution and never mixed
again, so no receptive field crosses a cell boundary. Its 40 outputs are per-cell
log-probabilities, index ``cell * 10 + digit`` (cells row-major). Log-probabilities rather than
raw logits so that a softmax over all 40 outputs equals the cell's own probability / 4: the
probability-based metrics then depend only on the target cell too. A sample's target is a
seeded random cell and the digit in it; its ground truth is all pixels of that cell. The
model's decision for a target is per cell: ``decision_group_size = 10`` makes the metrics that
take the model's decision (ROAD, fidelity) take the argmax over the target cell's 10 outputs,
and the other-class metrics pick another digit of that cell (:mod:`xaiboard.benchmark.decisions`).
RIS/ROS still keep a noisy neighbour only when the argmax over all 40 outputs holds: a deliberate
gap for now, since moving them would make every task's robustness records stale for no change
off this task (their re-explanations are the costliest part of the text hub tasks' runs).

For Grad-CAM the cells' last feature maps are tiled back into one 8x8 grid map (``mosaic``, an
identity layer the CAM reads): Grad-CAM weights every cell's activations by the target's
gradients and upsamples the coarse map bilinearly, so it leaks across cell boundaries, which
is what DiFull reports for CAM-style methods. Occlusion with windows that straddle a cell
boundary leaks too; gradient-based methods cannot (their gradient outside the cell is exactly 0).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import Batch, TaskCard

from .digits import (
    CLASS_NAMES,
    DigitCNN,
    DigitsTask,
    accuracy,
    digit_split,
    fit_classifier,
)
from .image import ImageTask
from .weights import load_weights, weights_meta

CELL = 16
GRID = 2
CELLS = GRID * GRID
SIZE = GRID * CELL
DIGITS = len(CLASS_NAMES)


def split_cells(x: Tensor) -> Tensor:
    """``[B, C, G*h, G*w]`` -> ``[B*G*G, C, h, w]``, cells in row-major order per sample."""
    b, c, height, width = x.shape
    cells = x.view(b, c, GRID, height // GRID, GRID, width // GRID).permute(
        0, 2, 4, 1, 3, 5
    )
    return cells.reshape(b * CELLS, c, height // GRID, width // GRID)


def join_cells(cells: Tensor) -> Tensor:
    """The inverse of ``split_cells``: ``[B*G*G, C, h, w]`` -> ``[B, C, G*h, G*w]``."""
    n, c, h, w = cells.shape
    grid = cells.view(n // CELLS, GRID, GRID, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(n // CELLS, c, GRID * h, GRID * w)


def log_softmax_log1p(logits: Tensor) -> Tensor:
    """``log_softmax`` over the last dimension without saturating at confident predictions.

    ``torch.log_softmax`` computes the top class as ``-log(1 + s)`` with ``s`` the other classes'
    mass relative to it, which is exactly 0.0 in float32 once ``s < 6e-8`` (a logit margin above
    ~17, measured on 5 of 64 test grids): removing one pixel then changes nothing and occlusion
    scores vanish. Using ``log1p(s)`` keeps ``s`` down to float32's smallest normal.
    """
    top = logits.argmax(dim=-1, keepdim=True)
    shifted = logits - logits.gather(-1, top)
    others = shifted.exp().scatter(-1, top, 0.0).sum(dim=-1, keepdim=True)
    return shifted - others.log1p()


class GridModel(nn.Module):
    """One ``DigitCNN`` applied to each cell separately; outputs ``[B, 40]`` per-cell log-probabilities."""

    def __init__(self, cell: DigitCNN) -> None:
        super().__init__()
        self.cell = cell
        self.mosaic = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        maps = self.mosaic(join_cells(self.cell.feature_map(split_cells(x))))
        return log_softmax_log1p(self.cell.classify(split_cells(maps))).view(
            x.shape[0], CELLS * DIGITS
        )


def compose(
    pool: Tensor, labels: Tensor, n: int, g: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``n`` grids ``[n, 1, SIZE, SIZE]`` of four distinct digits each, and their digits ``[n, 4]``.

    Each cell's image is drawn uniformly among the pool's images of that cell's digit.
    """
    digits = torch.rand(n, DIGITS, generator=g).argsort(dim=1)[:, :CELLS]
    order = labels.argsort(stable=True)
    counts = torch.bincount(labels, minlength=DIGITS)
    starts = counts.cumsum(0) - counts
    offsets = (torch.rand(n, CELLS, generator=g) * counts[digits]).long()
    cells = pool[order[starts[digits] + offsets]]
    return join_cells(cells.view(n * CELLS, *pool.shape[1:])), digits


def cell_masks(cells: Tensor) -> Tensor:
    """Bool ``[n, SIZE, SIZE]``: the pixels of cell ``cells[i]`` of each grid."""
    one_hot = torch.nn.functional.one_hot(cells, CELLS).bool()
    return join_cells(
        one_hot.view(-1, 1, 1, 1).expand(-1, 1, CELL, CELL).contiguous()
    ).squeeze(1)


@TASKS.register("image/digit-grid")
class DigitGridTask(ImageTask):
    name = "image/digit-grid"
    version = "1"
    num_classes = CELLS * DIGITS
    #: each cell's 10 outputs form one decision (xaiboard.benchmark.decisions)
    decision_group_size: ClassVar[int] = DIGITS
    class_names = tuple(f"{d} in cell {c}" for c in range(CELLS) for d in CLASS_NAMES)
    image_shape = (1, SIZE, SIZE)
    has_ground_truth = True
    weights_stem = "image_digit_grid"
    recipe: ClassVar[dict[str, Any]] = {**DigitsTask.recipe, "cell_size": CELL}

    @property
    def card(self) -> TaskCard:
        return TaskCard(
            dataset=f"2x2 grids of four distinct scikit-learn load_digits images, each bilinear to {CELL}x{CELL}",
            model=(
                "DiFull: one DigitCNN run on each cell separately (no receptive field crosses a cell); "
                "40 outputs = per-cell log-probabilities, index cell*10 + digit"
            ),
            feature_space=f"pixels {SIZE}x{SIZE} (one channel)",
            removal=self.removal_name,
            removal_baseline=self.removal_baseline,
            ground_truth="every pixel of the target cell: by construction nothing else can change its output",
            licence="CC BY 4.0 (UCI ML repository), shipped with scikit-learn (BSD-3-Clause)",
            test_accuracy=weights_meta(self.weights_stem).get("test_accuracy"),
            splits=(
                "the cell classifier trained on single train-split digits of image/digits' stratified split; "
                "evaluation grids are built from test-split digits only. test_accuracy is the cell "
                "classifier's accuracy on all test-split digits"
            ),
            notes="Rao, Böhle & Schiele, TPAMI 2023 (DiFull); target = a seeded random cell and its digit",
        )

    def build_model(self) -> nn.Module:
        return GridModel(DigitCNN(width=self.recipe["width"]))

    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        return load_weights(self.build_model(), self.weights_stem).eval().to(device)

    def samples(self, split: str, n: int, seed: int) -> Batch:
        images, labels = self._digits(split)
        g = torch.Generator().manual_seed(seed)
        grids, digits = compose(images, labels, n, g)
        cells = torch.randint(CELLS, (n,), generator=g)
        targets = cells * DIGITS + digits[torch.arange(n), cells]
        valid = torch.ones(n, SIZE, SIZE, dtype=torch.bool)
        return Batch(grids, targets, targets, valid, cell_masks(cells), torch.arange(n))

    def cam_layer(self, model: nn.Module) -> nn.Module:
        return model.mosaic

    def train_model(
        self, seed: int = 0, device: torch.device | str = "cpu"
    ) -> tuple[nn.Module, float]:
        """image/digits' recipe on single ``CELL``-sized train digits; accuracy on all test digits."""
        build = lambda: DigitCNN(width=self.recipe["width"])
        cell = fit_classifier(build, *self._digits("train"), self.recipe, seed, device)
        return GridModel(cell).eval(), accuracy(cell, *self._digits("test"))

    @staticmethod
    def _digits(split: str) -> tuple[Tensor, Tensor]:
        """Single ``CELL``-sized digits of a split and their labels."""
        return digit_split(split, CELL)[:2]

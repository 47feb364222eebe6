"""Faithfulness: ROAD, RemOve And Debias (Rong et al., ICML 2022).

Deletion curves that replace removed pixels by a constant leak the removal pattern: the shape
of the removed region alone can tell a model which pixels mattered, so a curve measures the
mask's shape as much as the attribution's ranking. ROAD removes pixels by *noisy linear
imputation* instead: each removed pixel takes the weighted mean of its 8 neighbours (weight
1/6 for the 4 direct neighbours, 1/12 for the diagonals, renormalised at the image border),
solved jointly for all removed pixels as one sparse linear system, plus Gaussian noise of std
``noise``. The imputed value carries no trace of which pixels were removed.

For each percentage ``p`` the ``floor(p * n / 100)`` highest-attributed pixels (MoRF) or
lowest (LeRF) are imputed (``n = H * W``; ties by pixel index) and the model's decision is
recorded; the per-sample score is the mean over the percentages of ``1[argmax f(x_p) = y]``
(``output="accuracy"``, as the paper and Quantus) or of the target probability
(``output="prob"``). The mean over samples of the accuracy score is the mean of Quantus's ROAD
curve (its per-percentage batch accuracy) over the same percentages.

The decision is taken within the target's decision group (:mod:`..decisions`): on a task whose
outputs are several classifiers side by side (``image/digit-grid``: one per cell), ``argmax``
is over the target cell's outputs only, since ROAD asks whether the model still recognises the
target, not whether another cell has become the most confident one. On every other task the
group is all classes, the plain argmax of the paper and Quantus.

Image tasks only: the imputation is defined through pixel neighbourhoods on a grid; tokens and
edges have no neighbours whose mean is a plausible value. ROAD uses its own missingness model
by design, whatever the task's removal operator.

ROAD is imputation-bound, not pass-bound. The imputed images are built ``NOISE_ROWS`` rows at a
time (whole percentages, sample-major, so the noise draws do not depend on the engine's chunk
size) by a banded Cholesky solve (:func:`linear_imputation`), then scored by the engine's model
calls. Measured on ``image/digits``, MoRF, 1 torch thread, on a shared 2-core machine: at
N = 64 (576 images, 295k unknowns) scipy's ``spsolve`` (SuperLU, ``MMD_AT_PLUS_A`` ordering) on
the block-diagonal system took 0.9-1.1 s and the banded solve 0.17-0.24 s (0.06 s of it
building the band); the metric went from 0.66-0.70 s to 0.15-0.16 s while its 576 model rows
alone take 0.065 s (about 2.3x its pass floor, was ~10x), and at N = 256 from 2.6 s to 0.71 s
(4x its floor). The solve runs on the host, on a GPU too.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import ClassVar, Literal

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor

from ..decisions import DecisionMetric, predicted
from ..metric import Metric, MetricContext
from ..registry import METRICS
from ..removal import target_scores
from ..task import Task
from .perturbation_curves import Order, feature_ranks

RoadOutput = Literal["accuracy", "prob"]

#: ``(dy, dx, weight)`` of the 8 neighbours (Rong et al.; Quantus ``noisy_linear_imputation``)
NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)
#: bytes of band matrix one solve may hold; more images are solved in groups of images
SOLVE_BYTES = 2**26
#: imputed rows per noise draw: the engine's former fixed CPU chunk, so values stay as they were
NOISE_ROWS = 256
ROAD_REFERENCE = (
    "Rong, Leemann, Borisov, Kasneci and Kasneci, 'A Consistent and Efficient Evaluation Strategy "
    "for Attribution Methods', ICML 2022"
)


def linear_imputation(images: Tensor, removed: Tensor) -> Tensor:
    """``images [N, C, H, W]`` with every ``removed [N, H, W]`` pixel set to the weighted mean of
    its in-image neighbours, the removed pixels of each image solved jointly.

    Row ``i`` of the system: ``(sum_j w_ij) v_i - sum_{j removed} w_ij v_j = sum_{j kept} w_ij x_j``
    over the in-image neighbours ``j`` of removed pixel ``i``, one right-hand side per channel.
    Solved in float64 on the host, in groups of images whose band matrix fits ``SOLVE_BYTES``.
    """
    if removed.flatten(1).all(dim=1).any():
        raise ValueError("ROAD cannot impute an image whose every pixel is removed (a percentage of 100)")
    n, c, h, w = images.shape
    values = images.permute(0, 2, 3, 1).to("cpu", torch.float64).numpy().copy()
    mask = removed.cpu().numpy()
    per_solve = max(1, SOLVE_BYTES // ((w + 2) * h * w * 8))
    with blas_controller().limit(limits=1, user_api="blas"):
        for start in range(0, n, per_solve):
            _impute_in_place(values[start : start + per_solve], mask[start : start + per_solve])
    return torch.from_numpy(values).permute(0, 3, 1, 2).to(images.device, images.dtype)


def _impute_in_place(values: np.ndarray, removed: np.ndarray) -> None:
    """Replace the ``removed [n, H, W]`` pixels of ``values [n, H, W, C]`` by the imputation.

    Unknowns are numbered image by image in row-major order, so each couples only with unknowns
    at most ``W + 1`` places away: the system is a symmetric positive definite band matrix
    (diagonally dominant, and every image keeps a pixel), solved by LAPACK's banded Cholesky.
    That is 4-6x faster than SuperLU on the same system and needs no sparse matrix built.
    """
    if not removed.any():
        return
    h, w = removed.shape[1:]
    index = np.cumsum(removed.ravel()).reshape(removed.shape) - 1
    diagonal = np.zeros(removed.shape)
    rhs = np.zeros(values.shape)
    couplings = []
    for dy, dx, weight in NEIGHBOURS:
        here, there = _neighbour_slices(dy, dx, h, w)
        diagonal[here] += weight
        rhs[here] += weight * values[there] * ~removed[there][..., None]
        if dy * w + dx > 0:  # each pair of removed neighbours once, from its earlier pixel
            both = removed[here] & removed[there]
            couplings.append((index[here][both], index[there][both], weight))
    bandwidth = max((int((j - i).max()) for i, j, _ in couplings if i.size), default=0)
    band = np.zeros((bandwidth + 1, int(index.flat[-1]) + 1))
    band[bandwidth] = diagonal[removed]
    for i, j, weight in couplings:
        band[bandwidth - (j - i), j] = -weight
    values[removed] = scipy.linalg.solveh_banded(
        band, rhs[removed], overwrite_ab=True, overwrite_b=True, check_finite=False
    )


@cache
def blas_controller() -> ThreadpoolController:
    """The BLAS thread pools, limited to one thread around the solve: banded Cholesky makes
    thousands of small BLAS calls, and with two OpenBLAS threads on two busy cores each call
    waits for a descheduled thread (measured: 9 s instead of 2 ms for a 2-image solve)."""
    return ThreadpoolController()


def _neighbour_slices(dy: int, dx: int, h: int, w: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index of every pixel whose ``(dy, dx)`` neighbour is in the image, and of that neighbour."""
    here = (slice(None), slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
    there = (slice(None), slice(max(0, dy), h + min(0, dy)), slice(max(0, dx), w + min(0, dx)))
    return here, there


def noisy_linear_imputation(images: Tensor, removed: Tensor, noise: float, generator: torch.Generator) -> Tensor:
    """:func:`linear_imputation` plus ``N(0, noise^2)`` on every channel of every removed pixel."""
    imputed = linear_imputation(images, removed)
    draws = torch.randn(imputed.shape, generator=generator, device=images.device, dtype=images.dtype)
    return torch.where(removed.unsqueeze(1), imputed + noise * draws, imputed)


def road_removed_masks(explanation: Tensor, percentages: Sequence[int], order: Order) -> Tensor:
    """Bool ``[B, P, H, W]``: the ``floor(p * n / 100)`` pixels imputed at each percentage ``p``."""
    valid = torch.ones_like(explanation, dtype=torch.bool)
    ranks = feature_ranks(explanation if order == "morf" else -explanation, valid).view(explanation.shape)
    n = explanation[0].numel()
    counts = torch.tensor([n * p // 100 for p in percentages], device=explanation.device)
    return ranks.unsqueeze(1) < counts.view(1, -1, 1, 1)


def road_curve(
    ctx: MetricContext, percentages: Sequence[int], order: Order, noise: float, output: RoadOutput
) -> Tensor:
    """Per-sample ROAD curve ``[B, P]``: the decision (or target probability) at each percentage.

    Percentages are imputed ``max(1, NOISE_ROWS // B)`` at a time, rows ordered sample-major, so
    the noise draws never depend on how the engine chunks its model calls; the imputed rows
    are then scored by the engine.
    """
    removed = road_removed_masks(ctx.explanation, percentages, order)
    generator = ctx.generator(salt=1)
    inputs, targets = ctx.batch.inputs, ctx.batch.targets
    batch, step = len(targets), max(1, NOISE_ROWS // max(len(targets), 1))
    columns = []
    for start in range(0, len(percentages), step):
        part = removed[:, start : start + step]
        k = part.shape[1]
        images = noisy_linear_imputation(inputs.repeat_interleave(k, dim=0), part.flatten(0, 1), noise, generator)
        logits = ctx.engine.predict(images)
        columns.append(road_scores(ctx.task, logits, targets.repeat_interleave(k), output).view(batch, k))
    return torch.cat(columns, dim=1)


def road_scores(task: Task, logits: Tensor, targets: Tensor, output: RoadOutput) -> Tensor:
    """``[N]``: 1.0 where the model still decides the target within its decision group
    (``accuracy``), or the target's probability."""
    if output == "accuracy":
        return (predicted(task, logits, targets) == targets).to(logits.dtype)
    return target_scores(logits, targets, "prob")


class Road(DecisionMetric, Metric):
    """ROAD: mean model accuracy (or target probability) over removal percentages under noisy
    linear imputation; subclasses fix the order.

    ``score = 1/P sum_p 1[argmax f(ROAD_p(x)) = y]`` over ``percentages`` (default 10 %, ..., 90 %,
    the paper's grid), the argmax taken over ``y``'s decision group (all classes, except on tasks
    that declare groups, e.g. a digit-grid cell: module docstring). Quantus's ``ROAD`` returns the
    batch accuracy per percentage; the batch mean of this score equals the mean of that curve
    (tested with ``noise=0`` on both sides, no ties).
    Quantus only works for single-channel images (it ranks the channel-broadcast attribution over
    ``C*H*W`` entries but imputes ``H*W`` pixels) and only in MoRF order; LeRF is Quantus on the
    negated attribution.
    """

    order: ClassVar[Order]
    family = "faithfulness"
    value_range = (0.0, 1.0)
    modalities = frozenset({"image"})
    reference = ROAD_REFERENCE
    checked_against = "quantus.ROAD (noise=0, single-channel images, no ties; batch accuracy per percentage, 1e-5)"
    defaults = {"percentages": (10, 20, 30, 40, 50, 60, 70, 80, 90), "noise": 0.01, "output": "accuracy"}

    def compute(self, ctx: MetricContext) -> Tensor:
        p = self.params
        return road_curve(ctx, p["percentages"], self.order, p["noise"], p["output"]).mean(dim=1)


@METRICS.register("road_morf")
class RoadMoRF(Road):
    """ROAD, most relevant pixels imputed first: lower is better (the decision breaks early)."""

    name = "road_morf"
    deviation = (
        "per-sample score (batch mean = Quantus's curve mean); works on colour images (Quantus's ROAD ranks "
        "C*H*W entries but imputes H*W pixels)"
    )
    order = "morf"
    direction = "lower"


@METRICS.register("road_lerf")
class RoadLeRF(Road):
    """ROAD, least relevant pixels imputed first: higher is better (the decision survives long)."""

    name = "road_lerf"
    deviation = (
        "LeRF order, which Quantus lacks (= Quantus on the negated attribution, tested)"
    )
    order = "lerf"
    direction = "higher"

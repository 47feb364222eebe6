"""User-proxy: the grid pointing game, the share of positive attribution inside the ground truth.

Böhle et al. ("B-cos Networks", CVPR 2022) evaluate on 2x2 / 3x3 grids of images of distinct
classes: only the target class's cell can drive the target logit, so a faithful explanation
puts its positive attribution there. The score is

    GPG = sum_{i in GT} max(a_i, 0) / sum_i max(a_i, 0)

over the valid features. On a grid task (``image/digit-grid``) the ground truth is the target's
cell; the same definition applies to any ground-truth region, so the metric runs wherever a task
has ground truth, on every modality: the object's pixels, the evidence tokens, the motif's
edges. Only *positive* evidence counts (a signed method's negative scores say "against the
target", which a ground-truth region does not claim), unlike ``relevance_mass_accuracy``'s
default, which counts magnitude.

It is ``relevance_mass_accuracy`` of the positive part, so it shares that function's
conventions: padding never counts, a map without positive attribution scores the ground-truth
share (the uniform map it ties with; Quantus ``Focus`` gives 0 up to its 1e-9 guard), and an
empty or full ground truth gives NaN. Quantus's ``Focus`` (Arias-Duart et al., 2022) computes the
same ratio on 2x2 mosaics with the target quadrant as the region.
"""

from __future__ import annotations

from torch import Tensor

from ..registry import METRICS
from .ground_truth import GroundTruthMetric, relevance_mass_accuracy


def grid_pointing_game(attributions: Tensor, ground_truth: Tensor, valid: Tensor) -> Tensor:
    """Share ``[B]`` of the positive attribution that falls inside the ground truth."""
    return relevance_mass_accuracy(attributions.clamp(min=0), ground_truth, valid)


@METRICS.register("grid_pointing_game")
class GridPointingGame(GroundTruthMetric):
    """Positive attribution inside the ground truth / total positive attribution (B-cos GPG).

    Signed: ``abs=False`` by default, since the definition keeps only positive attribution;
    ``abs=True`` would make it ``relevance_mass_accuracy``.
    """

    name = "grid_pointing_game"
    defaults = {"abs": False}
    reference = (
        "Böhle, Fritz and Schiele, 'B-cos Networks: Alignment is All We Need for Interpretability', "
        "CVPR 2022; Rao, Böhle and Schiele, 'Towards Better Understanding Attribution Methods', CVPR 2022"
    )
    checked_against = "quantus.Focus (2x2 mosaic, target quadrant as the ground truth; 1e-5)"
    score = staticmethod(grid_pointing_game)

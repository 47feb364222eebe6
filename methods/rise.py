"""RISE (Petsiuk et al. 2018): the model's score averaged over random keep-masks, per feature.

``S(f) = E[score(x with mask M) * M_f] / p`` over masks ``M`` that keep each feature with
probability ``p``: a feature scores high when the target probability is high whenever it is
kept. No library implements RISE, so it is written here, batched through the task's removal
operator: the ``n_masks`` masks of a call are one ``[B, N, *F]`` stack scored by the removal
engine, so every sample and mask goes through the model in the engine's chunks, and removal
means what it means for every other method and metric of the task.

Masks, as in the paper, are shared by the samples of a call and drawn under ``seed``:

- images: a ``cells x cells`` grid of cells kept with probability ``p``, upsampled to the
  image (nearest, so the mask stays binary: the task's removal keeps or removes a pixel, it
  does not blend) and shifted by a random offset below one cell, as the paper shifts its
  upsampled masks so that cell borders do not show in the map;
- text and graphs: each token or edge kept with probability ``p`` (their features have no grid).

The score is the target's softmax probability, as in the paper.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.removal import RemovalEngine
from xaiboard.benchmark.task import Task

from .base import Explainer


@METHODS.register("rise")
class RiseExplainer(Explainer):
    """RISE with ``n_masks`` masks keeping features with probability ``p``; grids of ``cells``
    cells a side on images (8 on a 32x32 image: 4-pixel cells, about an object part)."""

    name = "rise"
    paper = "Petsiuk, Das and Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, BMVC 2018"
    description = "RISE (Petsiuk et al. 2018): random keep-masks via the task's removal, target probability"
    family = "perturbation"
    cost_class = "k passes"
    passes = "{n_masks} forward"
    tier = "full"

    def __init__(self, n_masks: int = 500, p: float = 0.5, cells: int = 8, seed: int = 0) -> None:
        super().__init__(n_masks=n_masks, p=p, cells=cells, seed=seed)

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        valid = task.valid_features(inputs)
        generator = torch.Generator(device=valid.device).manual_seed(self.params["seed"])
        masks = self.masks(task, valid.shape[1:], generator)
        keep = masks.unsqueeze(0).expand(valid.shape[0], *masks.shape)
        scores = RemovalEngine(task, model).scores(inputs, keep, targets, "prob")
        saliency = torch.einsum("bn,nf->bf", scores, masks.flatten(1).to(scores.dtype))
        return (saliency / (len(masks) * self.params["p"])).view(valid.shape).where(valid, 0.0)

    def masks(self, task: Task, shape: torch.Size, generator: torch.Generator) -> Tensor:
        """``n_masks`` boolean keep-masks shaped like one sample's features."""
        n, p = self.params["n_masks"], self.params["p"]
        device = generator.device
        if task.modality != "image" or len(shape) != 2:
            return torch.rand(n, *shape, generator=generator, device=device) < p
        height, width = shape
        cells = min(self.params["cells"], height, width)
        cell_h, cell_w = math.ceil(height / cells), math.ceil(width / cells)
        grid = (torch.rand(n, 1, cells + 1, cells + 1, generator=generator, device=device) < p).float()
        big = F.interpolate(grid, size=((cells + 1) * cell_h, (cells + 1) * cell_w), mode="nearest").squeeze(1)
        dy = torch.randint(cell_h, (n,), generator=generator, device=device)
        dx = torch.randint(cell_w, (n,), generator=generator, device=device)
        rows = (dy[:, None] + torch.arange(height, device=device)[None, :])[:, :, None]
        cols = (dx[:, None] + torch.arange(width, device=device)[None, :])[:, None, :]
        return big[torch.arange(n, device=device)[:, None, None], rows, cols].bool()

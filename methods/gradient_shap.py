"""GradientSHAP (Lundberg & Lee 2017) through Captum's ``GradientShap``.

GradientSHAP estimates ``E[(x - b) * grad f(b + a (x - b) + e)]`` over baselines ``b`` drawn
from a baseline distribution, ``a ~ U(0, 1)`` and optional input noise ``e``: expected gradients,
a Monte Carlo Integrated Gradients. Here the distribution is the task's own all-removed input,
the baseline every other path method uses, so the method's expectation *is* Integrated
Gradients from that baseline and its draws add only sampling noise.

Captum draws each row's baseline from one shared stack, but the task's baseline is per sample
(a review's ``[MASK]`` embeddings keep its length; an image's blur is its own). So Captum is run
on the difference ``u = x - b`` with the shared baseline ``u = 0`` and a forward that adds ``b``
back: ``(u - 0) * grad_u f(b + a u) = (x - b) * grad f(b + a (x - b))``, exactly the term above.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from captum.attr import GradientShap
from torch import Tensor

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GradientSpec

from .gradients import CaptumGradientExplainer, fitting_rows


@METHODS.register("gradient_shap")
class GradientShapExplainer(CaptumGradientExplainer):
    """GradientSHAP with ``n_samples`` draws per sample from the task's all-removed baseline,
    seeded per call (``seed``), noise ``stdevs`` on the input (Captum's default 0)."""

    name = "gradient_shap"
    cost_class = "k passes"
    passes = "{n_samples} forward + backward"
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017"
    description = "GradientSHAP (Lundberg & Lee 2017), Captum GradientShap, baseline = all features removed"

    def __init__(self, n_samples: int = 16, stdevs: float = 0.0, seed: int = 0) -> None:
        super().__init__(n_samples=n_samples, stdevs=stdevs, seed=seed)

    def samples_per_call(self, spec: GradientSpec) -> int:
        return max(1, fitting_rows(spec) // self.params["n_samples"])

    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        def forward_from_baseline(difference: Tensor, baselines: Tensor, *args: Tensor) -> Tensor:
            return spec.forward(baselines + difference, *args)

        difference = spec.inputs - spec.baselines
        with seeded(self.params["seed"], spec.inputs.device):
            return GradientShap(forward_from_baseline).attribute(
                difference,
                baselines=torch.zeros_like(difference[:1]),
                n_samples=self.params["n_samples"],
                stdevs=float(self.params["stdevs"]),
                target=targets,
                additional_forward_args=(spec.baselines.expand_as(difference), *spec.additional_args),
            )


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's and numpy's global generators seeded inside, restored after: Captum draws the
    path positions with ``np.random`` and the noise with torch."""
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(state)

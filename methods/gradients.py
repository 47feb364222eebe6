"""Gradient baselines: thin wrappers over Captum's Saliency, InputXGradient, Integrated
Gradients and SmoothGrad.

Every method attributes to the task's continuous gradient input (pixels, token embeddings,
edge weights; see ``Task.gradient_spec``) and is then pooled to the task's feature space, so
one wrapper serves all three modalities. Captum repeats the inputs for integration steps and
noise samples and expands ``additional_forward_args`` the same way, which is what the task's
forward function is written for.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from torch import Tensor, nn

from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GradientSpec, Task

from .base import Explainer


class CaptumGradientExplainer(Explainer):
    """The shared path: gradient spec -> Captum attribution -> pooled features, padding zeroed."""

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        spec = task.gradient_spec(model, inputs)
        attributions = task.pool(self.attribute(spec, targets).detach(), inputs)
        return attributions.where(task.valid_features(inputs), 0.0)

    @abstractmethod
    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        """Captum attributions with the shape of ``spec.inputs``."""


def _forward_args(spec: GradientSpec) -> tuple[Tensor, ...] | None:
    return spec.additional_args or None


@METHODS.register("saliency")
class SaliencyExplainer(CaptumGradientExplainer):
    """Absolute input gradient of the target logit (Simonyan et al., 2014)."""

    name = "saliency"
    paper = "Simonyan et al., Deep Inside Convolutional Networks: Visualising Image Classification Models and Saliency Maps, ICLR Workshop 2014"
    description = "|d logit / d input| (Simonyan et al. 2014), Captum Saliency"

    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        return Saliency(spec.forward).attribute(
            spec.inputs, target=targets, abs=True, additional_forward_args=_forward_args(spec)
        )


@METHODS.register("input_x_gradient")
class InputXGradientExplainer(CaptumGradientExplainer):
    """Input times gradient (Shrikumar et al., 2016): a first-order Taylor contribution."""

    name = "input_x_gradient"
    paper = "Shrikumar et al., Not Just a Black Box: Learning Important Features Through Propagating Activation Differences, arXiv 2016"
    description = "input * d logit / d input (Shrikumar et al. 2016), Captum InputXGradient"

    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        return InputXGradient(spec.forward).attribute(
            spec.inputs, target=targets, additional_forward_args=_forward_args(spec)
        )


@METHODS.register("integrated_gradients")
class IntegratedGradientsExplainer(CaptumGradientExplainer):
    """Integrated Gradients (Sundararajan et al., 2017) from the task's all-removed baseline.

    Gauss-Legendre quadrature (Captum's default) is used because it integrates the smooth path
    far more accurately than a Riemann sum with the same 32 steps, so completeness holds more
    tightly. ``internal_batch_size`` caps the rows per forward pass, bounding memory.
    """

    name = "integrated_gradients"
    paper = "Sundararajan et al., Axiomatic Attribution for Deep Networks, ICML 2017"
    description = "Integrated Gradients (Sundararajan et al. 2017), baseline = all features removed"

    def __init__(self, n_steps: int = 32, method: str = "gausslegendre", internal_batch_size: int = 256) -> None:
        super().__init__(n_steps=n_steps, method=method, internal_batch_size=internal_batch_size)

    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        return IntegratedGradients(spec.forward).attribute(
            spec.inputs,
            baselines=spec.baselines,
            target=targets,
            additional_forward_args=_forward_args(spec),
            **self.params,
        )


@METHODS.register("smoothgrad")
class SmoothGradExplainer(CaptumGradientExplainer):
    """SmoothGrad (Smilkov et al., 2017): |gradient| averaged over Gaussian-noised inputs.

    The paper sets the noise to ``noise_level * (max - min)`` of the input. Captum's NoiseTunnel
    takes one scalar stdev for the whole batch, so to make each sample's noise depend on that
    sample only (explanations must not change with batch composition), Captum is run on the
    rescaled input ``z = x / range`` with ``stdev = noise_level``; the forward maps ``z`` back
    to ``x`` and the gradient is divided by ``range`` again. ``range`` is taken over the sample's
    input and its all-removed baseline together, so inputs that are constant (graph edge weights
    of 1) still get noise relative to what removal changes.
    """

    name = "smoothgrad"
    paper = "Smilkov et al., SmoothGrad: removing noise by adding noise, ICML Workshop 2017"
    description = "SmoothGrad (Smilkov et al. 2017), Captum NoiseTunnel(Saliency), noise 15% of range"

    def __init__(
        self, nt_samples: int = 16, noise_level: float = 0.15, nt_samples_batch_size: int = 16, seed: int = 0
    ) -> None:
        super().__init__(
            nt_samples=nt_samples, noise_level=noise_level, nt_samples_batch_size=nt_samples_batch_size, seed=seed
        )

    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        scale = _value_range(spec.inputs, spec.baselines)

        def rescaled_forward(z: Tensor, z_scale: Tensor, *args: Tensor) -> Tensor:
            return spec.forward(z * z_scale, *args)

        devices = [spec.inputs.device] if spec.inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.params["seed"])
            gradients = NoiseTunnel(Saliency(rescaled_forward)).attribute(
                spec.inputs / scale,
                nt_type="smoothgrad",
                nt_samples=self.params["nt_samples"],
                nt_samples_batch_size=self.params["nt_samples_batch_size"],
                stdevs=float(self.params["noise_level"]),
                target=targets,
                abs=True,
                additional_forward_args=(scale, *spec.additional_args),
            )
        return gradients / scale


def _value_range(inputs: Tensor, baselines: Tensor) -> Tensor:
    """Per-sample ``max - min`` over input and baseline, shaped to broadcast; 1 where constant."""
    both = torch.cat([inputs.flatten(1), baselines.expand_as(inputs).flatten(1)], dim=1)
    spread = both.amax(dim=1) - both.amin(dim=1)
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    return spread.view(-1, *[1] * (inputs.dim() - 1))

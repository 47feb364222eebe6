"""Gradient baselines: thin wrappers over Captum's Saliency, InputXGradient, Integrated
Gradients and NoiseTunnel (SmoothGrad, VarGrad).

Every method attributes to the task's continuous gradient input (pixels, token embeddings,
edge weights; see ``Task.gradient_spec``) and is then pooled to the task's feature space, so
one wrapper serves all three modalities. Captum repeats the inputs for integration steps and
noise samples and expands ``additional_forward_args`` the same way, which is what the task's
forward function is written for.

Memory: a forward/backward pass holds activations for every row it sends, and rows differ by
orders of magnitude (an 8x8 digit, a 1,024-wordpiece review), so a batch is attributed in groups
of samples whose gradient input fits ``pass_elements`` (robustness metrics explain several noisy
copies of a batch in one call, and long reviews would not fit even one copy).
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from dataclasses import replace
from typing import Any, ClassVar, Literal

import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from torch import Tensor, nn

from xaiboard.benchmark.device import chunk_rows
from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GradientSpec, Task

from .base import Explainer


def pass_elements(device: torch.device) -> int:
    """Gradient-input elements (rows x elements per row) one forward/backward pass may hold.

    Measured through MiniLM on a CPU: ~400-480 bytes of peak memory per element (an Integrated
    Gradients pass of 256 SST-2 rows of 66 x 384 peaked 2.6 GB above the model), so 2^23
    elements is ~3.5 GB on a CPU; a GPU gets about a quarter of its memory. Image, graph and
    text/planted rows are small enough that this binds only on the MiniLM tasks.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 1600
    return 1 << 23


class CaptumGradientExplainer(Explainer):
    """The shared path: gradient spec -> Captum attribution -> pooled features, padding zeroed.

    Samples are attributed in groups of ``samples_per_call``; every method here but the noise
    tunnels attributes each sample independently of the others, so the grouping changes float
    round-off at most. Captum's notices that it switched on ``requires_grad`` or hooked a
    module are silenced: they say what every call does.
    """

    family = "gradient"

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        spec = task.gradient_spec(model, inputs)
        size = self.samples_per_call(spec)
        groups = [slice(start, start + size) for start in range(0, len(targets), size)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Input Tensor .* did not already require gradients", UserWarning)
            warnings.filterwarnings("ignore", "Setting (forward, )?backward hooks", UserWarning)
            attributions = torch.cat([self.attribute(_sample_rows(spec, g), targets[g]).detach() for g in groups])
        return task.pool(attributions, inputs).where(task.valid_features(inputs), 0.0)

    def samples_per_call(self, spec: GradientSpec) -> int:
        """How many samples one ``attribute`` call takes: one row per sample per pass."""
        return fitting_rows(spec)

    @abstractmethod
    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        """Captum attributions with the shape of ``spec.inputs``."""


def fitting_rows(spec: GradientSpec) -> int:
    """How many of ``spec``'s rows fit one pass (``pass_elements``); at least one."""
    return max(1, pass_elements(spec.inputs.device) // spec.inputs[0].numel())


def _sample_rows(spec: GradientSpec, rows: slice) -> GradientSpec:
    """``spec`` for samples ``rows`` only: the per-sample tensors cut, a batch-broadcast baseline kept."""
    batch = spec.inputs.shape[0]
    baselines = spec.baselines[rows] if spec.baselines.shape[0] == batch else spec.baselines
    args = tuple(arg[rows] for arg in spec.additional_args)
    return replace(spec, inputs=spec.inputs[rows], baselines=baselines, additional_args=args)


def _forward_args(spec: GradientSpec) -> tuple[Tensor, ...] | None:
    return spec.additional_args or None


@METHODS.register("saliency")
class SaliencyExplainer(CaptumGradientExplainer):
    """Absolute input gradient of the target logit (Simonyan et al., 2014)."""

    name = "saliency"
    cost_class = "one pass"
    passes = "1 forward + backward"
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
    cost_class = "one pass"
    passes = "1 forward + backward"
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
    tightly. ``internal_batch_size`` caps the rows (samples x steps) of one forward/backward
    pass, bounding memory: Captum splits the steps, and a batch of more samples than that is
    split into groups of samples first (Captum would send every sample at once). ``None``: the
    device's rows per pass (``benchmark.device.chunk_rows``), fewer where rows are large
    (``pass_elements``). Every sample's attribution depends on that sample only, so the cap
    changes the values by float round-off at most.
    """

    name = "integrated_gradients"
    cost_class = "k passes"
    passes = "{n_steps} forward + backward"
    paper = "Sundararajan et al., Axiomatic Attribution for Deep Networks, ICML 2017"
    description = "Integrated Gradients (Sundararajan et al. 2017), baseline = all features removed"

    def __init__(self, n_steps: int = 32, method: str = "gausslegendre", internal_batch_size: int | None = None) -> None:
        super().__init__(n_steps=n_steps, method=method, internal_batch_size=internal_batch_size)

    def samples_per_call(self, spec: GradientSpec) -> int:
        return min(fitting_rows(spec), self.pass_rows(spec))

    def pass_rows(self, spec: GradientSpec) -> int:
        """Rows per forward/backward pass: the parameter, else the device's, within ``pass_elements``."""
        return self.params["internal_batch_size"] or min(chunk_rows(spec.inputs.device), fitting_rows(spec))

    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        return IntegratedGradients(spec.forward).attribute(
            spec.inputs,
            baselines=spec.baselines,
            target=targets,
            additional_forward_args=_forward_args(spec),
            n_steps=self.params["n_steps"],
            method=self.params["method"],
            internal_batch_size=self.pass_rows(spec),
        )


class NoiseTunnelExplainer(CaptumGradientExplainer):
    """Gradients of Gaussian-noised copies of the input, aggregated by Captum's NoiseTunnel
    (``nt_type``): their mean |gradient| (SmoothGrad) or their variance (VarGrad).

    The papers set the noise to ``noise_level * (max - min)`` of the input. Captum's NoiseTunnel
    takes one scalar stdev for the whole batch, so to make each sample's noise depend on that
    sample only (explanations must not change with batch composition), Captum is run on the
    rescaled input ``z = x / range`` with ``stdev = noise_level``; the forward maps ``z`` back
    to ``x`` and the gradient is divided by ``range`` again. ``range`` is taken over the sample's
    input and its all-removed baseline together, so inputs that are constant (graph edge weights
    of 1) still get noise relative to what removal changes.

    A pass holds ``nt_samples_batch_size`` noisy rows per sample, so a call takes as many
    samples as fit ``pass_elements`` that way (all of a batch of images, a few sentences, one
    long review); every call draws its noise under ``seed``, so a sample's noise depends on its
    place in its call, as it already did on its place in the batch.
    """

    cost_class = "k passes"
    passes = "{nt_samples} forward + backward"
    nt_type: ClassVar[Literal["smoothgrad", "vargrad"]]

    def __init__(
        self, nt_samples: int = 16, noise_level: float = 0.15, nt_samples_batch_size: int = 16, seed: int = 0
    ) -> None:
        super().__init__(
            nt_samples=nt_samples, noise_level=noise_level, nt_samples_batch_size=nt_samples_batch_size, seed=seed
        )

    def samples_per_call(self, spec: GradientSpec) -> int:
        draws = self.params["nt_samples_batch_size"] or self.params["nt_samples"]  # None: all at once, as Captum
        return max(1, fitting_rows(spec) // min(draws, self.params["nt_samples"]))

    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        scale = _value_range(spec.inputs, spec.baselines)

        def rescaled_forward(z: Tensor, z_scale: Tensor, *args: Tensor) -> Tensor:
            return spec.forward(z * z_scale, *args)

        devices = [spec.inputs.device] if spec.inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.params["seed"])
            aggregate = NoiseTunnel(Saliency(rescaled_forward)).attribute(
                spec.inputs / scale,
                nt_type=self.nt_type,
                nt_samples=self.params["nt_samples"],
                nt_samples_batch_size=self.params["nt_samples_batch_size"],
                stdevs=float(self.params["noise_level"]),
                target=targets,
                abs=self.nt_type == "smoothgrad",
                additional_forward_args=(scale, *spec.additional_args),
            )
        # a gradient in z is ``scale`` times the gradient in x, its variance ``scale ** 2`` times
        return aggregate / scale ** (2 if self.nt_type == "vargrad" else 1)


@METHODS.register("smoothgrad")
class SmoothGradExplainer(NoiseTunnelExplainer):
    """SmoothGrad (Smilkov et al., 2017): |gradient| averaged over Gaussian-noised inputs."""

    name = "smoothgrad"
    paper = "Smilkov et al., SmoothGrad: removing noise by adding noise, ICML Workshop 2017"
    description = "SmoothGrad (Smilkov et al. 2017), Captum NoiseTunnel(Saliency), noise 15% of range"
    nt_type = "smoothgrad"


@METHODS.register("vargrad")
class VarGradExplainer(NoiseTunnelExplainer):
    """VarGrad (Adebayo et al., 2018): the variance of the (signed) gradient over Gaussian-noised
    inputs, ``E[g^2] - E[g]^2`` per input element, pooled to features; nonnegative, and 0 for a
    linear model, whose gradient the noise cannot move."""

    name = "vargrad"
    paper = "Adebayo et al., Local Explanation Methods for Deep Neural Networks Lack Sensitivity to Parameter Values, ICLR Workshop 2018"
    description = "VarGrad (Adebayo et al. 2018), Captum NoiseTunnel(Saliency, vargrad), noise 15% of range"
    nt_type = "vargrad"


def _value_range(inputs: Tensor, baselines: Tensor) -> Tensor:
    """Per-sample ``max - min`` over input and baseline, shaped to broadcast; 1 where constant."""
    both = torch.cat([inputs.flatten(1), baselines.expand_as(inputs).flatten(1)], dim=1)
    spread = both.amax(dim=1) - both.amin(dim=1)
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    return spread.view(-1, *[1] * (inputs.dim() - 1))

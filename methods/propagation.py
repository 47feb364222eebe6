"""Modified-backpropagation baselines through Captum: DeepLIFT, guided backprop, deconvolution.

Each replaces the backward rule of the model's nonlinearities: DeepLIFT's Rescale rule divides
an activation's change from the baseline by its input's change (Shrikumar et al. 2017), guided
backprop passes only positive gradients through a ReLU that was active (Springenberg et al.
2015), deconvolution passes the rectified gradient whatever the activation (Zeiler & Fergus
2014). Captum installs the rules as hooks on the model's nonlinearity *modules*, so:

- the task models keep every ReLU a module of its own (``DigitCNN``, ``ShapesCNN``,
  ``WeightedGIN``); a functional ``relu`` would silently keep its plain gradient;
- guided backprop and deconvolution serve the ReLU networks, images and graphs (a ReLU module
  called once per layer, as PyG's ``GCN`` does, is hooked per call). Text is left out on
  purpose: MiniLM's and the planted-text BERT's GELU, softmax and LayerNorm have no rule in
  Captum, which would fall back to plain gradients there and call the result guided backprop;
- DeepLIFT serves images only. Captum's DeepLift needs each nonlinearity module used once
  (PyG's ``GCN`` reuses one), and on graphs the attributed input, an edge gate, *multiplies* its
  message: DeepLIFT has no rule for a product, and with the product's gradient in its place the
  scores of an edge-weighted GIN summed to 0.2-5x the logit change on BA-2Motifs (measured), not
  to the change, which is what DeepLIFT promises.

Operations without a rule keep their gradient, as in Captum: global max pooling (``amax``) in the
image CNNs. DeepLIFT is exact (complete) on chains of linear maps and module ReLUs (tested), and
an approximation through the max.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from captum.attr import Attribution, DeepLift, Deconvolution, GuidedBackprop
from torch import Tensor, nn

from xaiboard.benchmark.precision import float32_passes
from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import GradientSpec, Task

from .base import Explainer
from .gradients import CaptumGradientExplainer


class TaskForward(nn.Module):
    """A task's gradient forward (``GradientSpec.forward``) as a module that owns the model, so
    that Captum's hooks reach the model's nonlinearity modules."""

    def __init__(self, model: nn.Module, forward: Callable[..., Tensor]) -> None:
        super().__init__()
        self.model = model
        self.call = forward

    def forward(self, *args: Tensor) -> Tensor:
        return self.call(*args)


class ModifiedBackpropExplainer(Explainer):
    """One Captum rule-based attribution, bound to the model of each call."""

    modalities = frozenset({"image", "graph"})
    family = "gradient"
    cost_class = "one pass"
    passes = "1 forward + backward"
    rule: ClassVar[type[Attribution]]
    uses_baseline: ClassVar[bool] = False

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        return _BoundRule(type(self), model).explain(model, inputs, targets, task)


class _BoundRule(CaptumGradientExplainer):
    """The shared gradient path (groups of samples, pooling, padding) for one rule and model."""

    def __init__(self, method: type[ModifiedBackpropExplainer], model: nn.Module) -> None:
        super().__init__()
        self.method = method
        self.model = model

    def attribute(self, spec: GradientSpec, targets: Tensor) -> Tensor:
        attribution = self.method.rule(TaskForward(self.model, spec.forward))
        extra = {"baselines": spec.baselines} if self.method.uses_baseline else {}
        return attribution.attribute(
            spec.inputs, target=targets, additional_forward_args=spec.additional_args or None, **extra
        )


@METHODS.register("deeplift")
class DeepLiftExplainer(ModifiedBackpropExplainer):
    """DeepLIFT with the Rescale rule (Shrikumar et al. 2017), from the task's all-removed
    baseline; attributions sum to the target logit's change from the baseline where every
    nonlinearity has a rule (see the module docstring)."""

    name = "deeplift"
    paper = "Shrikumar et al., Learning Important Features Through Propagating Activation Differences, ICML 2017"
    description = "DeepLIFT Rescale (Shrikumar et al. 2017), Captum DeepLift, baseline = all features removed"
    modalities = frozenset({"image"})
    passes = "1 forward + backward over the input and baseline rows together"
    rule = DeepLift
    uses_baseline = True

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        """In float32 even inside a bf16 run (``xaiboard run --precision bf16``): Captum's
        DeepLift hooks hand float32 gradients back to bfloat16 activations, which autograd refuses."""
        with float32_passes(model):
            return super().explain(model, inputs, targets, task)


@METHODS.register("guided_backprop")
class GuidedBackpropExplainer(ModifiedBackpropExplainer):
    """Guided backpropagation (Springenberg et al. 2015): the gradient with every ReLU passing
    only positive gradients where its input was positive."""

    name = "guided_backprop"
    paper = "Springenberg et al., Striving for Simplicity: The All Convolutional Net, ICLR Workshop 2015"
    description = "Guided backpropagation (Springenberg et al. 2015), Captum GuidedBackprop"
    rule = GuidedBackprop


@METHODS.register("deconvolution")
class DeconvolutionExplainer(ModifiedBackpropExplainer):
    """Deconvolution (Zeiler & Fergus 2014): the gradient with every ReLU rectifying the
    gradient instead of gating it by its input."""

    name = "deconvolution"
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"
    description = "Deconvolution (Zeiler & Fergus 2014), Captum Deconvolution"
    rule = Deconvolution

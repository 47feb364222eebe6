"""DeepLIFT, guided backprop, deconvolution, GradientSHAP and VarGrad against closed forms.

The toy task's model is linear; a one-hidden-layer ReLU model on the same 4x4 inputs gives each
rule a different, hand-computable answer: with hidden units ``h = relu(W x)`` and logit
``v . h``, the plain gradient is ``W^T (v * [Wx > 0])``, guided backprop's
``W^T (relu(v) * [Wx > 0])`` and deconvolution's ``W^T relu(v)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from method_checks import assert_well_formed_and_deterministic
from xaiboard.benchmark.registry import METHODS, TASKS
from xaiboard.benchmark.task import Task
import xaiboard.tasks  # noqa: F401  (register the built-in tasks)
from xaiboard.methods import gradient_shap, gradients, propagation  # noqa: F401  (register)

FLOAT_TOL = 1e-5  # float32 rounding of sums over 16-64 terms; the rules are exact here
NEW_METHODS = ("deeplift", "guided_backprop", "deconvolution", "gradient_shap", "vargrad")
ALL_MODALITIES = ("gradient_shap", "vargrad")


def explain(name: str, task: Task, model: nn.Module, inputs, targets: Tensor, **params) -> Tensor:
    return METHODS.create(name, **params).explain(model, inputs, targets, task)


@pytest.fixture
def toy(toy_task):
    batch = toy_task.samples("test", 6, seed=1)
    return toy_task, batch.inputs, batch.targets


def relu_net(seed: int = 0) -> nn.Sequential:
    """``logits = V relu(W x)`` on 1x4x4 inputs, 8 hidden units, 2 classes, no biases."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False)).eval()


def hidden_rule_gradient(net: nn.Sequential, x: Tensor, targets: Tensor, rule: str) -> Tensor:
    """The input gradient of the target logit with the ReLU's backward replaced by ``rule``."""
    w, v = net[1].weight, net[3].weight[targets]  # [8, 16], [B, 8]
    active = (x.flatten(1) @ w.T > 0).float()
    upstream = {"gradient": v * active, "guided": v.clamp(min=0) * active, "deconvolution": v.clamp(min=0)}[rule]
    return (upstream @ w).view(x.shape)


def test_deeplift_of_a_linear_model_is_input_minus_baseline_times_weights(toy):
    task, x, targets = toy
    model = task.model()
    weights = (model.conv.weight.view(1, 2, 1, 1) * model.fc.weight.view(2, 2, 4, 4)).sum(dim=1)[targets]
    expected = x.squeeze(1) * weights  # the toy task's baseline is 0
    torch.testing.assert_close(explain("deeplift", task, model, x, targets), expected, atol=FLOAT_TOL, rtol=0)


def test_deeplift_is_complete_on_a_relu_network(toy):
    """Rescale on a chain of linear maps and module ReLUs: the scores sum to f(x) - f(baseline)."""
    task, x, targets = toy
    net = relu_net()
    with torch.no_grad():
        gap = (net(x) - net(torch.zeros_like(x)))[torch.arange(len(x)), targets]
    scores = explain("deeplift", task, net, x, targets)
    torch.testing.assert_close(scores.sum(dim=(1, 2)), gap, atol=FLOAT_TOL, rtol=0)


@pytest.mark.parametrize(("name", "rule"), [("guided_backprop", "guided"), ("deconvolution", "deconvolution")])
def test_modified_relu_rules_match_their_closed_form(toy, name, rule):
    task, x, targets = toy
    net = relu_net(seed=1)
    expected = hidden_rule_gradient(net, x, targets, rule).squeeze(1)
    torch.testing.assert_close(explain(name, task, net, x, targets), expected, atol=FLOAT_TOL, rtol=0)
    plain = hidden_rule_gradient(net, x, targets, "gradient").squeeze(1)
    assert not torch.allclose(expected, plain), "the network must make the rule matter"


def test_gradient_shap_of_a_linear_model_equals_integrated_gradients(toy):
    """On a linear model every point of the path has the same gradient: no sampling noise."""
    task, x, targets = toy
    model = task.model()
    ig = explain("integrated_gradients", task, model, x, targets)
    torch.testing.assert_close(explain("gradient_shap", task, model, x, targets), ig, atol=FLOAT_TOL, rtol=0)


def test_gradient_shap_expectation_is_integrated_gradients(toy):
    """On a curved model GradientSHAP is IG's integral by Monte Carlo over the path position:
    with n draws each score lies within a few standard errors ``sd / sqrt(n)`` of IG, ``sd``
    being the spread of the integrand ``(x - b) * grad f(b + a (x - b))`` over ``a``, measured
    here on a fine grid of ``a``. 5 standard errors: a 1-in-10^6 miss per score if normal."""
    task, x, targets = toy
    net = nn.Sequential(task.model(), nn.Tanh())
    n = 4000
    shap = explain("gradient_shap", task, net, x, targets, n_samples=n)
    ig = explain("integrated_gradients", task, net, x, targets, n_steps=64)
    alphas = torch.linspace(0.0, 1.0, 201)
    path = (alphas.view(-1, 1, 1, 1, 1) * x).flatten(0, 1).requires_grad_(True)
    logits = net(path).gather(1, targets.repeat(len(alphas)).view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(logits, path)
    integrand = (grad * x.repeat(len(alphas), 1, 1, 1)).view(len(alphas), *x.shape).squeeze(2)
    bound = 5 * integrand.std(dim=0) / n**0.5 + FLOAT_TOL
    assert ((shap - ig).abs() <= bound).all()
    assert integrand.std(dim=0).max() > 1e-3, "the path must be curved for the test to mean anything"


def test_gradient_shap_is_reproducible_under_its_seed(toy):
    task, x, targets = toy
    net = nn.Sequential(task.model(), nn.Tanh())
    first = explain("gradient_shap", task, net, x, targets, seed=3)
    torch.rand(5), np.random.rand(5)  # global RNG states must not matter
    assert torch.equal(first, explain("gradient_shap", task, net, x, targets, seed=3))
    assert not torch.allclose(first, explain("gradient_shap", task, net, x, targets, seed=4))


class HalfSquare(nn.Module):
    """``logit_c = c / 2 * |x|^2`` for c = 1, 2: the gradient ``c x`` moves with the noise."""

    def forward(self, x: Tensor) -> Tensor:
        half = 0.5 * x.flatten(1).pow(2).sum(dim=1, keepdim=True)
        return torch.cat([half, 2 * half], dim=1)


def test_vargrad_of_a_linear_model_is_zero(toy):
    task, x, targets = toy
    scores = explain("vargrad", task, task.model(), x, targets)
    torch.testing.assert_close(scores, torch.zeros_like(scores), atol=FLOAT_TOL, rtol=0)


def test_vargrad_of_a_quadratic_is_the_noise_variance_times_curvature(toy):
    """With noise ``N(0, s^2)``, ``s = noise_level * range``, the gradient ``c (x + e)`` has
    variance ``c^2 s^2`` in every pixel. Captum's VarGrad is the variance over n draws, whose
    relative standard error is ``sqrt(2 / n)`` (2.2% at n = 4000); 5 of those bound the test."""
    task, x, targets = toy
    n, level = 4000, 0.15
    scores = explain("vargrad", task, HalfSquare(), x, targets, nt_samples=n, nt_samples_batch_size=500, noise_level=level)
    spread = torch.maximum(x.flatten(1).amax(dim=1), torch.zeros(len(x))) - torch.minimum(x.flatten(1).amin(dim=1), torch.zeros(len(x)))
    expected = ((targets + 1.0) * level * spread).pow(2).view(-1, 1, 1).expand_as(scores)
    torch.testing.assert_close(scores, expected, rtol=5 * (2 / n) ** 0.5, atol=0)


@pytest.mark.parametrize("task_name", ["image/digits", "image/shapes", "graph/ba-2motifs@1", "graph/ba-shapes@1", "text/planted"])
@pytest.mark.parametrize("name", NEW_METHODS)
def test_new_gradient_methods_on_every_declared_modality(task_name, name):
    """Right shape, finite, zero on padding, and identical on a second call (deterministic)."""
    task = TASKS.create(task_name)
    method = METHODS.create(name)
    if not method.supports(task):
        assert name not in ALL_MODALITIES and (task.modality == "text" or name == "deeplift")
        return
    assert_well_formed_and_deterministic(method, task)

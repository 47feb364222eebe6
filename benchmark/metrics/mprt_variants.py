"""Sanity: smooth and efficient MPRT (Hedström et al., "Sanity Checks Revisited: An Exploration
to Repair the Model Parameter Randomisation Test", XAI in Action workshop, NeurIPS 2023).

Hedström et al. find two flaws in MPRT (``randomisation.py``): noisy gradients decorrelate
under *any* change of the model, so a low similarity can be noise rather than sensitivity, and
the layer-by-layer comparison costs one re-explanation per layer. Their repairs, as Quantus
0.6.0 implements them (``quantus.SmoothMPRT``, ``quantus.EfficientMPRT``):

- **smooth MPRT** denoises each explanation before comparing: the mean of the explanations of
  ``nr_samples - 1`` noisy copies of the input (Gaussian, standard deviation ``noise_magnitude``
  times the sample's input range) and of the clean input; layers are randomised bottom up.
- **efficient MPRT** compares only the original and the fully randomised model, by the relative
  rise in explanation complexity: ``(H(e_rand) - H(e)) / H(e)``, ``H`` the discrete entropy of
  the explanation's values in 100 equal-width bins.

Both re-explain through ``ctx.explain``, as MPRT does: the runner counts every pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..metric import Metric, MetricContext
from ..registry import METRICS
from .randomisation import RANDOMISATION_SALT, Cascade, cascade_similarities, fully_randomised, require_explainer

#: salt of ``MetricContext.generator`` that draws smooth MPRT's input noise
SMOOTH_SALT = 11


def noise_draws(generator: torch.Generator, nr_samples: int, inputs: Tensor) -> Tensor:
    """Standard normal noise ``[nr_samples - 1, *inputs.shape]`` for one smoothed explanation
    (the last of Quantus' ``nr_samples`` explanations is of the clean input)."""
    return torch.randn((nr_samples - 1, *inputs.shape), generator=generator, device=inputs.device, dtype=inputs.dtype)


def input_range(inputs: Tensor) -> Tensor:
    """Each sample's ``max - min`` over all its input values, shaped to broadcast over ``inputs``."""
    flat = inputs.flatten(1)
    return (flat.amax(dim=1) - flat.amin(dim=1)).view(-1, *([1] * (inputs.dim() - 1)))


def smooth_explanation(ctx: MetricContext, model: nn.Module, noise: Tensor, magnitude: float) -> Tensor:
    """Mean explanation ``[B, *F]`` of the batch's noisy copies (``noise`` times ``magnitude``
    times each sample's input range) and of the clean batch, under ``model``.

    The copies are explained ``max(1, chunk_rows // B)`` at a time, concatenated into one batch
    (as the robustness metrics' re-explanations), so a call holds at least the batch itself.
    """
    explain = require_explainer(ctx, "smooth_mprt")
    inputs, targets = ctx.batch.inputs, ctx.batch.targets
    copies = torch.cat([inputs + noise * (magnitude * input_range(inputs)), inputs[None]])
    per_call = max(1, ctx.engine.chunk_rows // len(inputs))
    total = torch.zeros_like(ctx.explanation)
    for group in copies.split(per_call):
        explained = explain(model, group.flatten(0, 1), targets.repeat(len(group))).detach()
        total += explained.view(len(group), *ctx.explanation.shape).sum(dim=0)
    return total / len(copies)


def smooth_cascade(ctx: MetricContext, nr_samples: int, magnitude: float, absolute: bool) -> Cascade:
    """Smoothed explanations of the original model and of each bottom-up cascade step, compared.

    Noise for the original, then for each step in order, comes from one generator
    (``ctx.generator(SMOOTH_SALT)``): every model state gets fresh draws, as in Quantus.
    """
    generator = ctx.generator(SMOOTH_SALT)
    prepare = torch.abs if absolute else torch.clone

    def explain(model: nn.Module) -> Tensor:
        return prepare(smooth_explanation(ctx, model, noise_draws(generator, nr_samples, ctx.batch.inputs), magnitude))

    return cascade_similarities(ctx, explain(ctx.model), explain, "bottom_up")


@METRICS.register("smooth_mprt")
class SmoothMPRT(Metric):
    """Smooth MPRT: MPRT on explanations averaged over noisy inputs, layers randomised bottom up.

    ``sMPRT(x) = 1/L sum_l rho_s(|ē_M(x)|, |ē_{M_l}(x)|)`` with ``ē_M(x) = 1/N (e_M(x) + sum_{i<N}
    e_M(x + eps_i))``, ``eps_i ~ N(0, (0.1 (max x - min x))^2)`` drawn afresh for every model
    state, ``M_l`` the model with its first ``l`` layers (input side) re-initialised, and
    ``rho_s`` Spearman over the valid features not zero in both maps, as ``mprt``. Lower is
    better. ``noise_magnitude=0.1``, bottom up and abs are Quantus' defaults; ``nr_samples`` is
    10 instead of Quantus' 50 (chosen by Hedström et al. on ImageNet), as the robustness metrics
    take 10 noisy copies: the metric costs ``nr_samples (L + 1)`` re-explanations of the batch,
    and at 50 integrated gradients on ``image/digit-grid`` took 512,000 passes (941 s on a shared
    2-core CPU) for one pair. Quantus' division by the second moment of the batch's maps is
    omitted: one positive factor changes no rank.

    In the full suite only (``tier``). Images only: the noise is Gaussian on the raw input, which token ids and graph structure do
    not have (Quantus: images, time series, tabular data).
    """

    name = "smooth_mprt"
    #: the full suite only (``xaiboard run --suite full`` or ``--metrics smooth_mprt``): at
    #: ``10 (L + 1)`` re-explanations per batch it would dominate the default suite's time
    tier = "full"
    family = "sanity"
    direction = "lower"
    value_range = (-1.0, 1.0)
    modalities = frozenset({"image"})
    needs_explainer = True
    reference = (
        "Hedström et al., Sanity Checks Revisited: An Exploration to Repair the Model Parameter "
        "Randomisation Test, XAI in Action workshop, NeurIPS 2023"
    )
    checked_against = "quantus.SmoothMPRT per-layer similarities (same randomisation and noise, 1e-5)"
    deviation = (
        "Spearman over valid features not zero in both maps, as mprt (Quantus: all features), the share left "
        "out reported beside the value; the score is the mean over layers (Quantus returns them per layer); "
        "10 noisy copies per model state instead of Quantus's 50"
    )
    defaults = {"nr_samples": 10, "noise_magnitude": 0.1, "abs": True}

    def compute(self, ctx: MetricContext) -> Tensor:
        return self.cascade(ctx).similarity.mean(dim=1)

    def details(self, ctx: MetricContext) -> dict[str, float]:
        """The share of features left out as zero in both maps (the runner records it)."""
        return self.cascade(ctx).details()

    def cascade(self, ctx: MetricContext) -> Cascade:
        p = self.params
        key = ("smooth_mprt", p["nr_samples"], p["noise_magnitude"], p["abs"])
        return ctx.shared(key, lambda: smooth_cascade(ctx, p["nr_samples"], p["noise_magnitude"], p["abs"]))


def discrete_entropy(values: Tensor, valid: Tensor, n_bins: int) -> Tensor:
    """Entropy ``[B]`` (nats) of each row's valid values in ``n_bins`` equal-width bins over its
    own ``[min, max]``: Quantus' ``discrete_entropy``, ``scipy.stats.entropy(np.histogram(a, n_bins))``.

    The bins are numpy's: edges ``min + k * (max - min) / n_bins`` in the values' dtype, the last
    edge ``max`` itself, a value on an edge in the bin above it (the last bin closed), and a
    constant row binned in ``[v - 0.5, v + 0.5]`` (entropy 0). A value that sits exactly on an
    edge (quantised inputs do) thus lands where numpy puts it.
    """
    flat, keep = values.flatten(1), valid.flatten(1)
    low = flat.masked_fill(~keep, float("inf")).amin(dim=1)
    high = flat.masked_fill(~keep, float("-inf")).amax(dim=1)
    constant = low == high
    low, high = torch.where(constant, low - 0.5, low), torch.where(constant, high + 0.5, high)
    steps = torch.arange(n_bins + 1, device=flat.device, dtype=flat.dtype)
    edges = steps * ((high - low) / n_bins)[:, None] + low[:, None]
    edges[:, -1] = high
    bins = (torch.searchsorted(edges.contiguous(), flat.contiguous(), right=True) - 1).clamp(0, n_bins - 1)
    counts = torch.zeros(flat.shape[0], n_bins, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, bins, keep.to(torch.float64))
    p = counts / counts.sum(dim=1, keepdim=True)
    return torch.where(p > 0, -p * p.log(), torch.zeros_like(p)).sum(dim=1)


@METRICS.register("efficient_mprt")
class EfficientMPRT(Metric):
    """Efficient MPRT: relative rise in explanation entropy from the original to the fully
    randomised model, ``eMPRT(x) = (H(e_{M_rand}(x)) - H(e_M(x))) / H(e_M(x))``.

    ``H`` is the discrete entropy of the explanation's valid values in 100 equal-width bins
    (``discrete_entropy``); ``M_rand`` has every layer re-initialised (``fully_randomised``, the
    same weights as MPRT's last cascade step). Higher is better: an explanation of a random model
    should be noisier, i.e. more complex, than one of a trained model; a model-independent
    explanation scores exactly 0. One re-explanation per batch. Defaults are Quantus'
    (signed values, no normalisation: a positive factor moves no value across its own bins).
    NaN where the original explanation is constant (``H = 0``; Quantus divides by zero).

    No features are left out here: a structurally zero feature is zero in both maps and adds the
    same zero bin to both histograms, so it cannot make a model-independent map look sensitive.
    """

    name = "efficient_mprt"
    family = "sanity"
    direction = "higher"
    value_range = (-1.0, float("inf"))
    needs_explainer = True
    reference = SmoothMPRT.reference
    checked_against = "quantus.EfficientMPRT (same randomisation, 1e-5)"
    deviation = "entropy over valid features only (Quantus: every entry of the array)"
    defaults = {"n_bins": 100, "abs": False}

    def compute(self, ctx: MetricContext) -> Tensor:
        explain = require_explainer(ctx, self.name)
        seed = ctx.generator(RANDOMISATION_SALT).initial_seed()
        randomised = explain(fully_randomised(ctx.model, seed), ctx.batch.inputs, ctx.batch.targets).detach()
        prepare = torch.abs if self.params["abs"] else torch.clone
        before, after = (discrete_entropy(prepare(e), ctx.batch.valid, self.params["n_bins"]) for e in (ctx.explanation, randomised))
        return torch.where(before > 0, (after - before) / before, torch.full_like(before, float("nan")))

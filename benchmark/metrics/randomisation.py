"""Sanity: the cascading Model Parameter Randomisation Test (MPRT).

An explanation that stays the same when the model's weights are destroyed cannot be explaining
the model. MPRT randomises the model's layers one at a time from the output down (cumulatively)
and measures, after each, how similar the new explanation is to the original one.

Reference: Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018; implemented as in
Quantus' ``MPRT`` (Hedström et al., JMLR 2023) with ``layer_order="top_down"`` and Spearman
similarity.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..metric import Metric, MetricContext
from ..registry import METRICS
from .rank_correlation import spearman

#: salt of ``MetricContext.generator`` whose seed drives the re-initialisation
RANDOMISATION_SALT = 7


def randomisable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Layers MPRT randomises, output side first.

    As Quantus: modules with ``reset_parameters`` in reverse ``named_modules()`` order. Unlike
    Quantus, containers that own no parameters themselves are skipped (e.g. a PyG ``BasicGNN``
    root, whose ``reset_parameters`` would re-initialise the whole model in one step).
    """
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if hasattr(module, "reset_parameters") and next(module.parameters(recurse=False), None) is not None
    ]
    return layers[::-1]


def cascading_randomisation(model: nn.Module, seed: int) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(layer name, copy of model)`` with that layer and all above it re-initialised.

    Every layer is reset by its own ``reset_parameters`` with the global RNG seeded to ``seed``
    (as Quantus' ``get_random_layer_generator(seed=seed - 1)``); the caller's RNG state is
    restored afterwards, and ``model`` itself is never modified.
    """
    randomised = copy.deepcopy(model)
    for name, layer in randomisable_layers(randomised):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            layer.reset_parameters()
        yield name, randomised


def mprt_similarities(ctx: MetricContext, absolute: bool = True) -> tuple[list[str], Tensor]:
    """Layer names and the Spearman similarity matrix ``[B, L]`` after each cascading step."""
    if ctx.explain is None:
        raise ValueError("mprt re-runs the explainer, but only precomputed explanations were given")
    prepare = torch.abs if absolute else torch.clone
    original = prepare(ctx.explanation)
    seed = ctx.generator(RANDOMISATION_SALT).initial_seed()
    names, columns = [], []
    for name, randomised in cascading_randomisation(ctx.model, seed):
        explanation = prepare(ctx.explain(randomised, ctx.batch.inputs, ctx.batch.targets))
        names.append(name)
        columns.append(spearman(original, explanation, ctx.batch.valid).to(original.dtype))
    return names, torch.stack(columns, dim=1)


@METRICS.register("mprt")
class MPRT(Metric):
    """Cascading MPRT: mean Spearman similarity of the explanation over randomised layers.

    ``MPRT(x) = 1/L sum_l rho_s(|e_M(x)|, |e_{M_l}(x)|)``, where ``M_l`` is the model with its
    top ``l`` layers re-initialised and ``rho_s`` is Spearman's rank correlation over valid
    features. Lower is better: a model-sensitive explanation decorrelates as layers are
    randomised, a model-independent one scores 1. ``abs=True`` is Quantus' default (Adebayo et
    al. report both); max-normalisation, also on in Quantus, does not change ranks and is
    omitted. A sample whose explanation is constant for some layer gets NaN (the plain mean,
    as Quantus' ``return_average_correlation``, except that Quantus also averages in the
    unrandomised model's similarity to itself). ``mprt_similarities`` gives the per-layer matrix.
    """

    name = "mprt"
    family = "sanity"
    direction = "lower"
    value_range = (-1.0, 1.0)
    needs_explainer = True
    reference = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018"
    checked_against = "quantus.MPRT per-layer similarities (same randomisation, 1e-5)"
    deviation = (
        "Spearman rank correlation per layer (as Quantus with a rank similarity), over valid features only"
    )
    defaults = {"abs": True}

    def compute(self, ctx: MetricContext) -> Tensor:
        return mprt_similarities(ctx, absolute=self.params["abs"])[1].mean(dim=1)

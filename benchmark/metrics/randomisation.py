"""Sanity: the cascading Model Parameter Randomisation Test (MPRT).

An explanation that stays the same when the model's weights are destroyed cannot be explaining
the model. MPRT randomises the model's layers one at a time from the output down (cumulatively)
and measures, after each, how similar the new explanation is to the original one.

The cascade's units: for CNNs and GNNs every layer with parameters, as Quantus; for transformer
encoders, which declare ``randomisation_blocks()``, whole blocks, as Adebayo et al. randomise
deep networks: the classifier head (text/planted's BERT: classifier, then pooler), encoder layer
L, ..., encoder layer 1, the embeddings. MiniLM thus takes 8 steps instead of 54 (one per
parameter-owning module), text/planted 5 instead of 22; each step costs one re-explanation.

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
    """The cascade's units, output side first: the model's blocks if it declares them, else its layers.

    A model with ``randomisation_blocks()`` (the transformer encoders: MiniLM, text/planted's BERT)
    gives its own ordered ``(name, module)`` units, e.g. head, encoder layer L .. 1, embeddings:
    Adebayo et al. randomise deep networks block by block (Inception v3's mixed blocks), and a
    transformer has dozens of parameter tensors (54 in MiniLM), each of which would otherwise be
    a cascade step costing one re-explanation. Otherwise, as Quantus: modules with
    ``reset_parameters`` in reverse ``named_modules()`` order; unlike Quantus, containers that
    own no parameters themselves are skipped (e.g. a PyG ``BasicGNN`` root, whose
    ``reset_parameters`` would re-initialise the whole model in one step).
    """
    if hasattr(model, "randomisation_blocks"):
        return list(model.randomisation_blocks())
    return [(name, module) for name, module in model.named_modules() if _resettable(module)][::-1]


def _resettable(module: nn.Module) -> bool:
    return hasattr(module, "reset_parameters") and next(module.parameters(recurse=False), None) is not None


def _outermost_resettable(unit: nn.Module) -> list[nn.Module]:
    """``unit`` itself if resettable, else the outermost resettable modules inside it, in order.

    A resettable module re-initialises its own children (a PyG ``GCNConv`` resets its ``lin``),
    so they are not reset a second time.
    """
    if _resettable(unit):
        return [unit]
    return [inner for child in unit.children() for inner in _outermost_resettable(child)]


def randomise(unit: nn.Module, seed: int) -> None:
    """Re-initialise ``unit`` in place: every resettable module in it, in order, with the global
    RNG seeded to ``seed`` once for the unit (a single layer thus gets exactly Quantus' values).

    The caller's RNG state is restored afterwards.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in _outermost_resettable(unit):
            module.reset_parameters()


def cascading_randomisation(model: nn.Module, seed: int) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(unit name, copy of model)`` with that unit and all above it re-initialised.

    Every unit is reset by ``randomise`` with ``seed`` (as Quantus' ``get_random_layer_generator(
    seed=seed - 1)`` seeds every layer alike); ``model`` itself is never modified.
    """
    randomised = copy.deepcopy(model)
    for name, unit in randomisable_layers(randomised):
        randomise(unit, seed)
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
    On transformer encoders a step randomises a whole block (``randomisable_layers``), so ``L``
    counts blocks there.
    """

    name = "mprt"
    family = "sanity"
    direction = "lower"
    value_range = (-1.0, 1.0)
    needs_explainer = True
    reference = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018"
    checked_against = "quantus.MPRT per-layer similarities (same randomisation, 1e-5)"
    deviation = (
        "Spearman rank correlation per layer (as Quantus with a rank similarity), over valid features only; "
        "transformer encoders are randomised block by block (head, encoder layers top down, embeddings; "
        "Adebayo et al.'s blocks), where Quantus resets each parameter-owning module in its own step"
    )
    defaults = {"abs": True}

    def compute(self, ctx: MetricContext) -> Tensor:
        return mprt_similarities(ctx, absolute=self.params["abs"])[1].mean(dim=1)

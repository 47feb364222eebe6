"""Sanity: the cascading Model Parameter Randomisation Test (MPRT).

An explanation that stays the same when the model's weights are destroyed cannot be explaining
the model. MPRT randomises the model's layers one at a time from the output down (cumulatively)
and measures, after each, how similar the new explanation is to the original one.

The cascade's units: for CNNs and GNNs every layer with parameters, as Quantus; for transformer
encoders, which declare ``randomisation_blocks()``, whole blocks, as Adebayo et al. randomise
deep networks: the classifier head (text/planted's BERT: classifier, then pooler), encoder layer
L, ..., encoder layer 1, the embeddings. MiniLM thus takes 8 steps instead of 54 (one per
parameter-owning module), text/planted 5 instead of 22; each step costs one re-explanation.

The similarity is Spearman's rank correlation over the features that are not zero in *both*
maps (``nonzero_spearman``). A feature whose attribution is exactly 0 before and after
randomisation is zero by construction, whatever the weights: input x gradient and integrated
gradients (zero baseline) on a black MNIST pixel (``x = 0``), any gradient outside the target
cell of ``image/digit-grid`` (no receptive field crosses a cell). Such features tie at the
bottom of both rankings and pull Spearman towards 1: with three quarters of a map structurally
zero (a digit grid's other cells), two maps whose non-zero parts are unrelated still correlate
0.97, so saliency read 0.98 there and input x gradient 0.99 on MNIST, as "unchanged" as the
model-independent control's 1.0. Leaving them out
compares what the model could change. The share left out is reported beside the value (the
record's ``details``). A feature zero in only one of the two maps stays in: its move to (or
from) zero is a change the randomisation made.

Reference: Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018; implemented as in
Quantus' ``MPRT`` (Hedström et al., JMLR 2023) with ``layer_order="top_down"`` and Spearman
similarity.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..metric import Metric, MetricContext
from ..registry import METRICS
from .rank_correlation import spearman

#: salt of ``MetricContext.generator`` whose seed drives the re-initialisation
RANDOMISATION_SALT = 7

#: ``top_down``: output side first (Adebayo et al., Quantus' MPRT); ``bottom_up``: input side
#: first (Hedström et al. 2023's recommendation, Quantus' smooth and efficient MPRT)
Order = Literal["top_down", "bottom_up"]


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


def cascading_randomisation(model: nn.Module, seed: int, order: Order = "top_down") -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(unit name, copy of model)`` with that unit and all before it in ``order`` re-initialised.

    Every unit is reset by ``randomise`` with ``seed`` (as Quantus' ``get_random_layer_generator(
    seed=seed - 1)`` seeds every layer alike); ``model`` itself is never modified.
    """
    randomised = copy.deepcopy(model)
    units = randomisable_layers(randomised)
    for name, unit in units if order == "top_down" else units[::-1]:
        randomise(unit, seed)
        yield name, randomised


def fully_randomised(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every unit re-initialised: the cascade's last model, in either order
    (each unit is reset under the same seed, so the order does not change the weights)."""
    randomised = copy.deepcopy(model)
    for _, unit in randomisable_layers(randomised):
        randomise(unit, seed)
    return randomised


def nonzero_spearman(a: Tensor, b: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Spearman ``[B]`` of ``a`` and ``b`` ``[B, *F]`` over the valid features not zero in both,
    and the share ``[B]`` of valid features left out as zero in both.

    NaN where fewer than two features remain or either map is constant over them (as scipy).
    """
    both_zero = (a == 0) & (b == 0) & valid
    share = both_zero.flatten(1).sum(dim=1) / valid.flatten(1).sum(dim=1)
    return spearman(a, b, valid & ~both_zero), share.to(torch.float64)


@dataclass
class Cascade:
    """Per cascade step: unit names, similarity to the original ``[B, L]`` and the share of
    valid features left out as zero in both maps ``[B, L]``."""

    names: list[str]
    similarity: Tensor
    excluded: Tensor

    def details(self) -> dict[str, float]:
        """What a record shows beside the value: the share of features left out (zero in both
        maps), per sample averaged over the steps, then its mean, min and max over samples."""
        share = self.excluded.mean(dim=1)
        return {"excluded_share": float(share.mean()), "excluded_share_min": float(share.min()),
                "excluded_share_max": float(share.max())}


def cascade_similarities(
    ctx: MetricContext, original: Tensor, explain: Callable[[nn.Module], Tensor], order: Order
) -> Cascade:
    """Compare ``original`` with ``explain(model)`` after each cascading randomisation step.

    ``explain`` gives the batch's (prepared) explanation under a randomised copy of the model.
    """
    seed = ctx.generator(RANDOMISATION_SALT).initial_seed()
    names, similarities, excluded = [], [], []
    for name, randomised in cascading_randomisation(ctx.model, seed, order):
        similarity, share = nonzero_spearman(original, explain(randomised), ctx.batch.valid)
        names.append(name)
        similarities.append(similarity.to(torch.float64))
        excluded.append(share)
    return Cascade(names, torch.stack(similarities, dim=1), torch.stack(excluded, dim=1))


def require_explainer(ctx: MetricContext, name: str) -> Callable[[nn.Module, Any, Tensor], Tensor]:
    """``ctx.explain``, or a clear error for precomputed explanations (which cannot be re-run)."""
    if ctx.explain is None:
        raise ValueError(f"{name} re-runs the explainer, but only precomputed explanations were given")
    return ctx.explain


def mprt_similarities(ctx: MetricContext, absolute: bool = True) -> Cascade:
    """The cascade of plain re-explanations (top down), each compared with the explanation."""
    explain = require_explainer(ctx, "mprt")
    prepare = torch.abs if absolute else torch.clone
    inputs, targets = ctx.batch.inputs, ctx.batch.targets
    return cascade_similarities(
        ctx, prepare(ctx.explanation), lambda model: prepare(explain(model, inputs, targets)), "top_down"
    )


@METRICS.register("mprt")
class MPRT(Metric):
    """Cascading MPRT: mean Spearman similarity of the explanation over randomised layers.

    ``MPRT(x) = 1/L sum_l rho_s(|e_M(x)|, |e_{M_l}(x)|)``, where ``M_l`` is the model with its
    top ``l`` layers re-initialised and ``rho_s`` is Spearman's rank correlation over the valid
    features that are not zero in both maps (module docstring: structurally zero features tie
    and inflate the correlation). Lower is better: a model-sensitive explanation decorrelates as
    layers are randomised, a model-independent one scores 1. ``abs=True`` is Quantus' default
    (Adebayo et al. report both); max-normalisation, also on in Quantus, does not change ranks
    and is omitted. A sample whose explanation is constant over the compared features for some
    layer gets NaN (the plain mean, as Quantus' ``return_average_correlation``, except that
    Quantus also averages in the unrandomised model's similarity to itself). ``details`` gives
    the share of features left out; ``mprt_similarities`` the per-layer matrix. On transformer
    encoders a step randomises a whole block (``randomisable_layers``), so ``L`` counts blocks.
    """

    name = "mprt"
    family = "sanity"
    direction = "lower"
    value_range = (-1.0, 1.0)
    needs_explainer = True
    reference = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018"
    checked_against = (
        "quantus.MPRT per-layer similarities (same randomisation, 1e-5; its similarity_func given our "
        "exclusion of features zero in both maps, and its default where there are none)"
    )
    deviation = (
        "Spearman rank correlation per layer over valid features not zero in both maps (Quantus: all features; "
        "structural zeros tie and inflate it), the share left out reported beside the value; transformer "
        "encoders are randomised block by block (head, encoder layers top down, embeddings; Adebayo et al.'s "
        "blocks), where Quantus resets each parameter-owning module in its own step"
    )
    defaults = {"abs": True}

    def compute(self, ctx: MetricContext) -> Tensor:
        return self.cascade(ctx).similarity.mean(dim=1)

    def details(self, ctx: MetricContext) -> dict[str, float]:
        """The share of features left out as zero in both maps (the runner records it)."""
        return self.cascade(ctx).details()

    def cascade(self, ctx: MetricContext) -> Cascade:
        return ctx.shared(("mprt", self.params["abs"]), lambda: mprt_similarities(ctx, self.params["abs"]))

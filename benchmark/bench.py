"""``xaiboard bench``: our metrics against Quantus 0.6.0 and against their pass floor.

A harness can beat a per-metric library only by doing fewer model passes or faster ones, so
every shared metric is timed three ways on one task, model, batch and explanation: ours
(``METRICS.create(name).compute`` on a fresh ``MetricContext``, as the runner builds it),
Quantus with equal parameters (the mappings the metric tests check, fed the same random draws
so the values must agree in the same run), and the **pass floor**: the forward/backward rows
our metric really ran, as bare batched model calls at our chunk size. Ours and Quantus run
interleaved so that machine load hits both alike; medians and min-max spreads are reported,
never a single run. A **suite** line per task runs every metric that matched Quantus through
one context, as the runner does (shared work done once), against Quantus one metric at a time.

Quantus knows images only, so it sees a task through a :class:`View`: a one-channel image with
zero removal as its own pixels (:class:`PixelView`), any other task as a vector of feature
codes whose sign says present or removed (:class:`PresenceView`), behind a model that removes
the absent features with the task's own operator. A metric whose Quantus side needs what a
view cannot give is marked not comparable, and no ratio is reported for values that differ.

Quantus is a test-only dependency (the ``dev`` extra) and is imported only here, lazily.
"""

from __future__ import annotations

import functools
import gc
import math
import resource
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from types import ModuleType
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import scipy.stats
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .cost import count_passes
from .device import chunk_rows
from .metric import Metric, MetricContext
from .metrics.class_sensitivity import RANDOM_LOGIT_SALT
from .metrics.correlation import random_subsets, subset_sizes
from .metrics.randomisation import RANDOMISATION_SALT, randomisable_layers
from .registry import METHODS, METRICS, TASKS
from .removal import RemovalEngine
from .task import Batch, Task

QUANTUS_HINT = 'xaiboard bench needs Quantus, a test-only dependency: pip install -e ".[dev]"'
#: float32 values computed in torch (ours) and in numpy/scipy (Quantus) on identical inputs
#: differ by rounding only; the metric tests use the same bound (absolute up to 1, relative above)
TOLERANCE = 1e-5
#: faithfulness correlation is a Pearson over 32 subsets' logit drops, and a sample whose drops
#: spread little amplifies the model's last-bit round-off, which on some CPUs depends on how many
#: rows a call holds (ours: the engine's chunk; Quantus: one row per sample and subset). Measured on
#: an Intel Xeon (MKL), text/planted@1, N = 4: 0.50793 vs 0.50842 (4.9e-4), equal to the last digit
#: when ours also sends 4-row calls (XAIBOARD_CHUNK_ROWS=4); on an AMD EPYC it stayed below 1e-5
CORRELATION_TOLERANCE = 1e-3
#: Quantus's Sparseness adds 1e-7 to every |attribution| before the Gini sum, which shrinks a
#: sample's Gini G by G n 1e-7 / (S + n 1e-7) for n features of total mass S: on text/planted@1
#: saliency maps of small mass 1.01e-5 at N = 256 (a documented deviation, see ``Sparseness``)
SPARSENESS_TOLERANCE = 1e-4
#: Quantus's own default batch size; its random draws are consumed batch by batch
QUANTUS_BATCH = 64
#: step between consecutive ranks in ``untied``, relative to a sample's largest ``|score|``:
#: 8 float32 ulps there, so no two scores can round to the same value
TIE_BREAK = 2.0**-20
#: bench times metrics, it does not score the model: the training split is the largest pool of
#: same-size samples (``graph/ba-2motifs`` has 100 test graphs per class, 400 training graphs)
SPLIT = "train"
#: pool drawn, relative to N, when the first N samples differ in their number of features
POOL_FACTOR = 20
#: fixed inputs, so that the table stays comparable across task versions: version 1 of the text
#: and graph tasks (docs/performance.md was measured on them). On ``text/planted`` v2 our
#: faithfulness correlation differs from Quantus's by 5.6e-5 (N = 67): its Pearson runs over output
#: drops that are nearly equal, which amplifies float32 round-off; not yet resolved.
TASK_NAMES = ("image/digits", "text/planted@1", "graph/ba-2motifs@1")
SIZES = (64, 256)
REPEATS = 5
METHOD = "saliency"
COLUMNS = [
    "task", "n", "metric", "view", "ours_s", "ours_range", "quantus_s", "quantus_range", "quantus/ours",
    "floor_s", "ours/floor", "fwd", "bwd", "max_diff", "compared", "equal", "peak_mb", "note",
]


class MissingQuantus(RuntimeError):
    """Quantus is not installed (it comes with the ``dev`` extra)."""


def require_quantus() -> ModuleType:
    """Import Quantus or fail with the one line that says how to get it."""
    try:
        import quantus
    except ImportError:
        raise MissingQuantus(QUANTUS_HINT) from None
    return quantus


# ---- one task's batch, explanation and Quantus view -------------------------------------------


@dataclass
class Setup:
    """One task's model, batch and saliency explanation (computed once), shared by both sides."""

    task: Task
    model: nn.Module
    batch: Batch
    explanation: Tensor
    explain: Callable[[nn.Module, Any, Tensor], Tensor]
    device: torch.device
    seed: int
    noisy_inputs: dict[tuple[int, float], list[Any]] = field(default_factory=dict, repr=False)

    def context(self) -> MetricContext:
        """A fresh context (empty memo), so no run reuses another's re-explanations."""
        engine = RemovalEngine(self.task, self.model)
        return MetricContext(
            self.task, self.model, self.batch, self.explanation, engine, self.seed, self.device, self.explain
        )

    @functools.cached_property
    def positions(self) -> Tensor:
        """``[B, n]``: each sample's valid feature slots, flattened; ``n`` is the same for all."""
        valid = self.batch.valid.flatten(1)
        return valid.nonzero()[:, 1].view(len(valid), -1)

    @property
    def width(self) -> int:
        """``n``, the number of features every sample has."""
        return self.positions.shape[1]

    def compact(self, values: Tensor, rows: range | None = None) -> Tensor:
        """``values [b, ..., *F]`` at the valid slots of samples ``rows`` (default all): ``[b, ..., n]``."""
        positions = self.positions if rows is None else self.positions[rows.start : rows.stop]
        lead = values.dim() - (self.batch.valid.dim() - 1)
        flat = values.flatten(lead)
        index = positions.view(len(positions), *[1] * (lead - 1), -1).expand(*flat.shape[:-1], -1)
        return flat.gather(-1, index)

    @functools.cached_property
    def view(self) -> View:
        return PixelView(self) if PixelView.fits(self) else PresenceView(self)

    def noisy(self, n_samples: int, radius: float) -> list[Any]:
        """Our noisy inputs (``ctx.generator(i)``), as every robustness metric draws them; drawn once."""
        if (n_samples, radius) not in self.noisy_inputs:
            ctx = self.context()
            draws = [self.task.perturb(self.batch.inputs, radius, ctx.generator(i)) for i in range(n_samples)]
            self.noisy_inputs[n_samples, radius] = draws
        return self.noisy_inputs[n_samples, radius]

    def call(self, metric: Any, **kwargs: Any) -> Any:
        """Run a Quantus metric on this setup's view (``kwargs`` win over the view's arrays)."""
        arrays = self.view.arrays
        given = {**arrays, **{k: v for k, v in kwargs.items() if k in arrays}}
        options = {k: v for k, v in kwargs.items() if k not in arrays}
        return metric(
            self.view.model, channel_first=True, device=str(self.device), batch_size=QUANTUS_BATCH, **given, **options
        )

    def start_probs(self, insertion: bool) -> np.ndarray:
        """Target probability of the full (deletion) or fully removed (insertion) input, through
        the task's removal: a curve's ``t = 0`` point, which Quantus's PixelFlipping omits."""
        keep = self.batch.valid.new_full((len(self.batch), 1, *self.batch.valid.shape[1:]), not insertion)
        return self.context().engine.scores(self.batch.inputs, keep, self.batch.targets, "prob")[:, 0].cpu().numpy()


def load_setup(task_name: str, n: int, seed: int, device: torch.device) -> Setup:
    """Load the task as the runner does and explain a same-size batch once with ``METHOD``."""
    task = TASKS.create(task_name)
    model = task.model(device)
    batch = same_size_batch(task, n, seed).to(device)
    explainer = METHODS.create(METHOD)

    def explain(m: nn.Module, inputs: Any, targets: Tensor) -> Tensor:
        return explainer.explain(m, inputs, targets, task)

    torch.manual_seed(seed)
    explanation = untied(explain(model, batch.inputs, batch.targets).detach())
    return Setup(task, model, batch, explanation, explain, device, seed)


def same_size_batch(task: Task, n: int, seed: int) -> Batch:
    """``n`` samples of ``SPLIT`` that all have the same number of valid features.

    Quantus takes one rectangular ``x`` and steps, draws subsets and correlates over all of its
    entries; ours count each sample's valid features. The two agree only where every sample has
    the same count (the model's cost is unchanged: text is padded to a fixed length anyway). If
    the first ``n`` samples differ, a pool ``POOL_FACTOR`` times larger is drawn and its most
    common count (ties: the largest) kept; fewer than ``n`` where the split has fewer.
    """
    batch = task.samples(SPLIT, n, seed)
    counts = batch.valid.flatten(1).sum(1)
    if bool((counts == counts[0]).all()):
        return batch
    pool = task.samples(SPLIT, POOL_FACTOR * n, seed)
    counts = pool.valid.flatten(1).sum(1)
    values, frequency = counts.unique(return_counts=True)
    size = values[frequency == frequency.max()].max()
    return subset(task, pool, (counts == size).nonzero()[:, 0][:n])


def subset(task: Task, batch: Batch, index: Tensor) -> Batch:
    """Samples ``index`` of ``batch``; ground truth is dropped (no benched metric reads it)."""
    inputs = take(task, batch.inputs, index)
    ids = None if batch.ids is None else batch.ids[index]
    return Batch(inputs, batch.targets[index], batch.labels[index], task.valid_features(inputs), None, ids)


def take(task: Task, inputs: Any, index: Tensor) -> Any:
    """Rows ``index`` of a task's inputs: a tensor, a graph union rebuilt by the task's own
    builder (``GraphTask.select``), or a dataclass of per-sample tensors (text)."""
    if isinstance(inputs, Tensor):
        return inputs[index]
    if task.modality == "graph":
        gates = torch.ones(len(index), task.valid_features(inputs).shape[1], device=index.device)
        return replace(task.select(inputs, index, gates), edge_weight=None)  # unmodified, as ``take`` of graph tasks
    tensors = {f.name: getattr(inputs, f.name) for f in fields(inputs)}
    return replace(inputs, **{name: value[index] for name, value in tensors.items() if isinstance(value, Tensor)})


def untied(explanation: Tensor) -> Tensor:
    """The explanation made strictly ordered: ``+ delta * (F - rank)``, ``rank`` its order
    (descending, ties by index, as ours ranks), ``delta = TIE_BREAK * max |score|``.

    Saliency has exact ties (zero gradients where ReLUs are off; graph edges in symmetric
    places), which Quantus orders by numpy's unstable argsort, so curves would differ by tie
    order, not by implementation. Random noise leaves some ties at float32 resolution; rank
    steps of 8 ulps cannot, and they keep every order that was strict. Both sides get this map;
    it moves no score by more than ``F * TIE_BREAK`` of its sample's largest (1e-3 on 1,024 pixels).
    """
    flat = explanation.flatten(1)
    order = flat.sort(dim=1, descending=True, stable=True).indices
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    peak = flat.abs().amax(dim=1, keepdim=True)
    delta = TIE_BREAK * torch.where(peak > 0, peak, torch.ones_like(peak))
    return (flat + delta * (flat.shape[1] - rank)).view_as(explanation)


class View(ABC):
    """How Quantus sees a setup: its arrays, the model it calls, its ``explain_func``, and the
    Quantus arguments that remove features."""

    name: str
    #: Quantus keyword arguments of a removal metric that make it remove features
    removal: dict[str, Any]
    model: nn.Module
    arrays: dict[str, np.ndarray]

    def __init__(self, setup: Setup) -> None:
        self.setup = setup

    @abstractmethod
    def removed(self) -> np.ndarray:
        """``x_batch`` with every feature removed (where insertion starts)."""

    @abstractmethod
    def explain(self, model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        """Our explanation as a Quantus ``explain_func`` of the view's ``x``."""

    @abstractmethod
    def replay(self, n_samples: int, radius: float) -> np.ndarray:
        """``[n_samples, B, ...]``: what Quantus's ``perturb_func`` hands out for each noise draw."""

    def _targets(self, targets: np.ndarray) -> Tensor:
        return torch.as_tensor(targets, device=self.setup.device)


class PixelView(View):
    """A one-channel image whose pixels are its features and whose removal is the value 0:
    Quantus perturbs the task's own input, as a Quantus user would run it."""

    name = "pixels"
    removal = {"perturb_baseline": 0.0}

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.model = setup.model
        self.arrays = {
            "x_batch": setup.batch.inputs.cpu().numpy(),
            "y_batch": setup.batch.targets.cpu().numpy(),
            "a_batch": setup.explanation[:, None].cpu().numpy(),
        }

    @staticmethod
    def fits(setup: Setup) -> bool:
        inputs, task = setup.batch.inputs, setup.task
        one_channel = isinstance(inputs, Tensor) and inputs.dim() == 4 and inputs.shape[1] == 1
        return one_channel and task.removal_name == "zero" and getattr(task, "baseline_value", None) == 0.0

    def removed(self) -> np.ndarray:
        return np.zeros_like(self.arrays["x_batch"])

    def explain(self, model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        x = torch.as_tensor(inputs, device=self.setup.device)
        return self.setup.explain(model, x, self._targets(targets))[:, None].detach().cpu().numpy()

    def replay(self, n_samples: int, radius: float) -> np.ndarray:
        return torch.stack(self.setup.noisy(n_samples, radius)).cpu().numpy()


def flip_sign(arr: np.ndarray, indices: np.ndarray, **_: Any) -> np.ndarray:
    """Quantus ``perturb_func`` of the presence view: entries ``indices`` become removed (negative)."""
    rows = np.arange(arr.shape[0])[:, None]
    removed = arr.copy()
    removed[rows, indices] = -np.abs(removed[rows, indices])
    return removed


class PresenceView(View):
    """Any task as Quantus's ``x [B, 1, n]`` of feature codes: ``|code| - 1 = s + B * d`` names
    sample ``s`` and the inputs ``d`` it comes from (0: the batch; then each ``replay``'s noise
    draws), the sign says present (+) or removed (-).

    The model Quantus calls (:class:`PresenceModel`) turns a code array back into keep-masks over
    the rows' own samples and returns ``task.predict(model, task.remove(inputs, keep))``; removal
    flips signs (:func:`flip_sign`), so the removal operator is the task's on both sides. The
    sample index travels in the codes because a fully removed row must still say whose it is.
    Task inputs of each Quantus batch are cut once, outside the clocks.

    Quantus deep-copies the model for MPRT; the view is not model state, so copies share it.
    """

    name = "presence"
    removal = {"perturb_func": flip_sign}

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.size = len(setup.batch)
        self.draws = [self._cut(setup.batch.inputs)]
        self.replayed: dict[tuple[int, float], int] = {}
        self.model = PresenceModel(setup.model, self).eval()
        self.arrays = {
            "x_batch": self.codes(0),
            "y_batch": setup.batch.targets.cpu().numpy(),
            "a_batch": setup.compact(setup.explanation)[:, None].cpu().numpy(),
        }

    def __deepcopy__(self, memo: dict) -> PresenceView:
        return self

    def _cut(self, inputs: Any) -> dict[range, Any]:
        """``inputs`` cut into Quantus's batches, once, so no clock sees the cutting."""
        def rows_of(rows: range) -> Any:
            return take(self.setup.task, inputs, torch.arange(rows.start, rows.stop, device=self.setup.device))

        return {rows: rows_of(rows) for rows in _by_batch(self.size)}

    def codes(self, draw: int) -> np.ndarray:
        """``[B, 1, n]``: every feature of every sample present, from inputs ``draw``."""
        samples = np.arange(1, self.size + 1, dtype=np.float32) + self.size * draw
        return np.broadcast_to(samples[:, None, None], (self.size, 1, self.setup.width)).copy()

    def lookup(self, codes: Tensor) -> tuple[Any, range]:
        """The task inputs and sample range of a Quantus batch's rows, from their first codes."""
        draw, first = divmod(int(codes[0].abs()) - 1, self.size)
        rows = range(first, first + len(codes))
        return self.draws[draw][rows], rows

    def keep(self, codes: Tensor, rows: range) -> Tensor:
        """Keep-masks ``[b, 1, *F]`` from a code array ``[b, n]`` of samples ``rows``."""
        shape = self.setup.batch.valid.shape[1:]
        keep = torch.zeros(len(codes), math.prod(shape), dtype=torch.bool, device=codes.device)
        keep.scatter_(1, self.setup.positions[rows.start : rows.stop], codes > 0)
        return keep.view(len(codes), 1, *shape)

    def removed(self) -> np.ndarray:
        return -self.arrays["x_batch"]

    def explain(self, model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        codes = torch.as_tensor(inputs, device=self.setup.device).flatten(1)[:, 0]
        x, rows = self.lookup(codes)
        net = model.model if isinstance(model, PresenceModel) else model
        explanation = self.setup.explain(net, x, self._targets(targets))
        return self.setup.compact(explanation, rows)[:, None].detach().cpu().numpy()

    def replay(self, n_samples: int, radius: float) -> np.ndarray:
        key = (n_samples, radius)
        if key not in self.replayed:
            self.replayed[key] = len(self.draws)
            self.draws.extend(self._cut(x) for x in self.setup.noisy(n_samples, radius))
        return np.stack([self.codes(self.replayed[key] + i) for i in range(n_samples)])


class PresenceModel(nn.Module):
    """The model Quantus calls in the presence view: codes in, the task's logits out."""

    def __init__(self, model: nn.Module, view: PresenceView) -> None:
        super().__init__()
        self.model = model
        self.view = view

    def forward(self, x: Tensor) -> Tensor:
        codes = x.flatten(1)
        inputs, rows = self.view.lookup(codes[:, 0])
        task = self.view.setup.task
        return task.predict(self.model, task.remove(inputs, self.view.keep(codes, rows)))


# ---- the Quantus side: one function per metric, parameters equal to ours --------------------


#: a Quantus run with everything it is fed (our draws, numpy inputs) prepared, ready to time
Prepared = Callable[[], np.ndarray]


def curve_steps(n_features: int, default: int = 20) -> int:
    """Deletion/insertion steps: Quantus flips ``n / steps`` features per step, so ``steps``
    must divide ``n``; the divisor nearest our default of 20 (16 for 1,024 pixels)."""
    divisors = [d for d in range(1, n_features + 1) if n_features % d == 0]
    return min(divisors, key=lambda d: (abs(d - default), d))


def _curve_auc(start: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Trapezoidal area on ``t in [0, 1]`` of Quantus's curve with our ``t = 0`` point prepended."""
    full = np.concatenate([start[:, None], np.asarray(curve)], axis=1)
    return np.trapezoid(full, dx=1.0 / (full.shape[1] - 1), axis=1)


class _Restore:
    """A Quantus ``perturb_func`` that writes the original values back at ``indices``
    (insertion); Quantus calls it ``steps`` times per batch, batch after batch."""

    def __init__(self, source: np.ndarray, steps: int) -> None:
        self.source = source.reshape(len(source), -1)
        self.steps = steps
        self.calls = 0

    def __call__(self, arr: np.ndarray, indices: np.ndarray, **_: Any) -> np.ndarray:
        first = self.calls // self.steps * QUANTUS_BATCH
        self.calls += 1
        rows = np.arange(arr.shape[0])[:, None]
        restored = arr.copy()
        restored[rows, indices] = self.source[first : first + len(arr)][rows, indices]
        return restored


def _pixel_flipping(q: ModuleType, s: Setup, params: dict[str, Any], insertion: bool) -> Prepared:
    """Deletion from the input, or insertion from the removed input restoring features."""
    steps = params["steps"]
    assert s.width % steps == 0, "Quantus flips n_features / steps features per step"
    start_probs = s.start_probs(insertion)
    x = s.view.removed() if insertion else s.view.arrays["x_batch"]

    def run() -> np.ndarray:
        removal = {"perturb_func": _Restore(s.view.arrays["x_batch"], steps)} if insertion else s.view.removal
        metric = q.PixelFlipping(
            features_in_step=s.width // steps, normalise=False, abs=False, disable_warnings=True, **removal
        )
        return _curve_auc(start_probs, s.call(metric, x_batch=x, softmax=True))

    return run


def _deletion(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
    return _pixel_flipping(q, s, params, insertion=False)


def _insertion(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
    return _pixel_flipping(q, s, params, insertion=True)


def _by_batch(n: int) -> list[range]:
    """The sample ranges of Quantus's batches, in the order it processes them."""
    return [range(i, min(i + QUANTUS_BATCH, n)) for i in range(0, n, QUANTUS_BATCH)]


def _faithfulness_correlation(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
    """Quantus draws ``np.random.choice`` per batch, run and sample: it is handed our subsets."""
    assert params["output"] == "logit"
    valid, runs = s.batch.valid, params["n_subsets"]
    subsets = s.compact(random_subsets(valid, runs, params["subset_fraction"], s.context().generator())).cpu()
    order = [(b, r) for chunk in _by_batch(len(s.batch)) for r in range(runs) for b in chunk]
    drawn = [subsets[b, r].nonzero()[:, 0].numpy() for b, r in order]
    size = int(subset_sizes(valid, params["subset_fraction"])[0])

    def run() -> np.ndarray:
        metric = q.FaithfulnessCorrelation(
            nr_runs=runs, subset_size=size, abs=False, normalise=False, return_aggregate=False,
            disable_warnings=True, **s.view.removal,
        )
        draws = iter(drawn)
        with mock.patch.object(np.random, "choice", lambda *_, **__: next(draws)):
            return np.asarray(s.call(metric, softmax=False))

    return run


def _monotonicity_correlation(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
    """One removal per group of ``ceil(n / max_groups)`` features, on logits."""
    assert params["output"] == "logit"
    step = math.ceil(s.width / params["max_groups"])

    def run() -> np.ndarray:
        metric = q.MonotonicityCorrelation(
            nr_samples=1, features_in_step=step, abs=True, normalise=False, disable_warnings=True, **s.view.removal
        )
        return np.asarray(s.call(metric, softmax=False))

    return run


class _Replay:
    """A Quantus ``perturb_func`` handing out our noisy inputs: per batch, noise draw by draw."""

    def __init__(self, perturbed: np.ndarray) -> None:
        self.perturbed = perturbed  # [n_samples, B, ...]
        self.calls = 0

    def __call__(self, arr: np.ndarray, **_: Any) -> np.ndarray:
        draw, batch = self.calls % len(self.perturbed), self.calls // len(self.perturbed)
        self.calls += 1
        return self.perturbed[draw, batch * QUANTUS_BATCH : batch * QUANTUS_BATCH + len(arr)].reshape(arr.shape)


def _robustness(kind: str, **options: Any) -> Callable[[ModuleType, Setup, dict[str, Any]], Prepared]:
    """A Quantus robustness metric re-explaining our noisy inputs; ``options`` name the
    Quantus arguments taken from our parameters."""

    def prepare(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
        noisy = s.view.replay(params["n_samples"], params["radius"])
        extra = {key: params[ours] for key, ours in options.items()}
        if "normalise" in extra:  # per sample, as ours
            extra["normalise_func_kwargs"] = {"normalise_axes": tuple(range(1, s.view.arrays["a_batch"].ndim))}

        def run() -> np.ndarray:
            metric = getattr(q, kind)(
                nr_samples=params["n_samples"], perturb_func=_Replay(noisy), disable_warnings=True, **extra
            )
            return np.asarray(s.call(metric, explain_func=s.view.explain))

        return run

    return prepare


def nonzero_spearman_reference(a: np.ndarray, b: np.ndarray, batched: bool = True) -> np.ndarray:
    """A Quantus ``similarity_func`` computing ours (``randomisation.nonzero_spearman``) with
    scipy: Spearman per row over the entries that are not zero in both maps."""
    keep = (a != 0) | (b != 0)
    return np.array([scipy.stats.spearmanr(x[k], y[k])[0] for x, y, k in zip(a, b, keep)])


def _mprt(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
    """Quantus seeds each layer with ``seed + 1``: it gets ours minus one; ``original`` is left out.
    Its similarity leaves out the features zero in both maps, as ours."""
    assert params["abs"]
    seed = s.context().generator(RANDOMISATION_SALT).initial_seed()

    def run() -> np.ndarray:
        metric = q.MPRT(
            layer_order="top_down", seed=seed - 1, similarity_func=nonzero_spearman_reference, disable_warnings=True
        )
        result = s.call(metric, explain_func=s.view.explain)
        return np.mean([result[name] for name in list(result)[1:]], axis=0)

    return run


def _slices(values: np.ndarray) -> Callable[..., np.ndarray]:
    """A stand-in for ``np.random.randint(low, high, size)`` handing out ``values`` in order."""
    start = 0

    def take_next(_low: int, _high: int, size: int) -> np.ndarray:
        nonlocal start
        start += size
        return values[start - size : start]

    return take_next


def _random_logit(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
    """Quantus draws ``np.random.randint(0, C - 1, batch)`` and skips the target; it gets our draws."""
    classes = s.task.num_classes
    generator = s.context().generator(RANDOM_LOGIT_SALT)
    draws = torch.randint(0, classes - 1, (len(s.batch),), generator=generator, device=s.device).cpu().numpy()

    def run() -> np.ndarray:
        metric = q.RandomLogit(
            similarity_func=q.similarity_func.correlation_spearman, num_classes=classes, normalise=False,
            abs=params["abs"], disable_warnings=True,
        )
        with mock.patch.object(np.random, "randint", _slices(draws)):
            return np.asarray(s.call(metric, explain_func=s.view.explain))

    return run


def _explanation_only(kind: str) -> Callable[[ModuleType, Setup, dict[str, Any]], Prepared]:
    """Sparseness, complexity: a function of ``|explanation|`` alone."""

    def prepare(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
        return lambda: np.asarray(s.call(getattr(q, kind)(normalise=False, abs=True, disable_warnings=True)))

    return prepare


def _no_params(_s: Setup) -> dict[str, Any]:
    return {}


def _comparable(_s: Setup) -> str | None:
    return None


def _input_distance(s: Setup) -> str | None:
    """Lipschitz, RIS and ROS divide by a change of Quantus's ``x`` (or of the logits of it)."""
    if isinstance(s.view, PixelView):
        return None
    return "Quantus measures the input change in its x, here feature codes, not the noisy continuous input"


def _same_cascade(s: Setup) -> str | None:
    """Ours randomises whole blocks where a model declares them and skips containers that own no
    parameters (``randomisable_layers``); Quantus resets every module with ``reset_parameters``."""
    ours = [name for name, _ in randomisable_layers(s.model)]
    theirs = [name for name, module in s.model.named_modules() if hasattr(module, "reset_parameters")][::-1]
    if ours == theirs:
        return None
    return f"a different cascade: {len(ours)} units here (blocks, layers owning parameters), {len(theirs)} in Quantus"


def _curve_params(s: Setup) -> dict[str, Any]:
    return {"steps": curve_steps(s.width)}


@dataclass(frozen=True)
class Case:
    """A shared metric: our parameters (beyond its defaults) and its Quantus counterpart.

    ``where_quantus_finite``: compare only samples Quantus scores. RIS/ROS differ on purpose
    there: Quantus gives NaN to a sample if any noisy neighbour flips its prediction, ours
    leaves those neighbours out (the tests check both halves). ``not_comparable`` says why a
    setup cannot hold the values equal (then Quantus is not run), or ``None``. ``tolerance``:
    the largest difference still called equal (see ``CORRELATION_TOLERANCE``).
    """

    quantus: Callable[[ModuleType, Setup, dict[str, Any]], Prepared]
    params: Callable[[Setup], dict[str, Any]] = _no_params
    where_quantus_finite: bool = False
    not_comparable: Callable[[Setup], str | None] = _comparable
    tolerance: float = TOLERANCE


CASES: dict[str, Case] = {
    "deletion_auc": Case(_deletion, _curve_params),
    "insertion_auc": Case(_insertion, _curve_params),
    "faithfulness_correlation": Case(_faithfulness_correlation, tolerance=CORRELATION_TOLERANCE),
    "monotonicity_correlation": Case(_monotonicity_correlation),
    "max_sensitivity": Case(_robustness("MaxSensitivity", normalise="normalise")),
    "avg_sensitivity": Case(_robustness("AvgSensitivity", normalise="normalise")),
    "local_lipschitz": Case(
        _robustness("LocalLipschitzEstimate", normalise="normalise"), not_comparable=_input_distance
    ),
    "relative_input_stability": Case(
        _robustness("RelativeInputStability", eps_min="eps_min"), where_quantus_finite=True,
        not_comparable=_input_distance,
    ),
    "relative_output_stability": Case(
        _robustness("RelativeOutputStability", eps_min="eps_min"), where_quantus_finite=True,
        not_comparable=_input_distance,
    ),
    "mprt": Case(_mprt, not_comparable=_same_cascade),
    "random_logit": Case(_random_logit),
    "sparseness": Case(_explanation_only("Sparseness"), tolerance=SPARSENESS_TOLERANCE),
    "complexity": Case(_explanation_only("Complexity")),
}


# ---- timing ---------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds and result of ``fn``, synchronised on CUDA so queued kernels are counted.

    The garbage collector is run before and kept off during the call, as ``timeit`` does: in one
    process holding both libraries' objects, a full collection costs ~0.1 s and fell on whichever
    call crossed its allocation threshold (on `graph/ba-2motifs@1` a 0.02 s metric read 0.12 s in
    most repetitions), timing the other side's garbage rather than either metric."""
    gc.collect()
    _sync(device)
    gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        _sync(device)
        return time.perf_counter() - start, result
    finally:
        gc.enable()


def pass_floor(s: Setup, forward: int, backward: int, repeats: int) -> float:
    """Median seconds (of ``repeats``) for ``forward`` rows of bare forwards, ``backward`` of them
    with a backward too; NaN for work that runs no model pass.

    Rows go as the removal engine sends them: ``Task.remove`` builds ``k = chunk_rows // B``
    keep-masks per sample (all features kept) once, outside the clock, and a tensor of rows
    goes to the model ``chunk_rows`` at a time (the size the engine measured for this task and
    model, see :mod:`.device`); forward-only rows run under
    ``torch.inference_mode`` as the engine's do, backward rows differentiate the task's gradient
    input (pixels, token embeddings, edge gates): the least any implementation doing these
    passes through the task could spend.
    """
    if not forward:
        return math.nan
    size, rows = len(s.batch), chunk_rows(s.device, s.task, s.model)  # measured once ours has run
    per_call = max(1, rows // size)
    no_grad, grad = _plan(max(forward - backward, 0), size, per_call), _plan(backward, size, per_call)
    full = s.batch.valid.new_ones(size, 1, *s.batch.valid.shape[1:])
    pools = {k: s.task.remove(s.batch.inputs, full.expand(size, k, *full.shape[2:])) for k in {*no_grad, *grad}}
    calls = {k: pool.split(rows) if isinstance(pool, Tensor) else [pool] for k, pool in pools.items()}
    specs = {k: s.task.gradient_spec(s.model, pools[k]) for k in grad}

    def run() -> None:
        with torch.inference_mode():
            for k in no_grad:
                for part in calls[k]:
                    s.task.predict(s.model, part)
        for k in grad:
            x = specs[k].inputs.detach().requires_grad_()
            torch.autograd.grad(specs[k].forward(x, *specs[k].additional_args)[:, 0].sum(), x)

    return statistics.median(_timed(run, s.device)[0] for _ in range(repeats))


def _plan(rows: int, size: int, per_call: int) -> list[int]:
    """Keep-masks per sample of each engine call that sends ``rows`` rows of ``size`` samples."""
    calls, rest = divmod(rows, size * per_call)
    return [per_call] * calls + ([math.ceil(rest / size)] if rest else [])


def _peak_mb(device: torch.device) -> float:
    """CUDA: the peak allocated since the last reset; CPU: the process's max RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _spread(times: Sequence[float]) -> str:
    return f"{min(times):.3g}-{max(times):.3g}" if times else ""


def _max_diff(ours: np.ndarray, theirs: np.ndarray, where_quantus_finite: bool = False) -> float:
    """Largest ``|ours - theirs| / max(1, |theirs|)``: absolute for scores up to 1, relative
    above (RIS/ROS reach 1e8). NaN on both sides (or, if asked, on Quantus's) counts as equal,
    NaN on one side as infinite."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64).reshape(ours.shape)
    skip = np.isnan(theirs) if where_quantus_finite else np.isnan(ours) & np.isnan(theirs)
    diff = np.abs(ours - theirs) / np.maximum(1.0, np.abs(theirs))
    return float(np.where(skip, 0.0, np.nan_to_num(diff, nan=np.inf)).max())


def _interleaved(
    ours: Callable[[], Any], theirs: Callable[[], Callable[[], Any]] | None, repeats: int, device: torch.device
) -> tuple[list[float], list[float], Any, Any]:
    """Both sides' times, alternating, and each side's values from the last repetition;
    Quantus's inputs are prepared (``theirs()``) before its clock starts. Without ``theirs``
    only ours is timed."""
    times: tuple[list[float], list[float]] = ([], [])
    mine = other = None
    for _ in range(repeats):
        seconds, mine = _timed(ours, device)
        times[0].append(seconds)
        if theirs is not None:
            seconds, other = _timed(theirs(), device)
            times[1].append(seconds)
    return times[0], times[1], mine, other


def _scores(metric: Metric, ctx: MetricContext, seed: int) -> np.ndarray:
    """The metric's scores, its draws seeded as the runner seeds every metric. On a CPU only the
    CPU generator is drawn from, and seeding it alone gives the same draws without
    ``torch.manual_seed``'s calls into every other device's generator (70 us, 7% of a 1 ms metric
    such as sparseness on `text/planted@1`)."""
    if ctx.device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)
    return metric.compute(ctx).detach().cpu().numpy()


def _row(
    s: Setup,
    label: str,
    ours: Callable[[], list[np.ndarray]],
    theirs: Callable[[], Callable[[], list[np.ndarray]]] | None,
    cases: Sequence[Case],
    repeats: int,
    reason: str | None = None,
) -> dict[str, Any]:
    """One table row: ours (and Quantus unless ``reason``) interleaved ``repeats`` times, the
    pass floor, and the values compared; a ratio only for values checked equal."""
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    with count_passes(s.model) as cost:  # also the warm-up run, untimed
        ours()
    ours_t, quantus_t, mine, theirs_values = _interleaved(ours, theirs, repeats, s.device)
    peak = _peak_mb(s.device)
    ours_s = statistics.median(ours_t)
    quantus_s = statistics.median(quantus_t) if quantus_t else math.nan
    floor_s = pass_floor(s, cost.forward_passes, cost.backward_passes, repeats)
    diff, compared = math.nan, 0
    if theirs_values is not None:
        diffs = [_max_diff(m, t, c.where_quantus_finite) for m, t, c in zip(mine, theirs_values, cases)]
        diff = max(diffs)
        compared = min(_compared(m, t, c.where_quantus_finite) for m, t, c in zip(mine, theirs_values, cases))
        equal = all(d <= c.tolerance for d, c in zip(diffs, cases))
    else:
        equal = False
    note = reason or ("" if equal else f"values differ (max_diff {diff:.2g}): no ratio")
    return {
        "task": s.task.name, "n": len(s.batch), "metric": label, "view": s.view.name,
        "ours_s": ours_s, "ours_range": _spread(ours_t), "quantus_s": quantus_s, "quantus_range": _spread(quantus_t),
        "quantus/ours": quantus_s / ours_s if equal else math.nan, "floor_s": floor_s, "ours/floor": ours_s / floor_s,
        "fwd": cost.forward_passes, "bwd": cost.backward_passes,
        "max_diff": diff, "compared": compared, "equal": equal, "peak_mb": peak, "note": note,
    }


def _compared(ours: np.ndarray, theirs: np.ndarray, where_quantus_finite: bool) -> int:
    return int(np.isfinite(np.asarray(theirs, dtype=np.float64)).sum()) if where_quantus_finite else len(ours)


def measure(q: ModuleType, s: Setup, name: str, repeats: int) -> dict[str, Any]:
    """One metric's row: ours on a fresh context per run vs Quantus, unless the view cannot
    hold the values equal (then ours and its floor only, with the reason)."""
    case = CASES[name]
    metric = METRICS.create(name, **case.params(s))
    reason = case.not_comparable(s)
    theirs = None if reason else lambda: _listed(case.quantus(q, s, metric.params))
    ours = lambda: [_scores(metric, s.context(), s.seed)]  # noqa: E731
    return _row(s, name, ours, theirs, [case], repeats, reason)


def _listed(run: Prepared) -> Callable[[], list[np.ndarray]]:
    return lambda: [run()]


def measure_suite(q: ModuleType, s: Setup, names: Sequence[str], repeats: int) -> dict[str, Any]:
    """The suite line: ``names`` through one context, in order, as the runner evaluates a
    (task, method) pair (re-explanations and other shared work done once), vs Quantus running
    the same metrics one by one; values are compared again, metric by metric."""
    cases = [CASES[name] for name in names]
    metrics = [METRICS.create(name, **case.params(s)) for name, case in zip(names, cases)]

    def ours() -> list[np.ndarray]:
        ctx = s.context()
        return [_scores(metric, ctx, s.seed) for metric in metrics]

    def theirs() -> Callable[[], list[np.ndarray]]:
        runs = [case.quantus(q, s, metric.params) for case, metric in zip(cases, metrics)]
        return lambda: [run() for run in runs]

    return _row(s, f"suite ({len(names)} metrics, {METHOD})", ours, theirs, cases, repeats)


def bench(
    tasks: Sequence[str] = TASK_NAMES,
    sizes: Sequence[int] = SIZES,
    metrics: Sequence[str] = tuple(CASES),
    repeats: int = REPEATS,
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The whole bench: per (task, N) one row per metric, then the suite line over the metrics
    that matched Quantus; columns ``COLUMNS`` (device: CPU by default)."""
    q = require_quantus()
    device = device or torch.device("cpu")
    unknown = sorted(set(metrics) - set(CASES))
    if unknown:
        raise ValueError(f"no Quantus counterpart for {', '.join(unknown)}; benchable: {', '.join(CASES)}")
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(tasks) * len(sizes) * (len(metrics) + 1), desc="bench", disable=not progress) as bar:
        for task_name in tasks:
            for n in sizes:
                rows.extend(_setting(q, load_setup(task_name, n, seed, device), metrics, repeats, bar))
    return pd.DataFrame(rows, columns=COLUMNS)


def _setting(q: ModuleType, s: Setup, metrics: Sequence[str], repeats: int, bar: tqdm) -> Iterator[dict[str, Any]]:
    """One (task, N): the metric rows, then the suite line (if any metric matched Quantus)."""
    equal = []
    for name in metrics:
        bar.set_postfix_str(f"{s.task.name} n={len(s.batch)} {name}")
        row = measure(q, s, name, repeats)
        equal += [name] if row["equal"] else []
        bar.update()
        yield row
    bar.set_postfix_str(f"{s.task.name} n={len(s.batch)} suite")
    if equal:
        yield measure_suite(q, s, equal, repeats)
    bar.update()

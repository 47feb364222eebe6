"""``xaiboard bench``: our metrics against Quantus 0.6.0 and against their pass floor.

A harness can beat a per-metric library only by doing fewer model passes or faster ones, so
every shared metric is timed three ways on one task, model, batch and explanation: ours
(``METRICS.create(name).compute`` on a fresh ``MetricContext``, as the runner builds it),
Quantus with equal parameters (the mappings the metric tests check, fed the same random draws
so the values must agree in the same run), and the **pass floor**: the forward/backward rows
our metric really ran, as bare batched model calls at our chunk size. Ours and Quantus run
interleaved so that machine load hits both alike; medians and min-max spreads are reported,
never a single run.

Quantus is a test-only dependency (the ``dev`` extra) and is imported only here, lazily.
"""

from __future__ import annotations

import functools
import math
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .cost import count_passes
from .device import chunk_rows
from .metric import MetricContext
from .metrics.class_sensitivity import RANDOM_LOGIT_SALT
from .metrics.correlation import random_subsets, subset_sizes
from .metrics.randomisation import RANDOMISATION_SALT
from .registry import METHODS, METRICS, TASKS
from .removal import RemovalEngine
from .task import Batch, Task

QUANTUS_HINT = 'xaiboard bench needs Quantus, a test-only dependency: pip install -e ".[dev]"'
#: float32 values computed in torch (ours) and in numpy/scipy (Quantus) on identical inputs
#: differ by rounding only; the metric tests use the same bound (absolute up to 1, relative above)
TOLERANCE = 1e-5
#: Quantus's own default batch size; its random draws are consumed batch by batch
QUANTUS_BATCH = 64
#: deletion/insertion steps: Quantus flips ``n_features / steps`` features per step, so the
#: count must divide the 1,024 pixels (our default of 20 does not; 16 is the nearest divisor)
CURVE_STEPS = 16
#: relative size of the noise that breaks the saliency map's exact ties (see ``untied``)
TIE_BREAK = 1e-6
TASK_NAMES = ("image/digits",)
SIZES = (64, 256)
REPEATS = 5
COLUMNS = [
    "task", "n", "metric", "ours_s", "ours_range", "quantus_s", "quantus_range", "quantus/ours",
    "floor_s", "ours/floor", "fwd", "bwd", "max_diff", "compared", "equal", "peak_mb",
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


@dataclass
class Setup:
    """One task's model, batch and saliency explanation (computed once), shared by both sides."""

    task: Task
    model: nn.Module
    batch: Batch
    explanation: Tensor
    explain: Callable[[nn.Module, Tensor, Tensor], Tensor]
    device: torch.device
    seed: int

    def context(self) -> MetricContext:
        """A fresh context (empty memo), so no run reuses another's re-explanations."""
        engine = RemovalEngine(self.task, self.model, chunk_rows(self.device))
        return MetricContext(
            self.task, self.model, self.batch, self.explanation, engine, self.seed, self.device, self.explain
        )

    def quantus_explain(self, model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        """Our saliency as a Quantus ``explain_func`` (channel axis added back)."""
        x = torch.as_tensor(inputs, device=self.device)
        y = torch.as_tensor(targets, device=self.device)
        return self.explain(model, x, y)[:, None].detach().cpu().numpy()

    @functools.cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """Quantus's numpy inputs, converted once and outside the timings."""
        return {
            "x_batch": self.batch.inputs.cpu().numpy(),
            "y_batch": self.batch.targets.cpu().numpy(),
            "a_batch": self.explanation[:, None].cpu().numpy(),
        }

    def call(self, metric: Any, **kwargs: Any) -> Any:
        """Run a Quantus metric on this setup's model, inputs and explanation (``kwargs`` win)."""
        arrays = {**self.arrays, **{k: v for k, v in kwargs.items() if k in self.arrays}}
        options = {k: v for k, v in kwargs.items() if k not in self.arrays}
        return metric(
            self.model, channel_first=True, device=str(self.device), batch_size=QUANTUS_BATCH, **arrays, **options
        )

    def target_probs(self, inputs: Tensor) -> np.ndarray:
        """Softmax probability of each sample's target: a curve's ``t = 0`` point, which
        Quantus's PixelFlipping omits."""
        with torch.no_grad():
            probs = self.model(inputs).softmax(-1)
        return probs.gather(1, self.batch.targets[:, None])[:, 0].cpu().numpy()


def load_setup(task_name: str, n: int, seed: int, device: torch.device) -> Setup:
    """Load the task as the runner does and explain its batch once with our ``saliency``."""
    task = TASKS.create(task_name)
    model = task.model(device)
    batch = task.samples("test", n, seed).to(device)
    explainer = METHODS.create("saliency")

    def explain(m: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        return explainer.explain(m, inputs, targets, task)

    torch.manual_seed(seed)
    explanation = untied(explain(model, batch.inputs, batch.targets).detach(), seed)
    return Setup(task, model, batch, explanation, explain, device, seed)


def untied(explanation: Tensor, seed: int) -> Tensor:
    """The explanation plus uniform noise below ``TIE_BREAK`` of each sample's largest score.

    Saliency has exact ties (zero gradients where ReLUs are off); ours ranks ties by feature
    index, Quantus by numpy's unstable argsort, so with ties the curves differ by tie order
    (~1e-5), not by implementation. Both sides get this same untied map.
    """
    generator = torch.Generator(device=explanation.device).manual_seed(seed)
    noise = torch.rand(explanation.shape, generator=generator, device=explanation.device)
    scale = explanation.abs().flatten(1).amax(dim=1).view(-1, *[1] * (explanation.dim() - 1))
    return explanation + TIE_BREAK * scale * noise


# ---- the Quantus side: one function per metric, parameters equal to ours --------------------


#: a Quantus run with everything it is fed (our draws, numpy inputs) prepared, ready to time
Prepared = Callable[[], np.ndarray]


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
    """Deletion from the input, or insertion from the removed (zero) input restoring pixels."""
    n_features, steps = s.explanation[0].numel(), params["steps"]
    assert n_features % steps == 0, "Quantus flips n_features / steps features per step"
    start = torch.zeros_like(s.batch.inputs) if insertion else s.batch.inputs
    start_probs, x = s.target_probs(start), start.cpu().numpy()

    def run() -> np.ndarray:
        extra = {"perturb_func": _Restore(s.arrays["x_batch"], steps)} if insertion else {}
        metric = q.PixelFlipping(
            features_in_step=n_features // steps, normalise=False, abs=False, perturb_baseline=0.0,
            disable_warnings=True, **extra,
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
    subsets = random_subsets(valid, runs, params["subset_fraction"], s.context().generator()).cpu()
    drawn = [subsets[b, r].flatten().nonzero()[:, 0].numpy() for chunk in _by_batch(len(s.batch)) for r in range(runs) for b in chunk]
    size = int(subset_sizes(valid, params["subset_fraction"])[0])

    def run() -> np.ndarray:
        metric = q.FaithfulnessCorrelation(
            nr_runs=runs, subset_size=size, perturb_baseline=0.0, abs=False, normalise=False,
            return_aggregate=False, disable_warnings=True,
        )
        draws = iter(drawn)
        with mock.patch.object(np.random, "choice", lambda *_, **__: next(draws)):
            return np.asarray(s.call(metric, softmax=False))

    return run


def _monotonicity_correlation(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
    """One removal per group of ``ceil(n / max_groups)`` features, zero baseline, on logits."""
    assert params["output"] == "logit"
    step = math.ceil(s.explanation[0].numel() / params["max_groups"])

    def run() -> np.ndarray:
        metric = q.MonotonicityCorrelation(
            nr_samples=1, features_in_step=step, perturb_baseline=0.0, abs=True, normalise=False, disable_warnings=True
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


def _noisy(s: Setup, params: dict[str, Any]) -> np.ndarray:
    """Our noisy inputs ``[n_samples, B, ...]`` (``ctx.generator(i)``), as every robustness metric draws them."""
    ctx = s.context()
    noisy = [s.task.perturb(s.batch.inputs, params["radius"], ctx.generator(i)) for i in range(params["n_samples"])]
    return torch.stack(noisy).cpu().numpy()


def _robustness(kind: str, **options: Any) -> Callable[[ModuleType, Setup, dict[str, Any]], Prepared]:
    """A Quantus robustness metric re-explaining our noisy inputs; ``options`` name the
    Quantus arguments taken from our parameters."""

    def prepare(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
        noisy = _noisy(s, params)
        extra = {key: params[ours] for key, ours in options.items()}
        if "normalise" in extra:
            extra["normalise_func_kwargs"] = {"normalise_axes": (1, 2, 3)}  # per sample, as ours

        def run() -> np.ndarray:
            metric = getattr(q, kind)(
                nr_samples=params["n_samples"], perturb_func=_Replay(noisy), disable_warnings=True, **extra
            )
            return np.asarray(s.call(metric, explain_func=s.quantus_explain))

        return run

    return prepare


def _mprt(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
    """Quantus seeds each layer with ``seed + 1``: it gets ours minus one; ``original`` is left out."""
    assert params["abs"]
    seed = s.context().generator(RANDOMISATION_SALT).initial_seed()

    def run() -> np.ndarray:
        metric = q.MPRT(layer_order="top_down", seed=seed - 1, disable_warnings=True)
        result = s.call(metric, explain_func=s.quantus_explain)
        return np.mean([result[name] for name in list(result)[1:]], axis=0)

    return run


def _slices(values: np.ndarray) -> Callable[..., np.ndarray]:
    """A stand-in for ``np.random.randint(low, high, size)`` handing out ``values`` in order."""
    start = 0

    def take(_low: int, _high: int, size: int) -> np.ndarray:
        nonlocal start
        start += size
        return values[start - size : start]

    return take


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
            return np.asarray(s.call(metric, explain_func=s.quantus_explain))

    return run


def _explanation_only(kind: str) -> Callable[[ModuleType, Setup, dict[str, Any]], Prepared]:
    """Sparseness, complexity: a function of ``|explanation|`` alone."""

    def prepare(q: ModuleType, s: Setup, params: dict[str, Any]) -> Prepared:
        return lambda: np.asarray(s.call(getattr(q, kind)(normalise=False, abs=True, disable_warnings=True)))

    return prepare


@dataclass(frozen=True)
class Case:
    """A shared metric: our parameters (beyond its defaults) and its Quantus counterpart.

    ``where_quantus_finite``: compare only samples Quantus scores. RIS/ROS differ on purpose
    there: Quantus gives NaN to a sample if any noisy neighbour flips its prediction, ours
    leaves those neighbours out (the tests check both halves).
    """

    params: dict[str, Any]
    quantus: Callable[[ModuleType, Setup, dict[str, Any]], Prepared]
    where_quantus_finite: bool = False


CASES: dict[str, Case] = {
    "deletion_auc": Case({"steps": CURVE_STEPS}, _deletion),
    "insertion_auc": Case({"steps": CURVE_STEPS}, _insertion),
    "faithfulness_correlation": Case({}, _faithfulness_correlation),
    "monotonicity_correlation": Case({}, _monotonicity_correlation),
    "max_sensitivity": Case({}, _robustness("MaxSensitivity", normalise="normalise")),
    "avg_sensitivity": Case({}, _robustness("AvgSensitivity", normalise="normalise")),
    "local_lipschitz": Case({}, _robustness("LocalLipschitzEstimate", normalise="normalise")),
    "relative_input_stability": Case({}, _robustness("RelativeInputStability", eps_min="eps_min"), where_quantus_finite=True),
    "relative_output_stability": Case({}, _robustness("RelativeOutputStability", eps_min="eps_min"), where_quantus_finite=True),
    "mprt": Case({}, _mprt),
    "random_logit": Case({}, _random_logit),
    "sparseness": Case({}, _explanation_only("Sparseness")),
    "complexity": Case({}, _explanation_only("Complexity")),
}


# ---- timing ---------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds and result of ``fn``, synchronised on CUDA so queued kernels are counted."""
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def pass_floor(model: nn.Module, inputs: Tensor, forward: int, backward: int, rows: int, device: torch.device) -> float:
    """Seconds for ``forward`` rows of bare forwards, ``backward`` of them with a backward too.

    Rows go in chunks of ``rows`` (our engine's chunk size), cut from the batch repeated to
    fill a chunk: the least any implementation doing these passes could spend.
    """
    pool = inputs.repeat(math.ceil(rows / len(inputs)), *[1] * (inputs.dim() - 1))[:rows]

    def chunks(total: int) -> Iterator[Tensor]:
        for start in range(0, total, rows):
            yield pool[: min(rows, total - start)]

    def run() -> None:
        with torch.no_grad():
            for chunk in chunks(max(forward - backward, 0)):
                model(chunk)
        for chunk in chunks(backward):
            x = chunk.detach().requires_grad_()
            torch.autograd.grad(model(x)[:, 0].sum(), x)

    return _timed(run, device)[0]


def _peak_mb(device: torch.device) -> float:
    """CUDA: the peak allocated since the last reset; CPU: the process's max RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _spread(times: Sequence[float]) -> str:
    return f"{min(times):.3g}-{max(times):.3g}"


def _max_diff(ours: np.ndarray, theirs: np.ndarray, where_quantus_finite: bool = False) -> float:
    """Largest ``|ours - theirs| / max(1, |theirs|)``: absolute for scores up to 1, relative
    above (RIS/ROS reach 1e8). NaN on both sides (or, if asked, on Quantus's) counts as equal,
    NaN on one side as infinite."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64).reshape(ours.shape)
    skip = np.isnan(theirs) if where_quantus_finite else np.isnan(ours) & np.isnan(theirs)
    diff = np.abs(ours - theirs) / np.maximum(1.0, np.abs(theirs))
    return float(np.where(skip, 0.0, np.nan_to_num(diff, nan=np.inf)).max())


def _interleaved(
    ours: Callable[[], np.ndarray], theirs: Callable[[], Prepared], repeats: int, device: torch.device
) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """Both sides' times, alternating, and each side's values from the last repetition;
    Quantus's inputs are prepared (``theirs()``) before its clock starts."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        seconds, mine = _timed(ours, device)
        times[0].append(seconds)
        seconds, other = _timed(theirs(), device)
        times[1].append(seconds)
    return times[0], times[1], mine, other


def _floor(s: Setup, forward: int, backward: int, repeats: int) -> float:
    """Median pass floor; NaN for a metric that runs no model pass."""
    if not forward:
        return math.nan
    rows = chunk_rows(s.device)
    return statistics.median(pass_floor(s.model, s.batch.inputs, forward, backward, rows, s.device) for _ in range(repeats))


def measure(q: ModuleType, s: Setup, name: str, repeats: int) -> dict[str, Any]:
    """One table row: ours and Quantus interleaved ``repeats`` times, then the pass floor."""
    case = CASES[name]
    metric = METRICS.create(name, **case.params)

    def ours() -> np.ndarray:
        torch.manual_seed(s.seed)  # as the runner does before every metric
        return metric.compute(s.context()).detach().cpu().numpy()

    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    with count_passes(s.model) as cost:  # also the warm-up run, untimed
        ours()
    ours_t, quantus_t, mine, theirs = _interleaved(ours, lambda: case.quantus(q, s, metric.params), repeats, s.device)
    peak = _peak_mb(s.device)
    ours_s, quantus_s = statistics.median(ours_t), statistics.median(quantus_t)
    floor_s = _floor(s, cost.forward_passes, cost.backward_passes, repeats)
    diff = _max_diff(mine, theirs, case.where_quantus_finite)
    compared = int(np.isfinite(np.asarray(theirs, dtype=np.float64)).sum()) if case.where_quantus_finite else len(mine)
    return {
        "task": s.task.name, "n": len(s.batch), "metric": name,
        "ours_s": ours_s, "ours_range": _spread(ours_t), "quantus_s": quantus_s, "quantus_range": _spread(quantus_t),
        "quantus/ours": quantus_s / ours_s, "floor_s": floor_s, "ours/floor": ours_s / floor_s,
        "fwd": cost.forward_passes, "bwd": cost.backward_passes,
        "max_diff": diff, "compared": compared, "equal": diff <= TOLERANCE, "peak_mb": peak,
    }


def bench(
    tasks: Sequence[str] = TASK_NAMES,
    sizes: Sequence[int] = SIZES,
    metrics: Sequence[str] = tuple(CASES),
    repeats: int = REPEATS,
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The whole bench: one row per (task, N, metric), columns ``COLUMNS`` (device: CPU by default)."""
    q = require_quantus()
    device = device or torch.device("cpu")
    unknown = sorted(set(metrics) - set(CASES))
    if unknown:
        raise ValueError(f"no Quantus counterpart for {', '.join(unknown)}; benchable: {', '.join(CASES)}")
    rows = []
    with tqdm(total=len(tasks) * len(sizes) * len(metrics), desc="bench", disable=not progress) as bar:
        for task_name in tasks:
            for n in sizes:
                setup = load_setup(task_name, n, seed, device)
                for name in metrics:
                    bar.set_postfix_str(f"{task_name} n={n} {name}")
                    rows.append(measure(q, setup, name, repeats))
                    bar.update()
    return pd.DataFrame(rows, columns=COLUMNS)


"""The runner: tasks x methods x metrics -> result records, following DESIGN.md's flow of a run.

Per task the model and the evaluation batch are loaded once; per method the whole batch is
explained once (or read from the explanation cache) while its cost is counted; every metric is
then computed from that one explanation. A method or metric that fails, or that produces
NaN/inf or a wrong shape, becomes an error record with its traceback and the run goes on, so
failures are visible on the board rather than silently missing. A (task, method) pair whose
results are all stored (same task version, method hash, seed, n and metric parameters) is
skipped, so a killed run resumes where it stopped; "all stored" means stored for the same task
code, model parameters, method code, samples and metric code, so nothing stale is reused.
Beside each pair's records the runner stores its explanations of the batch's first samples
(``examples.py``), for the board's pictures; a resumed run fills in missing or stale ones
without recomputing any metric.

Who computes the pairs is an executor's choice: :class:`SerialExecutor` runs them in this
process, task by task; ``distributed.RayExecutor`` sends each (task, method, seed) pair to a
Ray worker. Both plan with :meth:`Run.plan` (which also does the resume check) and compute a
pair with :meth:`Run.pair`, and only this process, the driver, writes to the result store. A
pair's two halves, :meth:`Run.explained` and :meth:`Run.metrics`, are also called on their own
where a pair's samples are sharded across workers (``shards.py``).
"""

from __future__ import annotations

import copy
import json
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from xaiboard.methods.base import Explainer

from .cache import CachedExplanation, ExplanationCache
from .card import MethodCard, baseline_card
from .cost import Cost, count_passes
from .device import resolve_device
from .environment import describe_device, versions
from .example_inputs import example_arrays, first_samples
from .examples import EXAMPLE_COUNT, is_current, write_examples
from .metric import Metric, MetricContext
from .precision import check_precision, model_passes
from .record import NotApplicable, RecordError, ResultRecord
from .registry import METHODS, METRICS, TASKS, Registry
from .removal import RemovalEngine
from .stats import summarize
from .store import ResultStore
from .task import Batch, Task

log = logging.getLogger(__name__)


class InvalidExplanation(ValueError):
    """An explainer returned something that is not a finite ``[B, *F]`` float tensor."""


class Executor(Protocol):
    """Computes the pairs of a run; the serial executor and ``distributed.RayExecutor`` are two."""

    def execute(self, job: Run, tasks: list[Task], methods: list[Explainer], metrics: list[Metric]) -> list[ResultRecord]:
        """Every record of ``tasks`` x ``methods`` x ``metrics``: stored ones read back, the rest
        computed and written to ``job.store`` by this (the driver's) process."""
        ...


def run(
    tasks: Sequence[Task | str],
    methods: Sequence[Explainer | str],
    metrics: Sequence[Metric | str],
    n: int = 64,
    seed: int = 0,
    device: torch.device | str = "auto",
    store: ResultStore | None = None,
    cache: ExplanationCache | None = None,
    progress: bool = True,
    force: bool = False,
    card: Callable[[Explainer], MethodCard] = baseline_card,
    executor: Executor | None = None,
    split: str = "test",
    weights: Path | None = None,
    precision: str = "fp32",
) -> list[ResultRecord]:
    """Evaluate every method on every task with every metric; write and return the records.

    Names are looked up in the registries; objects are used as given. ``store`` and ``cache``
    default to ``paths.results_dir()`` and ``paths.cache_dir()``. Results already stored for
    the same task (version and fingerprint), method hash, seed, samples and metric (code and
    parameters) are skipped and explanations come from the cache, unless ``force`` recomputes
    everything. Each evaluated method's card (``card(explainer)``) is written beside its records.
    ``executor`` computes the pairs (default: :class:`SerialExecutor`, in this process).
    ``split`` is the split evaluated (recorded in every record); ``weights`` replaces the tasks'
    committed weights (a folder as ``xaiboard train-model --out`` writes it, or one task's file).
    ``precision`` is that of the model passes (``precision.py``: ``fp32``, or ``bf16`` autocast),
    recorded in every record and part of the resume and cache keys.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    check_precision(precision, device)
    job = Run(
        n=n,
        seed=seed,
        device=device,
        store=store if store is not None else ResultStore(),
        cache=cache if cache is not None else ExplanationCache(),
        progress=progress,
        device_name=describe_device(device),
        force=force,
        card=card,
        split=split,
        weights=weights,
        precision=precision,
    )
    chosen = executor if executor is not None else SerialExecutor()
    return chosen.execute(job, _instances(TASKS, tasks), _instances(METHODS, methods), _instances(METRICS, metrics))


class SerialExecutor:
    """Every pair in this process, task by task: a task's model, batch and memo are loaded once
    and shared by all its methods."""

    def execute(self, job: Run, tasks: list[Task], methods: list[Explainer], metrics: list[Metric]) -> list[ResultRecord]:
        records: list[ResultRecord] = []
        with tqdm(total=len(tasks) * len(methods), desc="task x method", disable=not job.progress) as bar:
            for task in tasks:
                plan = job.plan(task, methods, metrics)
                records.extend(plan.done)
                bar.update(len(methods) - len(plan.todo))
                task_memo: dict = {}
                for work in plan.todo:
                    bar.set_postfix_str(f"{task.name} / {work.explainer.name}")
                    records.extend(job.pair(work, plan.loaded, task_memo))
                    bar.update()
        return records


def results_table(records: Sequence[ResultRecord]) -> pd.DataFrame:
    """Rows (task, method), columns metrics, cells ``"mean [lo, hi]"`` or ``"ERROR"``; a metric
    that left features out (MPRT) adds their share, ``"mean [lo, hi] (75% left out)"``."""
    rows = [{"task": r.task, "method": r.method, "metric": r.metric, "cell": _cell(r)} for r in records]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot(index=["task", "method"], columns="metric", values="cell").fillna("-")


@dataclass
class PairWork:
    """One (task, method, seed) pair with the metrics it still lacks: the unit an executor runs.

    ``pair`` holds the record fields the planning process saw (for error records written there).
    """

    task: Task
    explainer: Explainer
    metrics: list[Metric]
    pair: dict[str, Any]


@dataclass
class TaskPlan:
    """A task after the resume check: its loaded model and batch, the stored (or load-error)
    records, and the pairs still to compute."""

    loaded: _Loaded
    done: list[ResultRecord]
    todo: list[PairWork]


@dataclass
class Run:
    """The settings of one run, and the steps every executor shares."""

    n: int
    seed: int
    device: torch.device
    #: where records go; ``None`` in a Ray worker, which returns its records to the driver
    store: ResultStore | None
    cache: ExplanationCache
    progress: bool
    device_name: str
    force: bool = False
    card: Callable[[Explainer], MethodCard] = baseline_card
    #: the task split evaluated
    split: str = "test"
    #: weights that replace the committed ones (``tasks.weights.weights_in``), or ``None``
    weights: Path | None = None
    #: the model passes' precision (``precision.py``)
    precision: str = "fp32"
    versions: dict[str, str] = field(default_factory=versions)
    #: the counter of the metric being computed, which sandboxed re-explanations report into
    metering: Cost | None = None
    #: summarise each record's scores; off in a shard worker, whose scores cover part of the batch
    summarise: bool = True

    def plan(self, task: Task, methods: list[Explainer], metrics: list[Metric]) -> TaskPlan:
        """Load ``task``, write each supporting method's card, and split its pairs into the
        records already stored and the work still to do (all of it under ``force``)."""
        applicable = [m for m in metrics if _applies(m, task)]
        supported = [e for e in methods if _supports(e, task)]
        if not applicable or not supported:
            return TaskPlan(_Loaded.nothing(), [], [])
        try:
            loaded = self.load(task)
        except Exception as exc:
            message = f"loading {task.name} failed: {type(exc).__name__}: {exc}"
            return TaskPlan(_Loaded.nothing(), self.fail_all(task, supported, applicable, message), [])
        done: list[ResultRecord] = []
        todo: list[PairWork] = []
        for explainer in supported:
            self.store.write_card(self.card(explainer))
            pair = self.pair_fields(task, explainer, loaded)
            found, missing = ([], applicable) if self.force else self.stored(pair, applicable)
            done.extend(found)
            if missing:
                todo.append(PairWork(task, explainer, missing, pair))
            else:
                log.info("skip %s on %s: all results already stored", explainer.name, task.name)
                self.examples(task, explainer, loaded, pair)
        return TaskPlan(loaded, done, todo)

    def compute(self, work: PairWork) -> list[ResultRecord]:
        """One pair on its own, as a Ray worker runs it: load the task here, then :meth:`pair`.
        The record fields come from this load, so they say what this process computed."""
        loaded = self.load(work.task)
        return self.pair(replace(work, pair=self.pair_fields(work.task, work.explainer, loaded)), loaded, {})

    def load(self, task: Task) -> _Loaded:
        """The task's model (from ``weights`` when given) and evaluation batch, and the
        fingerprint of the model as loaded."""
        from xaiboard.tasks.weights import weights_from, weights_in

        files = weights_in(self.weights, getattr(task, "weights_stem", "")) if self.weights is not None else {}
        with weights_from(files):
            model = task.model(self.device)
        batch = task.samples(self.split, self.n, self.seed).to(self.device)
        if len(batch) < self.n:
            log.warning("%s has only %d %s samples: evaluating %d (asked for %d)", task.name, len(batch), self.split,
                        len(batch), self.n)
        ids = batch.ids.tolist() if batch.ids is not None else list(range(len(batch)))
        return _Loaded(model, batch, task.fingerprint(model), ids)

    def pair_fields(self, task: Task, explainer: Explainer, loaded: _Loaded) -> dict[str, Any]:
        """The record fields shared by every metric of one (task, method) pair."""
        return {
            "task": task.name,
            "task_version": task.version,
            "task_fingerprint": loaded.fingerprint,
            "method": explainer.name,
            "method_hash": explainer.code_hash(),
            "method_params": _jsonable(explainer.params),
            "seed": self.seed,
            "split": self.split,
            "n_samples": len(loaded.sample_ids),
            "sample_ids": loaded.sample_ids,
            "removal": task.removal_name,
            "device": self.device_name,
            "precision": self.precision,
            "versions": self.versions,
        }

    def stored(self, pair: dict[str, Any], metrics: list[Metric]) -> tuple[list[ResultRecord], list[Metric]]:
        """The pair's stored ok records with matching keys, and the metrics still to compute.

        Adding a metric to a finished run computes that metric only; a bad result file is
        recomputed (and reported), never trusted.
        """
        found, missing = [], []
        for metric in metrics:
            try:
                record = self.store.find(pair["task"], pair["method"], metric.name)
            except RecordError as exc:
                log.info("recomputing over a bad result file: %s", exc)
                record = None
            if record is not None and _matches(record, pair, metric):
                found.append(record)
            else:
                missing.append(metric)
        return found, missing

    def pair(self, work: PairWork, loaded: _Loaded, task_memo: dict) -> list[ResultRecord]:
        """Explain once and evaluate every metric; a method failure fails every metric.

        The pair works on its own copy of the task's model: whatever a method leaves on the
        model object (hooks, train mode, PyG's explain-mode ``propagate`` swaps, which changed
        PGExplainer's training when GNNExplainer had run first) cannot reach another method's
        results, so a pair's records do not depend on which methods ran before it.
        """
        loaded = replace(loaded, model=copy.deepcopy(loaded.model))
        entry = self.explained(work, loaded)
        if not isinstance(entry, CachedExplanation):
            return entry
        self.examples(work.task, work.explainer, loaded, work.pair, entry.explanation)
        return self.metrics(work, loaded, entry, task_memo)

    def explained(self, work: PairWork, loaded: _Loaded) -> CachedExplanation | list[ResultRecord]:
        """The batch's explanation, or the pair's records when its method does not apply or failed."""
        task, explainer, metrics, pair = work.task, work.explainer, work.metrics, work.pair
        try:
            return self.explanation(task, explainer, loaded)
        except NotApplicable as exc:
            reason = f"{explainer.name} does not apply to {task.name}: {exc}"
            return [self.write(pair, m, status="not-applicable", reason=reason) for m in metrics]
        except Exception as exc:
            message = f"explaining {task.name} with {explainer.name}{_under(self.precision)} failed: {type(exc).__name__}: {exc}"
            return [self.write(pair, m, status="error", error=message, traceback=traceback.format_exc()) for m in metrics]

    def metrics(self, work: PairWork, loaded: _Loaded, entry: CachedExplanation, task_memo: dict) -> list[ResultRecord]:
        """Every metric of ``work`` on ``loaded``'s batch, from its explanation ``entry``."""
        task, explainer = work.task, work.explainer
        ctx = MetricContext(
            task=task,
            model=loaded.model,
            batch=loaded.batch,
            explanation=entry.explanation.to(self.device),
            engine=RemovalEngine(task, loaded.model),
            seed=self.seed,
            device=self.device,
            explain=self.reexplainer(task, explainer) if explainer.rerunnable else None,
            cost=entry.cost,
            task_memo=task_memo,
        )
        cost = entry.cost.per_sample(len(loaded.batch)) if explainer.rerunnable else {}
        bar = tqdm(work.metrics, desc=f"{explainer.name} metrics", leave=False, disable=not self.progress)
        with model_passes(loaded.model, self.device, self.precision):
            return [self.evaluate(ctx, metric, work.pair, cost) for metric in bar]

    def explanation(self, task: Task, explainer: Explainer, loaded: _Loaded) -> CachedExplanation:
        """From the cache, or computed once over the whole batch under a pass counter.

        ``NotApplicable`` from the method or a task hook it calls (no CAM layer) propagates:
        the pair is recorded as not applicable, with its reason.

        A method that counts its own passes (one running in a sandboxed worker, where the
        parent's hooks cannot see the model) reports them as ``last_cost``.
        """
        cached = self.cached(task, explainer, loaded)
        if cached is not None:
            return cached
        torch.manual_seed(self.seed)
        with count_passes(loaded.model, self.device) as cost, model_passes(loaded.model, self.device, self.precision):
            raw = explainer.explain_batch(loaded.model, loaded.batch, task)
        entry = CachedExplanation(checked_explanation(raw, loaded.batch, explainer.name), getattr(explainer, "last_cost", cost))
        self.cache.save(task, loaded.fingerprint, explainer, self.seed, len(loaded.batch), entry, split=self.split,
                        precision=self.precision)
        return entry

    def cached(self, task: Task, explainer: Explainer, loaded: _Loaded) -> CachedExplanation | None:
        """The batch's cached explanation under this run's key (split included), unless ``--force``."""
        if self.force:
            return None
        return self.cache.load(task, loaded.fingerprint, explainer, self.seed, len(loaded.batch), split=self.split,
                               precision=self.precision)

    def examples(self, task: Task, explainer: Explainer, loaded: _Loaded, pair: dict[str, Any],
                 explanation: Tensor | None = None) -> None:
        """Store the pair's example explanations (``examples.py``) unless a current file is there.

        Nothing is stored by a Ray worker (no store): the next run's plan fills them in. Pictures
        are not results: a failure here is logged, never recorded.
        """
        if self.store is None:
            return
        path = self.store.examples_path(task.name, explainer.name)
        meta = {f: pair[f] for f in ("task_version", "task_fingerprint", "method_hash", "seed")}
        if is_current(path, {**meta, "sample_ids": pair["sample_ids"][:EXAMPLE_COUNT]}):
            return
        try:
            first = first_samples(task, loaded.batch, EXAMPLE_COUNT)
            scores, batch_size = self.example_scores(task, explainer, loaded, first, explanation)
            arrays = example_arrays(task, loaded.model, first, scores)
            if arrays is None:
                log.info("no examples of %s: its inputs are of a kind the board cannot draw", task.name)
                return
            meta |= {"task": task.name, "modality": task.modality, "method": explainer.name, "batch_size": batch_size}
            write_examples(path, meta, arrays)
        except Exception as exc:  # noqa: BLE001  (a method may fail on a sub-batch in any way)
            log.warning("examples of %s on %s not stored: %s: %s", explainer.name, task.name, type(exc).__name__, exc)

    def example_scores(self, task: Task, explainer: Explainer, loaded: _Loaded, first: Batch,
                       explanation: Tensor | None) -> tuple[Tensor, int]:
        """The explanation whose first rows the examples show, and the size of the batch it was
        computed on: ``explanation`` (the whole batch's) when given, else the cached one of the
        batch; when neither exists (a resumed run whose records are complete) ``first`` alone is
        explained, seeded as the batch is, so filling in pictures never recomputes a metric."""
        if explanation is not None:
            return explanation, len(loaded.batch)
        cached = self.cached(task, explainer, loaded)
        if cached is not None:
            return cached.explanation, len(loaded.batch)
        torch.manual_seed(self.seed)
        model = copy.deepcopy(loaded.model)
        with model_passes(model, self.device, self.precision):
            raw = explainer.explain_batch(model, first, task)
        return checked_explanation(raw, first, explainer.name), len(first)

    def reexplainer(self, task: Task, explainer: Explainer) -> Callable[[nn.Module, Any, Tensor], Tensor]:
        """``ctx.explain``: re-runs the method, adding passes it counted in a sandboxed worker
        (``last_cost``) to the metric being metered, whose hooks cannot see them."""

        def explain(model: nn.Module, inputs: Any, targets: Tensor) -> Tensor:
            explanation = explainer.explain(model, inputs, targets, task)
            reported = getattr(explainer, "last_cost", None)
            if reported is not None and self.metering is not None:
                self.metering.add_passes(reported)
            return explanation

        return explain

    def evaluate(self, ctx: MetricContext, metric: Metric, pair: dict[str, Any], cost: dict[str, Any]) -> ResultRecord:
        """One metric's record; its own seconds and passes over the batch go in ``metric_cost``.

        A metric with a ``details(ctx)`` method (e.g. MPRT: the share of features it left out)
        has its values stored beside the scores, in the record's ``details``.
        """
        reason = _not_applicable(metric, ctx)
        if reason is not None:
            return self.write(pair, metric, status="not-applicable", reason=reason)
        with count_passes(ctx.model, self.device) as spent:
            self.metering = spent
            try:
                torch.manual_seed(self.seed)
                scores = _scores(metric.compute(ctx), len(ctx.batch), metric.name)
                outcome = self.scored(scores, _details(metric, ctx))
            except Exception as exc:
                outcome = metric_failure(metric, pair, exc)
            finally:
                self.metering = None
        return self.write(pair, metric, cost=cost, metric_cost=spent.spent(), **outcome)

    def scored(self, scores: Tensor, details: dict[str, float]) -> dict[str, Any]:
        """An ok outcome; with ``summarise`` off (a shard) its summary is left to the driver,
        which summarises the merged scores (``shards.merge``)."""
        summary = summarize(scores, self.seed) if self.summarise else None
        return {"status": "ok", "summary": summary, "scores": scores.tolist(), "details": details}

    def fail_all(self, task: Task, methods: list[Explainer], metrics: list[Metric], message: str) -> list[ResultRecord]:
        """Error records for every (method, metric) of a task that could not be loaded."""
        details = traceback.format_exc()
        records = []
        for explainer in methods:
            self.store.write_card(self.card(explainer))
            pair = self.pair_fields(task, explainer, _Loaded.nothing())
            records.extend(self.write(pair, m, status="error", error=message, traceback=details) for m in metrics)
        return records

    def write(self, pair: dict[str, Any], metric: Metric, **outcome: Any) -> ResultRecord:
        """Store one record; without ``metric_cost`` the metric never ran and spent nothing."""
        record = ResultRecord(
            **pair,
            metric=metric.name,
            metric_hash=metric.code_hash(),
            family=metric.family,
            direction=metric.direction,
            metric_params=_jsonable(metric.params),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **outcome,
        )
        return self.keep(record)

    def keep(self, record: ResultRecord) -> ResultRecord:
        """Store ``record`` unless this is a Ray worker (no store), whose driver stores it."""
        if self.store is not None:
            self.store.write(record)
        return record


@dataclass
class _Loaded:
    """One task's model and evaluation batch, loaded once for all its methods."""

    model: nn.Module | None
    batch: Batch | None
    fingerprint: str
    sample_ids: list[int]

    @classmethod
    def nothing(cls) -> _Loaded:
        """What a task that failed to load provides: no model, no samples, no fingerprint."""
        return cls(None, None, "", [])


def _instances(registry: Registry, items: Sequence[Any]) -> list[Any]:
    return [registry.create(item) if isinstance(item, str) else item for item in items]


def _supports(explainer: Explainer, task: Task) -> bool:
    if not explainer.supports(task):
        log.info("skip %s on %s: it supports %s only", explainer.name, task.name, sorted(explainer.modalities))
        return False
    return True


def _not_applicable(metric: Metric, ctx: MetricContext) -> str | None:
    """Why ``metric`` cannot be computed for this pair's explanations, or ``None`` if it can."""
    if ctx.explain is None and metric.needs_explainer:
        return f"{metric.name} re-runs the method, and precomputed explanations cannot be re-run"
    if ctx.explain is None and metric.family == "cost":
        return "the cost of precomputed explanations was not measured by the harness"
    return None


def _applies(metric: Metric, task: Task) -> bool:
    reason = metric.applies_to(task)
    if reason is not None:
        log.info("skip %s on %s: %s", metric.name, task.name, reason)
    return reason is None


def metric_failure(metric: Metric, pair: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """The error outcome of a metric that raised ``exc`` (call it in the ``except`` block)."""
    where = f"{pair['method']} on {pair['task']}{_under(pair.get('precision', 'fp32'))}"
    message = f"metric {metric.name} failed for {where}: {type(exc).__name__}: {exc}"
    return {"status": "error", "error": message, "traceback": traceback.format_exc()}


def _under(precision: str) -> str:
    """How an error message names a run's precision: not at all for float32 (the default); a
    method or metric that fails only under bf16 (hooks or exact arithmetic that need one dtype,
    a signal below bfloat16's resolution) then says so."""
    return "" if precision == "fp32" else f" under {precision} autocast"


def checked_explanation(explanation: Any, batch: Batch, name: str) -> Tensor:
    """The explanation as a detached float tensor, or ``InvalidExplanation`` saying what is wrong."""
    if not isinstance(explanation, Tensor):
        raise InvalidExplanation(f"{name} returned {type(explanation).__name__}, expected a Tensor")
    expected = tuple(batch.valid.shape)
    if tuple(explanation.shape) != expected:
        raise InvalidExplanation(f"{name} returned shape {tuple(explanation.shape)}, expected {expected} ([B, *features])")
    explanation = explanation.detach().float()
    bad = ~torch.isfinite(explanation) & batch.valid
    if bad.any():
        samples = int(bad.flatten(1).any(dim=1).sum())
        raise InvalidExplanation(f"{name} returned NaN/inf attributions in {samples} of {len(batch)} samples")
    return explanation


def _details(metric: Metric, ctx: MetricContext) -> dict[str, float]:
    """The metric's ``details(ctx)`` as plain floats, or ``{}`` for a metric that has none."""
    describe = getattr(metric, "details", None)
    return {} if describe is None else {str(k): float(v) for k, v in describe(ctx).items()}


def _scores(scores: Any, batch_size: int, name: str) -> Tensor:
    scores = torch.as_tensor(scores).detach().cpu().double()
    if tuple(scores.shape) != (batch_size,):
        raise ValueError(f"{name} returned scores of shape {tuple(scores.shape)}, expected ({batch_size},)")
    return scores


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as they read back from JSON (tuples -> lists), so stored and live ones compare."""
    return json.loads(json.dumps(params, sort_keys=True, default=str))


#: what makes a stored record the one this run would compute: the task's code, removal and model
#: (fingerprint), the method's code and parameters (hash), the samples, and the metric's code
_RESUME_FIELDS = (
    "task_version", "task_fingerprint", "method_hash", "seed", "split", "n_samples", "sample_ids", "removal", "precision"
)


def _matches(stored: ResultRecord, pair: dict[str, Any], metric: Metric) -> bool:
    """Whether a stored ok (or not-applicable) record is exactly what this run would compute."""
    same_pair = all(getattr(stored, name) == pair[name] for name in _RESUME_FIELDS)
    same_metric = stored.metric_hash == metric.code_hash() and stored.metric_params == _jsonable(metric.params)
    return stored.status in ("ok", "not-applicable") and same_pair and same_metric


def _cell(record: ResultRecord) -> str:
    if record.status == "not-applicable":
        return "n/a"
    if record.status != "ok" or record.summary is None:
        return "ERROR"
    s = record.summary
    cell = f"{s.mean:.3g} [{s.ci_low:.3g}, {s.ci_high:.3g}]"
    share = record.details.get("excluded_share")
    return cell if share is None else f"{cell} ({share:.0%} left out)"

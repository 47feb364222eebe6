"""The Ray executor: the suite's (task, method, seed) pairs as Ray tasks on a cluster.

``xaiboard run --executor ray`` plans exactly as a serial run (``runner.Run.plan``: load each
task once here, write the method cards, read back what is stored), then sends every pair that
still lacks a metric to Ray, longest first by the committed board's per-pair seconds
(``scaling.longest_first``), so that the long pairs do not start last and run alone. A worker
loads the task and model itself, explains the batch once and evaluates the missing metrics with
the same ``runner.Run.pair`` the serial executor calls, and *returns* the records; only this
driver process writes them, so atomic writes and resume work as in a serial run, and nothing
relies on a filesystem or memory shared across machines.
Each worker keeps its own explanation cache (under the run's cache root on its node) and its
own per-pair memo; unlike the serial executor, pairs of one task do not share a memo.

With ``shard_samples`` (``--shard-samples K``) a pair whose batch has more than ``K`` samples
runs in steps instead (``shards.py``): one task explains the whole batch, then one task per
shard of at most ``K`` samples scores the metrics that are exact to shard (with
``shard_reruns``, also those that re-run a per-sample method), while one more scores the
others on the whole batch; this driver merges the shards into the records a serial
run writes, and writes them once the last shard is back. Retries and error records are as for
whole pairs, step by step: a step whose worker died past the retries fails the metrics it was
computing (a shard: every sharded metric of the pair).

``xaiboard reproduce NAME --executor ray`` runs each seed of a reproduction as one Ray task
(:meth:`RayExecutor.measure`) and merges the seeds' cells here with ``Reproduction.merge``.

Resources: each pair asks Ray for ``threads`` CPUs and runs torch with exactly that many
intra-op threads (a worker that followed torch's default would take every core of its node);
on a CUDA device it also asks for one GPU, so Ray places one pair per GPU.

Failures: a worker process that dies (killed, out of memory, node lost) is retried by Ray up
to ``max_retries`` times; after that, or when the pair raised (a task that fails to load
there), its metrics become error records and the run goes on. Exceptions are not retried: the
runner already turns a method's or metric's exception into an error record inside the worker.

A worker on another machine needs the installed package but not the ``--plugin`` files: each
pair carries the source of every plugin the driver imported, and the worker imports it under
the driver's module name before it unpickles the pair, so plugin classes resolve and their code
hashes (which read the module's source) are the driver's. Importing this module imports
``ray``: only the Ray executor does so, and the serial path never imports it.
"""

from __future__ import annotations

import inspect
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import ray.cloudpickle
import torch
from ray.exceptions import RayError, RayTaskError
from tqdm.auto import tqdm

from xaiboard.methods.base import Explainer

from . import shards
from .environment import describe_device, versions
from .metric import Metric
from .paths import submissions_dir
from .record import ResultRecord
from .registry import PLUGIN_PREFIX, import_file
from .runner import PairWork, Run
from .scaling import PairCost, longest_first, pair_costs
from .store import ResultStore
from .task import Task

if TYPE_CHECKING:
    from .reproductions.base import Measured, Reproduction

log = logging.getLogger(__name__)

#: retries of a pair whose worker process died, before its metrics become error records
MAX_RETRIES = 2


@dataclass
class RayExecutor:
    """Runs each pair as one Ray task, or in shards; see the module docstring.

    ``address``: ``None`` starts a Ray instance on this machine (or uses the one this process
    already started with ``ray.init``); ``"auto"`` joins the cluster this machine belongs to
    (``ray start --head`` here, or a node's); ``"ray://HOST:PORT"`` connects through Ray Client.
    ``shard_samples``: split a pair whose batch has more samples into shards of at most that
    many (``shards.py``); ``None`` never splits. ``shard_reruns``: shard the metrics that re-run
    a per-sample method too (equal to a serial run's up to float round-off, ``shards.py``).
    """

    address: str | None = None
    threads: int = 1
    max_retries: int = MAX_RETRIES
    shard_samples: int | None = None
    shard_reruns: bool = False

    def execute(self, job: Run, tasks: list[Task], methods: list[Explainer], metrics: list[Metric]) -> list[ResultRecord]:
        connect(self.address)
        calls = Calls(self, job)
        records: list[ResultRecord] = []
        todo: list[tuple[PairWork, int]] = []
        for task in tasks:
            plan = job.plan(task, methods, metrics)
            records.extend(plan.done)
            todo.extend((work, len(plan.loaded.sample_ids)) for work in plan.todo)
        order = longest_first(todo, committed_costs(), lambda t: (t[0].task.name, t[0].explainer.name, len(t[0].metrics)))
        pairs = [self.start(calls, work, n) for work, n in order]
        with tqdm(total=len(pairs), desc="pairs on ray", disable=not job.progress) as bar:
            while calls.pending:
                (ready,), _ = ray.wait(list(calls.pending), num_returns=1)
                records.extend(calls.pending.pop(ready)(ready))
                bar.update(sum(pair.done for pair in pairs) - bar.n)
        return records

    def start(self, calls: Calls, work: PairWork, n: int) -> Pair:
        """Send ``work`` to Ray: whole, or in shards when it has more than ``shard_samples``
        samples and a metric that can be sharded."""
        if self.shard_samples is not None and n > self.shard_samples:
            sharded, rest = shards.split(work, self.shard_reruns)
            if sharded:
                return ShardedPair(calls, work, sharded, rest, shards.spans(n, self.shard_samples))
        return WholePair(calls, work)

    def measure(self, repro: Reproduction, seeds: Sequence[int], quick: bool, out_dir: Path) -> dict[tuple[str, str], Measured]:
        """A reproduction's cells with each seed as one Ray task, merged here in seed order
        (``Reproduction.merge``, which also draws the plots into ``out_dir``)."""
        from .reproductions.base import SeedFailed  # the reproductions are imported by now

        connect(self.address)
        remote = ray.remote(measure_seed).options(num_cpus=self.threads, max_retries=self.max_retries, retry_exceptions=False)
        payload = ray.cloudpickle.dumps(repro)
        plugins = ray.put(plugin_sources())
        refs = [remote.remote(plugins, payload, seed, quick, self.threads) for seed in seeds]
        parts = []
        for seed, ref in zip(seeds, refs):
            try:
                parts.append(ray.get(ref))
            except RayError as exc:
                raise SeedFailed(f"{repro.name}: seed {seed} failed on Ray: {failure(exc, self.max_retries)}") from exc
        return repro.merge(parts, quick, out_dir)


class Calls:
    """The driver's Ray tasks in flight, each with what to do with its result (which returns the
    records to keep and may start further tasks)."""

    def __init__(self, executor: RayExecutor, job: Run) -> None:
        self.executor, self.job = executor, job
        self.remote = ray.remote(call).options(
            num_cpus=executor.threads,
            num_gpus=1 if job.device.type == "cuda" else 0,
            max_retries=executor.max_retries,
            retry_exceptions=False,
        )
        self.worker_job = replace(job, store=None, progress=False)
        self.plugins = ray.put(plugin_sources())
        self.pending: dict[ray.ObjectRef, Callable[[ray.ObjectRef], list[ResultRecord]]] = {}

    def submit(self, step: Callable[..., Any], args: tuple, then: Callable[[ray.ObjectRef], list[ResultRecord]]) -> None:
        """Run ``step(worker's run, *args)`` on Ray; ``then(ref)`` when it is done."""
        payload = ray.cloudpickle.dumps((step, self.worker_job, args))
        self.pending[self.remote.remote(self.plugins, payload, self.executor.threads)] = then

    def keep(self, ref: ray.ObjectRef, work: PairWork, metrics: list[Metric], what: str) -> list[ResultRecord]:
        """The records a step returned, written here; error records of ``metrics`` if it failed."""
        value, exc = self.result(ref)
        return [self.job.keep(record) for record in value] if exc is None else self.failed(work, metrics, exc, what)

    def result(self, ref: ray.ObjectRef) -> tuple[Any, RayError | None]:
        """The step's result and ``None``, or ``None`` and what made it fail (after the retries)."""
        try:
            return ray.get(ref), None
        except RayError as exc:
            return None, exc

    def failed(self, work: PairWork, metrics: list[Metric], exc: RayError, what: str) -> list[ResultRecord]:
        """Error records of ``metrics`` for a step that failed on Ray, written here."""
        message = f"{work.explainer.name} on {work.task.name} failed on Ray{what}: {failure(exc, self.executor.max_retries)}"
        log.warning(message)
        return [self.job.write(work.pair, metric, status="error", error=message, traceback=str(exc)) for metric in metrics]


def committed_costs() -> list[PairCost]:
    """Per-pair seconds of the committed board (``submissions/``): the estimates behind the order
    pairs are submitted in (``scaling.longest_first``). Unreadable records are skipped: a bad
    file there must not stop a run that never reads it otherwise."""
    records, _ = ResultStore(submissions_dir()).records()
    return pair_costs(records)


class Pair:
    """A pair in flight; ``done`` once all its records are back."""

    done: bool = False


class WholePair(Pair):
    """The pair as one Ray task (``Run.compute``)."""

    def __init__(self, calls: Calls, work: PairWork) -> None:
        self.calls, self.work = calls, work
        calls.submit(Run.compute, (work,), self.finish)

    def finish(self, ref: ray.ObjectRef) -> list[ResultRecord]:
        self.done = True
        return self.calls.keep(ref, self.work, self.work.metrics, "")


class ShardedPair(Pair):
    """The pair in steps (``shards.py``): the explanation, then the shards and the unsharded
    metrics at once; the shards' records are merged when the last one is back, and if a shard
    failed (its worker died past the retries) every sharded metric becomes an error record."""

    def __init__(self, calls: Calls, work: PairWork, sharded: list[Metric], rest: list[Metric],
                 spans: list[tuple[int, int]]) -> None:
        self.calls, self.work, self.sharded, self.rest, self.spans = calls, work, sharded, rest, spans
        self.explanation: shards.Explained | None = None
        self.parts: dict[int, list[ResultRecord]] = {}
        self.failure: tuple[RayError, str] | None = None
        self.waiting = len(spans) + bool(rest)
        calls.submit(shards.explain_pair, (work,), self.explained)

    def explained(self, ref: ray.ObjectRef) -> list[ResultRecord]:
        """Start the shards and the unsharded metrics; or keep the pair's records when its
        method did not apply or failed, or error records when the step's worker died."""
        value, exc = self.calls.result(ref)
        if exc is not None or not isinstance(value, shards.Explained):
            self.done = True
            if exc is not None:
                return self.calls.failed(self.work, self.work.metrics, exc, " (explaining)")
            return [self.calls.job.keep(record) for record in value]
        self.explanation = value
        sharded = replace(self.work, metrics=self.sharded)
        for index, (start, stop) in enumerate(self.spans):
            self.calls.submit(shards.shard_pair, (sharded, value, start, stop), partial(self.shard, index))
        if self.rest:
            self.calls.submit(shards.rest_pair, (replace(self.work, metrics=self.rest), value), self.unsharded)
        return []

    def shard(self, index: int, ref: ray.ObjectRef) -> list[ResultRecord]:
        """Hold shard ``index``'s records; after the last shard, the merged records."""
        value, exc = self.calls.result(ref)
        if exc is not None and self.failure is None:
            start, stop = self.spans[index]
            self.failure = (exc, f" (shard of samples {start}-{stop - 1})")
        self.parts[index] = value or []
        self.step_done()
        return self.merged() if len(self.parts) == len(self.spans) else []

    def merged(self) -> list[ResultRecord]:
        if self.failure is not None:
            return self.calls.failed(self.work, self.sharded, *self.failure)
        parts = [self.parts[index] for index in range(len(self.spans))]
        return shards.merge(self.calls.job, replace(self.work, metrics=self.sharded), self.explanation, parts)

    def unsharded(self, ref: ray.ObjectRef) -> list[ResultRecord]:
        self.step_done()
        return self.calls.keep(ref, self.work, self.rest, " (unsharded metrics)")

    def step_done(self) -> None:
        self.waiting -= 1
        self.done = self.waiting == 0


def call(plugins: dict[str, str], payload: bytes, threads: int) -> Any:
    """A Ray task: ``step(run, *args)`` with ``threads`` torch threads; records are returned,
    never stored.

    ``payload`` is the pickled (step, run, args), unpickled only after the driver's plugins are
    imported here. The device and versions recorded are this worker's.
    """
    import_plugins(plugins)
    step, job, args = ray.cloudpickle.loads(payload)
    torch.set_num_threads(threads)
    here = replace(job, device_name=describe_device(job.device), versions=versions())
    return step(here, *args)


def measure_seed(plugins: dict[str, str], payload: bytes, seed: int, quick: bool, threads: int) -> dict[tuple[str, str], Measured]:
    """A Ray task: one seed of the pickled reproduction; its plots go to a scratch folder (the
    driver draws the merged ones)."""
    import_plugins(plugins)
    repro = ray.cloudpickle.loads(payload)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="xaiboard-reproduce-") as scratch:
        return repro.measure([seed], quick, False, Path(scratch))


def plugin_sources() -> dict[str, str]:
    """Module name -> source of every ``--plugin`` file imported in this process."""
    return {name: inspect.getsource(module) for name, module in list(sys.modules.items()) if name.startswith(PLUGIN_PREFIX)}


def import_plugins(sources: dict[str, str]) -> None:
    """Import each plugin source under its driver's module name (once per worker process), from
    a local copy of the file: pickled plugin classes then resolve, and ``inspect`` reads the
    same source as on the driver."""
    missing = {name: source for name, source in sources.items() if name not in sys.modules}
    if not missing:
        return
    folder = Path(tempfile.mkdtemp(prefix="xaiboard-plugins-"))
    for name, source in missing.items():
        path = folder / f"{name}.py"
        path.write_text(source)
        import_file(name, path)


def connect(address: str | None) -> None:
    """Join (or start) the Ray instance, unless this process is connected already."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)


def failure(exc: RayError, retries: int) -> str:
    """One line: what the pair raised in its worker, or how its worker died after the retries."""
    if isinstance(exc, RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"its worker died {retries + 1} time(s) ({type(exc).__name__}: {first})"

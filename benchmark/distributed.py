"""The Ray executor: the suite's (task, method, seed) pairs as Ray tasks on a cluster.

``xaiboard run --executor ray`` plans exactly as a serial run (``runner.Run.plan``: load each
task once here, write the method cards, read back what is stored), then sends every pair that
still lacks a metric to Ray, longest first by the committed board's per-pair seconds
(``scaling.longest_first``), so that the long pairs do not start last and run alone. A worker
loads the task and model itself, explains the batch once and evaluates the missing metrics with
the same ``runner.Run.pair`` the serial executor calls, and *returns* the records; only this driver process writes them, so atomic writes and resume
work as in a serial run, and nothing relies on a filesystem or memory shared across machines.
Each worker keeps its own explanation cache (under the run's cache root on its node) and its
own per-pair memo; unlike the serial executor, pairs of one task do not share a memo.

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
from dataclasses import dataclass, replace
from pathlib import Path

import ray
import ray.cloudpickle
import torch
from ray.exceptions import RayError, RayTaskError
from tqdm.auto import tqdm

from xaiboard.methods.base import Explainer

from .environment import describe_device, versions
from .metric import Metric
from .paths import submissions_dir
from .record import ResultRecord
from .registry import PLUGIN_PREFIX, import_file
from .runner import PairWork, Run
from .scaling import PairCost, longest_first, pair_costs
from .store import ResultStore
from .task import Task

log = logging.getLogger(__name__)

#: retries of a pair whose worker process died, before its metrics become error records
MAX_RETRIES = 2


@dataclass
class RayExecutor:
    """Runs each pair as one Ray task; see the module docstring.

    ``address``: ``None`` starts a Ray instance on this machine (or uses the one this process
    already started with ``ray.init``); ``"auto"`` joins the cluster this machine belongs to
    (``ray start --head`` here, or a node's); ``"ray://HOST:PORT"`` connects through Ray Client.
    """

    address: str | None = None
    threads: int = 1
    max_retries: int = MAX_RETRIES

    def execute(self, job: Run, tasks: list[Task], methods: list[Explainer], metrics: list[Metric]) -> list[ResultRecord]:
        connect(self.address)
        remote = ray.remote(compute_pair).options(
            num_cpus=self.threads,
            num_gpus=1 if job.device.type == "cuda" else 0,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )
        worker_job = replace(job, store=None, progress=False)
        plugins = ray.put(plugin_sources())
        records: list[ResultRecord] = []
        todo: list[PairWork] = []
        for task in tasks:
            plan = job.plan(task, methods, metrics)
            records.extend(plan.done)
            todo.extend(plan.todo)
        pending = {}
        for work in longest_first(todo, committed_costs(), lambda w: (w.task.name, w.explainer.name, len(w.metrics))):
            pending[remote.remote(plugins, ray.cloudpickle.dumps((worker_job, work)), self.threads)] = work
        with tqdm(total=len(pending), desc="pairs on ray", disable=not job.progress) as bar:
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                work = pending.pop(ready)
                records.extend(self.collect(job, ready, work))
                bar.set_postfix_str(f"{work.task.name} / {work.explainer.name}")
                bar.update()
        return records

    def collect(self, job: Run, ref: ray.ObjectRef, work: PairWork) -> list[ResultRecord]:
        """The pair's records, written by this driver; error records if its worker failed."""
        try:
            returned = ray.get(ref)
        except RayError as exc:
            message = f"{work.explainer.name} on {work.task.name} failed on Ray: {failure(exc, self.max_retries)}"
            log.warning(message)
            return [job.write(work.pair, metric, status="error", error=message, traceback=str(exc)) for metric in work.metrics]
        return [job.keep(record) for record in returned]


def committed_costs() -> list[PairCost]:
    """Per-pair seconds of the committed board (``submissions/``): the estimates behind the order
    pairs are submitted in (``scaling.longest_first``). Unreadable records are skipped: a bad
    file there must not stop a run that never reads it otherwise."""
    records, _ = ResultStore(submissions_dir()).records()
    return pair_costs(records)


def compute_pair(plugins: dict[str, str], payload: bytes, threads: int) -> list[ResultRecord]:
    """A Ray task: one pair with ``threads`` torch threads, its records returned (never stored).

    ``payload`` is the pickled (run, pair), unpickled only after the driver's plugins are
    imported here. The device and versions recorded are this worker's.
    """
    import_plugins(plugins)
    job, work = ray.cloudpickle.loads(payload)
    torch.set_num_threads(threads)
    here = replace(job, device_name=describe_device(job.device), versions=versions())
    return here.compute(work)


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

"""How long a suite takes on N workers, estimated from the costs its result records carry.

Every record holds its metric's seconds over the batch (``metric_cost``) and the explanation's
seconds per explained sample (``cost``, the same in every record of a pair, so ``cost`` x
``n_samples`` is the explanation's time). A (task, method, seed) pair's time is the
explanation once plus each of its metrics: the unit the Ray executor schedules. Pairs are
independent, so N workers need at least ``max(sum / N, longest pair)``: the longest pair is the
critical path, which no number of workers shortens. The estimate is the longest-processing-
time-first list schedule (Graham 1969, within 4/3 of the optimal schedule), with a fixed
per-pair overhead (a worker loading the task and model) added to every pair; each seed repeats
every pair at the same time.

Methods without records (the full tier's LIME, KernelSHAP and RISE are not on the committed
board) can be extrapolated per task from two recorded pairs (:func:`extrapolate`): the
``random`` control, whose explanation costs no model pass, gives the work that no method
changes, and ``occlusion``, a forward-only perturbation method like them, gives the time per
forward pass per sample above it; the method's forward passes per sample scale that part.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import pandas as pd

from .record import ResultRecord

W = TypeVar("W")


@dataclass(frozen=True)
class PairCost:
    """One (task, method) pair's recorded seconds: its explanation, then all of its metrics."""

    task: str
    method: str
    explain_s: float
    metrics_s: float
    metrics: int
    #: forward passes per explained sample (the explanation's, from ``cost``)
    forward_passes: float = 0.0

    @property
    def seconds(self) -> float:
        return self.explain_s + self.metrics_s


def pair_costs(records: Sequence[ResultRecord]) -> list[PairCost]:
    """The pairs of ``records``, longest first; a record without a cost adds nothing."""
    explain: dict[tuple[str, str], tuple[float, float]] = {}
    metrics: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in records:
        key = (record.task, record.method)
        cost = record.cost or {}
        if cost.get("seconds") is not None:
            explain.setdefault(key, (cost["seconds"] * record.n_samples, cost.get("forward_passes") or 0.0))
        metrics[key].append((record.metric_cost or {}).get("seconds") or 0.0)
    pairs = []
    for (task, method), seconds in metrics.items():
        explain_s, forward = explain.get((task, method), (0.0, 0.0))
        pairs.append(PairCost(task, method, explain_s, sum(seconds), len(seconds), forward))
    return sorted(pairs, key=lambda p: p.seconds, reverse=True)


def longest_first(works: Sequence[W], recorded: Sequence[PairCost], name: Callable[[W], tuple[str, str, int]]) -> list[W]:
    """``works`` in the order a pool of workers should start them: pairs without a recorded cost
    first (an unknown pair may be the longest), then the recorded ones longest first.

    Ray starts queued tasks in submission order as CPUs free up, so submitting longest first is
    the list schedule :func:`makespan` assumes (Graham's rule): the long pairs start at once and
    the short ones fill the gaps at the end. Submitted in the suite's own order instead, the
    default suite's longest pair (``image/shapes`` x occlusion, 393 s) started last and ran alone
    for 4.6 of the run's 15 minutes on 2 workers. ``name`` gives a work's (task, method, number
    of metrics it lacks); a recorded pair's time is scaled by the share of its metrics still
    missing. The order changes no result: each pair computes the same records wherever it runs.
    """
    known = {(p.task, p.method): p for p in recorded}

    def expected(work: W) -> float:
        task, method, missing = name(work)
        pair = known.get((task, method))
        return math.inf if pair is None else pair.explain_s + pair.metrics_s * missing / max(pair.metrics, 1)

    return sorted(works, key=expected, reverse=True)


def extrapolate(pairs: Sequence[PairCost], passes: dict[str, float], reference: str = "occlusion",
                floor: str = "random") -> list[PairCost]:
    """Pairs of the methods in ``passes`` (name -> forward passes per sample) on every task with
    both a ``floor`` and a ``reference`` pair: ``floor``'s time plus ``reference``'s time above
    it, scaled by the method's forward passes over the reference's."""
    found = {(p.task, p.method): p for p in pairs}
    estimated = []
    for task in sorted({p.task for p in pairs}):
        low, ref = found.get((task, floor)), found.get((task, reference))
        if low is None or ref is None or not ref.forward_passes:
            continue
        for method, forward in passes.items():
            ratio = forward / ref.forward_passes
            estimated.append(PairCost(task, method, low.explain_s + (ref.explain_s - low.explain_s) * ratio,
                                      low.metrics_s + (ref.metrics_s - low.metrics_s) * ratio, ref.metrics, forward))
    return sorted(estimated, key=lambda p: p.seconds, reverse=True)


def makespan(seconds: Sequence[float], workers: int) -> float:
    """Wall time of the longest-first list schedule of ``seconds`` on ``workers`` workers."""
    loads = [0.0] * workers
    for job in sorted(seconds, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + job)
    return max(loads)


def estimate(pairs: Sequence[PairCost], workers: Sequence[int], seeds: int, overhead_s: float = 0.0) -> pd.DataFrame:
    """Per worker count: pair count, total CPU hours, the lower bound and the scheduled wall
    hours, speedup over one worker and efficiency (speedup / workers)."""
    units = [p.seconds + overhead_s for p in pairs for _ in range(seeds)]
    total = sum(units)
    rows = []
    for n in workers:
        wall = makespan(units, n)
        rows.append(
            {
                "workers": n,
                "pairs": len(units),
                "cpu_hours": total / 3600,
                "lower_bound_hours": max(total / n, max(units, default=0.0)) / 3600,
                "wall_hours": wall / 3600,
                "speedup": total / wall if wall else 1.0,
                "efficiency": total / wall / n if wall else 1.0,
            }
        )
    return pd.DataFrame(rows)


def by_task(pairs: Sequence[PairCost]) -> pd.DataFrame:
    """Per task: pairs, total seconds, and its longest pair (the task's own critical path)."""
    frame = pd.DataFrame([{"task": p.task, "method": p.method, "seconds": p.seconds} for p in pairs])
    longest = frame.loc[frame.groupby("task")["seconds"].idxmax()].set_index("task")
    table = frame.groupby("task").agg(pairs=("method", "size"), seconds=("seconds", "sum"))
    table["longest_pair"] = longest["method"] + " (" + longest["seconds"].round(1).astype(str) + " s)"
    return table.sort_values("seconds", ascending=False).reset_index()

"""From result records to the tables the leaderboard shows: rankings, family ranks, cost.

Pure pandas functions over lists of ``ResultRecord`` so that the ranking rules are unit-tested
without Streamlit.

**Rank groups.** On one (task, metric), a method's rank is 1 + the number of methods whose
confidence interval lies *entirely* on the better side of its own (for a "higher is better"
metric: whose CI low end is above its CI high end). Methods with overlapping intervals
therefore share a rank, and a gap in the ranks (1, 1, 3) says how many methods are
separated from the ones below. The rule is conservative on purpose: requiring disjoint 95%
intervals is stricter than a test of the difference (two intervals can overlap while the
difference is significant), so every distinction the board draws is one the data supports,
at the price of more ties. Ties are not transitive (A ties B, B ties C, A beats C), which is
why ranks are counted per method rather than by sorting into clusters.

A method whose run failed on a metric (an error record) is ranked after every method with a
result, so crashing never improves a mean rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

import xaiboard.methods  # noqa: F401  (registers the built-ins, whose classes say which are controls)
from xaiboard.benchmark.record import ResultRecord
from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.stats import paired_permutation_pvalue

Bound = float | np.ndarray | pd.Series

FAMILIES = ("faithfulness", "robustness", "user_proxy", "sanity", "cost")
RANDOM = "random"
COST_FIELDS = ("forward_passes", "backward_passes", "seconds", "peak_memory_mb")
_RESULT_COLUMNS = ["method", "status", "mean", "ci_low", "ci_high", "n", "is_control", "error"]
TABLE_COLUMNS = [
    "rank", "method", "mean", "ci_low", "ci_high", "n", "is_control", "beats_random", "p_vs_random", "status", "error",
]
PROVENANCE_COLUMNS = ["method", "method_hash", "task_version", "seed", "n_samples", "removal", "device", "versions"]


def is_control(method: str) -> bool:
    """Whether ``method`` is a control row; submitted methods unknown to the registry are not."""
    return method in METHODS and bool(getattr(METHODS.factory(method), "control", False))


def task_names(records: Sequence[ResultRecord]) -> list[str]:
    return sorted({r.task for r in records})


def metrics_by_family(records: Sequence[ResultRecord], task: str) -> dict[str, list[str]]:
    """The metrics with records on ``task``, grouped by family in ``FAMILIES`` order."""
    order = {family: i for i, family in enumerate(FAMILIES)}
    found = sorted(
        {(r.family, r.metric) for r in records if r.task == task},
        key=lambda pair: (order.get(pair[0], len(order)), pair),
    )
    grouped: dict[str, list[str]] = {}
    for family, metric in found:
        grouped.setdefault(family, []).append(metric)
    return grouped


def direction_of(records: Sequence[ResultRecord], task: str, metric: str) -> str:
    """The metric's direction ("higher" or "lower" is better), as recorded in its results."""
    directions = {r.direction for r in records if r.task == task and r.metric == metric}
    if len(directions) != 1 or not directions <= {"higher", "lower"}:
        raise ValueError(f"{task}/{metric}: records disagree on or lack a direction: {sorted(directions)}")
    return directions.pop()


def _results(records: Sequence[ResultRecord], task: str, metric: str) -> pd.DataFrame:
    """One row per method on (task, metric): summary and status, NaN summary for errors."""
    rows = [
        {
            "method": r.method,
            "status": r.status,
            "mean": r.summary.mean if r.summary else np.nan,
            "ci_low": r.summary.ci_low if r.summary else np.nan,
            "ci_high": r.summary.ci_high if r.summary else np.nan,
            "n": r.summary.n if r.summary else 0,
            "is_control": is_control(r.method),
            "error": r.error,
        }
        for r in records
        if r.task == task and r.metric == metric
    ]
    return pd.DataFrame(rows, columns=_RESULT_COLUMNS)


def _better(low_a: Bound, high_a: Bound, low_b: Bound, high_b: Bound, direction: str) -> Bound:
    """True where interval a lies entirely on the better side of interval b (broadcasts)."""
    return low_a > high_b if direction == "higher" else high_a < low_b


def _beats_random(frame: pd.DataFrame, direction: str) -> pd.Series:
    ok = frame[frame["status"] == "ok"].set_index("method")
    if RANDOM not in ok.index:
        return pd.Series(dtype=bool, name="beats_random")
    reference = ok.loc[RANDOM]
    others = ok.drop(index=RANDOM)
    flags = _better(others["ci_low"], others["ci_high"], reference["ci_low"], reference["ci_high"], direction)
    return flags.astype(bool).rename("beats_random")


def beats_random(records: Sequence[ResultRecord], task: str, metric: str) -> pd.Series:
    """Per method with a result, whether its CI lies entirely on the better side of ``random``'s.

    A method flagged False is indistinguishable from (or worse than) the random explainer on
    this metric and is shown as such. Empty when ``random`` has no result here.
    """
    frame = _results(records, task, metric)
    if frame.empty:
        return pd.Series(dtype=bool, name="beats_random")
    return _beats_random(frame, direction_of(records, task, metric))


def p_vs_random(records: Sequence[ResultRecord], task: str, metric: str) -> pd.Series:
    """Per method, the paired permutation test's p-value that it beats ``random`` (one-sided).

    Complements ``beats_random``: the CI rule compares two marginal intervals, the test uses
    that both were scored on the same samples, so it detects smaller, consistent differences.
    Only pairs of ok records over the same samples (same task version, seed and sample count)
    with at least two finite score pairs are tested (others get no p-value); the p-values are not corrected for the number of methods compared.
    """
    ok = {r.method: r for r in records if r.task == task and r.metric == metric and r.status == "ok"}
    reference = ok.pop(RANDOM, None)
    if reference is None:
        return pd.Series(dtype=float, name="p_vs_random")
    values = {
        method: paired_permutation_pvalue(r.scores, reference.scores, reference.direction, seed=reference.seed)
        for method, r in ok.items()
        if _comparable(r, reference)
    }
    return pd.Series(values, dtype=float, name="p_vs_random")


def _comparable(record: ResultRecord, reference: ResultRecord) -> bool:
    """Scored on the same samples, with at least two pairs where both scores are finite."""
    if (record.task_version, record.seed, len(record.scores)) != (
        reference.task_version, reference.seed, len(reference.scores)
    ):
        return False
    both = np.isfinite(np.asarray(record.scores, dtype=float)) & np.isfinite(np.asarray(reference.scores, dtype=float))
    return int(both.sum()) >= 2


def leaderboard_table(records: Sequence[ResultRecord], task: str, metric: str) -> pd.DataFrame:
    """The ranked table for one (task, metric), best first, error rows last.

    Columns: ``TABLE_COLUMNS``; ``rank`` is the rank group (see the module docstring),
    ``beats_random`` is <NA> for ``random`` itself, for errors and when there is no random row.
    """
    frame = _results(records, task, metric)
    if frame.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    direction = direction_of(records, task, metric)
    ok = (frame["status"] == "ok").to_numpy()
    low, high = frame["ci_low"].to_numpy()[ok], frame["ci_high"].to_numpy()[ok]
    better = _better(low[None, :], high[None, :], low[:, None], high[:, None], direction)
    rank = np.full(len(frame), ok.sum() + 1)
    rank[ok] = 1 + better.sum(axis=1)
    frame["rank"] = rank
    frame["beats_random"] = frame["method"].map(_beats_random(frame, direction)).astype("boolean")
    frame["p_vs_random"] = frame["method"].map(p_vs_random(records, task, metric))
    best_first = -frame["mean"] if direction == "higher" else frame["mean"]
    order = np.lexsort((frame["method"].to_numpy(), best_first.to_numpy(), rank))
    return frame.iloc[order][TABLE_COLUMNS].reset_index(drop=True)


def family_ranks(records: Sequence[ResultRecord], task: str) -> pd.DataFrame:
    """The headline: per family, each method's mean rank group over that family's metrics.

    One column per family present (in ``FAMILIES`` order), one row per method, best first by
    the first family. A method without a record on some metric is averaged over the metrics it
    has; an error record counts as ranked last.
    """
    tables = [
        leaderboard_table(records, task, metric).assign(family=family)
        for family, metrics in metrics_by_family(records, task).items()
        for metric in metrics
    ]
    if not tables:
        return pd.DataFrame(columns=["method", "is_control"])
    ranks = pd.concat(tables).pivot_table(index="method", columns="family", values="rank", aggfunc="mean")
    families = [f for f in metrics_by_family(records, task) if f in ranks.columns]
    ranks = ranks[families].sort_values(families).reset_index()
    ranks.insert(1, "is_control", ranks["method"].map(is_control))
    ranks.columns.name = None
    return ranks


def cost_table(records: Sequence[ResultRecord], task: str) -> pd.DataFrame:
    """Per method, the cost of one explanation on ``task``: model passes, seconds, peak memory.

    Every record of a (task, method) carries the cost of the same cached explanation, so the
    first result (by metric name) stands for the method.
    """
    costs: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: r.metric):
        if r.task == task and r.status == "ok":
            costs.setdefault(r.method, {name: r.cost.get(name) for name in COST_FIELDS})
    frame = pd.DataFrame.from_dict(costs, orient="index", columns=list(COST_FIELDS)).astype(float)
    frame.insert(0, "passes", frame["forward_passes"] + frame["backward_passes"])
    frame = frame.rename_axis("method").reset_index()
    frame.insert(1, "is_control", frame["method"].map(is_control).astype(bool))
    return frame.sort_values(["passes", "seconds", "method"]).reset_index(drop=True)


def provenance_table(records: Sequence[ResultRecord], task: str) -> pd.DataFrame:
    """What produced the numbers on ``task``: one row per distinct (method, hash, seed, n, ...)."""
    rows = [
        {
            "method": r.method,
            "method_hash": r.method_hash,
            "task_version": r.task_version,
            "seed": r.seed,
            "n_samples": r.n_samples,
            "removal": r.removal,
            "device": r.device,
            "versions": ", ".join(f"{name} {version}" for name, version in sorted(r.versions.items())),
        }
        for r in records
        if r.task == task
    ]
    frame = pd.DataFrame(rows, columns=PROVENANCE_COLUMNS).drop_duplicates()
    return frame.sort_values("method").reset_index(drop=True)

"""From a board (checked records and cards) to the tables the leaderboard shows: rankings,
family ranks, cost, and whether the metrics agree (``metric_agreement``).

Pure pandas functions over a ``Board`` so that the ranking rules are unit-tested without
Streamlit. Which methods are controls, and which one is the random reference, come from the
method cards (``Board.controls``, ``Board.reference``), never from a method's code.

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
result, so crashing never improves a mean rank. A not-applicable record (the metric cannot be
computed for this method, e.g. it would re-run precomputed explanations) is not ranked at all
and does not enter the family ranks: the method is averaged over the metrics that apply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xaiboard.benchmark.card import MethodCard
from xaiboard.benchmark.record import ResultRecord
from xaiboard.leaderboard.board import Board, load_board

Bound = float | np.ndarray | pd.Series

FAMILIES = ("faithfulness", "robustness", "user_proxy", "sanity", "cost")
COST_FIELDS = ("forward_passes", "backward_passes", "seconds", "peak_memory_mb")
_RESULT_COLUMNS = ["method", "status", "mean", "ci_low", "ci_high", "n", "is_control", "error", "reason"]
TABLE_COLUMNS = [
    "rank", "method", "mean", "ci_low", "ci_high", "n", "is_control", "beats_random", "p_vs_random", "status",
    "error", "reason",
]  # fmt: skip
CARD_COLUMNS = ["method", "kind", "control", "description", "authors", "paper", "url", "licence"]
PROVENANCE_COLUMNS = [
    "method", "method_hash", "task_version", "seed", "n_samples", "removal", "device", "precision", "versions"
]


def task_names(board: Board) -> list[str]:
    return sorted({r.task for r in board.records})


def _task_records(board: Board, task: str) -> list[ResultRecord]:
    return [r for r in board.records if r.task == task]


def metrics_by_family(board: Board, task: str) -> dict[str, list[str]]:
    """The metrics with records on ``task``, grouped by family in ``FAMILIES`` order."""
    order = {family: i for i, family in enumerate(FAMILIES)}
    found = sorted(
        {(r.family, r.metric) for r in _task_records(board, task)},
        key=lambda pair: (order.get(pair[0], len(order)), pair),
    )
    grouped: dict[str, list[str]] = {}
    for family, metric in found:
        grouped.setdefault(family, []).append(metric)
    return grouped


def _metric_records(board: Board, task: str, metric: str) -> list[ResultRecord]:
    return [r for r in board.records if r.task == task and r.metric == metric]


def direction_of(board: Board, task: str, metric: str) -> str:
    """The metric's direction ("higher" or "lower" is better), as recorded in its results."""
    directions = {r.direction for r in _metric_records(board, task, metric)}
    if len(directions) != 1:
        raise ValueError(f"{task}/{metric}: records disagree on or lack a direction: {sorted(directions)}")
    return directions.pop()


def _results(board: Board, task: str, metric: str) -> pd.DataFrame:
    """One row per method on (task, metric): summary and status, NaN summary without a result."""
    controls = board.controls
    rows = [
        {
            "method": r.method,
            "status": r.status,
            "mean": r.summary.mean if r.summary else np.nan,
            "ci_low": r.summary.ci_low if r.summary else np.nan,
            "ci_high": r.summary.ci_high if r.summary else np.nan,
            "n": r.summary.n if r.summary else 0,
            "is_control": r.method in controls,
            "error": r.error,
            "reason": r.reason,
        }
        for r in _metric_records(board, task, metric)
    ]
    return pd.DataFrame(rows, columns=_RESULT_COLUMNS)


def _better(low_a: Bound, high_a: Bound, low_b: Bound, high_b: Bound, direction: str) -> Bound:
    """True where interval a lies entirely on the better side of interval b (broadcasts)."""
    return low_a > high_b if direction == "higher" else high_a < low_b


def _beats_random(frame: pd.DataFrame, direction: str, reference: str | None) -> pd.Series:
    ok = frame[frame["status"] == "ok"].set_index("method")
    if reference not in ok.index:
        return pd.Series(dtype=bool, name="beats_random")
    others = ok.drop(index=reference)
    low, high = ok.loc[reference, "ci_low"], ok.loc[reference, "ci_high"]
    flags = _better(others["ci_low"], others["ci_high"], low, high, direction)
    return flags.astype(bool).rename("beats_random")


def beats_random(board: Board, task: str, metric: str) -> pd.Series:
    """Per method with a result, whether its CI lies entirely on the better side of the reference's.

    The reference is the random control (``board.reference``). A method flagged False is
    indistinguishable from (or worse than) the random explainer on this metric and is shown as
    such. Empty when there is no reference or it has no result here.
    """
    frame = _results(board, task, metric)
    if frame.empty:
        return pd.Series(dtype=bool, name="beats_random")
    return _beats_random(frame, direction_of(board, task, metric), board.reference)


def p_vs_random(board: Board, task: str, metric: str) -> pd.Series:
    """Per method, the paired permutation test's p-value that it beats the random reference (one-sided).

    Complements ``beats_random``: the CI rule compares two marginal intervals, the test uses
    that both were scored on the same samples, so it detects smaller, consistent differences.
    Only pairs of ok records over the same samples (same task version, seed and sample count)
    with at least two finite score pairs are tested (others get no p-value); the p-values are
    not corrected for the number of methods compared.
    """
    from xaiboard.benchmark.stats import paired_permutation_pvalue  # here, not at the top: it loads torch and scipy, which showing precomputed tables never needs

    ok = {r.method: r for r in _metric_records(board, task, metric) if r.status == "ok"}
    reference = ok.pop(board.reference, None)
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


def _rank_groups(frame: pd.DataFrame, direction: str) -> pd.Series:
    """Rank groups of the ok rows; errors after all of them; not-applicable rows unranked (<NA>)."""
    ok = (frame["status"] == "ok").to_numpy()
    low, high = frame["ci_low"].to_numpy()[ok], frame["ci_high"].to_numpy()[ok]
    better = _better(low[None, :], high[None, :], low[:, None], high[:, None], direction)
    rank = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    rank[ok] = 1 + better.sum(axis=1)
    rank[(frame["status"] == "error").to_numpy()] = ok.sum() + 1
    return rank


def leaderboard_table(board: Board, task: str, metric: str) -> pd.DataFrame:
    """The ranked table for one (task, metric), best first, then errors, then not-applicable rows.

    Columns: ``TABLE_COLUMNS``; ``rank`` is the rank group (see the module docstring), <NA>
    for not-applicable rows; ``beats_random`` is <NA> for the reference itself, for rows
    without a result and when there is no reference.
    """
    frame = _results(board, task, metric)
    if frame.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    direction = direction_of(board, task, metric)
    frame["rank"] = _rank_groups(frame, direction)
    frame["beats_random"] = frame["method"].map(_beats_random(frame, direction, board.reference)).astype("boolean")
    frame["p_vs_random"] = frame["method"].map(p_vs_random(board, task, metric))
    best_first = -frame["mean"] if direction == "higher" else frame["mean"]
    unranked = frame["rank"].isna().to_numpy()
    rank = frame["rank"].fillna(0).to_numpy()
    order = np.lexsort((frame["method"].to_numpy(), best_first.to_numpy(), rank, unranked))
    return frame.iloc[order][TABLE_COLUMNS].reset_index(drop=True)


def family_ranks(board: Board, task: str) -> pd.DataFrame:
    """The headline: per family, each method's mean rank group over that family's metrics.

    One column per family present (in ``FAMILIES`` order), one row per method, best first by
    the first family. A method is averaged over the metrics it has a ranked record on (a
    missing or not-applicable record is left out); an error record counts as ranked last.
    """
    families = metrics_by_family(board, task)
    tables = [
        leaderboard_table(board, task, metric).assign(family=family)
        for family, metrics in families.items()
        for metric in metrics
    ]
    if not tables:
        return pd.DataFrame(columns=["method", "is_control"])
    ranked = pd.concat(tables).astype({"rank": float})
    ranks = ranked.pivot_table(index="method", columns="family", values="rank", aggfunc="mean", dropna=False)
    ranks = ranks.reindex(columns=[f for f in families if f in ranks.columns])
    ranks = ranks.sort_values(list(ranks.columns)).reset_index()
    ranks.insert(1, "is_control", ranks["method"].isin(board.controls))
    ranks.columns.name = None
    return ranks


def standings(root: Path | str, method: str) -> pd.DataFrame:
    """Where ``method`` stands on every task it has records on: each method's mean rank group
    per family (``family_ranks``), one block per task, for ``xaiboard submit``'s printout.

    Columns: ``task``, ``method``, ``is_control``, then one per family present on any of those
    tasks (NaN where a task lacks the family). ``method``'s own rows:
    ``frame[frame["method"] == method]``.
    """
    board = load_board(root)
    tasks = sorted({r.task for r in board.records if r.method == method})
    blocks = [family_ranks(board, task).assign(task=task) for task in tasks]
    if not blocks:
        return pd.DataFrame(columns=["task", "method", "is_control"])
    frame = pd.concat(blocks, ignore_index=True)
    families = [f for f in FAMILIES if f in frame.columns]
    return frame[["task", "method", "is_control", *families]]


def cost_table(board: Board, task: str) -> pd.DataFrame:
    """Per method, the cost of one explanation on ``task``: model passes, seconds, peak memory.

    Every record of a (task, method) carries the cost of the same cached explanation, so the
    first result (by metric name) stands for the method.
    """
    costs: dict[str, dict] = {}
    for r in sorted(_task_records(board, task), key=lambda r: r.metric):
        if r.status == "ok":
            costs.setdefault(r.method, {name: _number(r.cost.get(name)) for name in COST_FIELDS})
    frame = pd.DataFrame.from_dict(costs, orient="index", columns=list(COST_FIELDS)).astype(float)
    frame.insert(0, "passes", frame["forward_passes"] + frame["backward_passes"])
    frame = frame.rename_axis("method").reset_index()
    frame.insert(1, "is_control", frame["method"].isin(board.controls))
    return frame.sort_values(["passes", "seconds", "method"]).reset_index(drop=True)


def metric_cost_table(board: Board, task: str) -> pd.DataFrame:
    """Where evaluating ``task`` spent its time: per metric, the seconds and model passes of
    computing it, summed over the methods (each record's ``metric_cost``), most expensive first.

    Shared work (removal curves, re-explanations) is charged to the metric that needed it first,
    so the column totals count every pass once.
    """
    rows = [
        {"metric": r.metric, "seconds": _number(r.metric_cost.get("seconds")),
         "passes": _number(r.metric_cost.get("forward_passes")) + _number(r.metric_cost.get("backward_passes"))}
        for r in _task_records(board, task)
    ]
    if not rows:
        return pd.DataFrame(columns=["metric", "seconds", "passes", "share"])
    frame = pd.DataFrame(rows).groupby("metric", as_index=False)[["seconds", "passes"]].sum()
    frame["share"] = frame["seconds"] / frame["seconds"].sum() if frame["seconds"].sum() > 0 else 0.0
    return frame.sort_values(["seconds", "metric"], ascending=[False, True]).reset_index(drop=True)


def _number(value: object) -> float:
    """A cost field as a float; NaN when absent or not a number (the schema leaves ``cost`` free-form)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def provenance_table(board: Board, task: str) -> pd.DataFrame:
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
            "precision": r.precision,
            "versions": ", ".join(f"{name} {version}" for name, version in sorted(r.versions.items())),
        }
        for r in _task_records(board, task)
    ]
    frame = pd.DataFrame(rows, columns=PROVENANCE_COLUMNS).drop_duplicates()
    return frame.sort_values("method").reset_index(drop=True)


def cards_table(board: Board, task: str) -> pd.DataFrame:
    """The cards of the methods with records on ``task``, as plain-text cells."""
    methods = sorted({r.method for r in _task_records(board, task)})
    return pd.DataFrame([_card_row(method, board.cards.get(method)) for method in methods], columns=CARD_COLUMNS)


def _card_row(method: str, card: MethodCard | None) -> dict[str, str]:
    """One method's card fields; a method without a card says so in ``kind``."""
    if card is None:
        return {**dict.fromkeys(CARD_COLUMNS, ""), "method": method, "kind": "no card"}
    control = card.control_kind or ("yes" if card.control else "")
    text = {name: getattr(card, name) for name in ("kind", "description", "authors", "paper", "url", "licence")}
    return {"method": method, "control": control, **text}


def family_rank_groups(board: Board, task: str, tables: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per (method, family): the mean rank (``family_ranks``) and the family's rank group.

    A method's family rank group is 1 + the number of methods that beat it, by the per-metric
    rule (interval entirely on the better side, or a result against an error), on *every*
    metric of the family that both are ranked on (at least one). It carries the per-metric rule
    up a level: on a one-metric family it is that metric's rank group, and a method is placed
    behind another only where every metric of the family separates them, so methods the data
    cannot tell apart share a group. Columns: ``method``, ``is_control``, ``family``,
    ``mean_rank``, ``rank_group``. ``tables``: the task's ``leaderboard_table`` per metric when
    already computed (they hold the p-values, the slow part).
    """
    families = metrics_by_family(board, task)
    tables = tables or {m: leaderboard_table(board, task, m) for metrics in families.values() for m in metrics}
    blocks = [
        _family_groups(family, {m: (tables[m], direction_of(board, task, m)) for m in metrics})
        for family, metrics in families.items()
    ]
    columns = ["method", "is_control", "family", "mean_rank", "rank_group"]
    if not blocks:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(blocks, ignore_index=True)
    frame.insert(1, "is_control", frame["method"].isin(board.controls))
    return frame[columns]


def _family_groups(family: str, tables: dict[str, tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """``family_rank_groups`` for one family, from its metrics' (table, direction)."""
    methods = sorted(set().union(*(table["method"] for table, _ in tables.values())))
    beats_everywhere = np.ones((len(methods), len(methods)), dtype=bool)  # [better, worse]
    compared = np.zeros_like(beats_everywhere)
    for table, direction in tables.values():
        beats, ranked = _beats(table.set_index("method").reindex(methods), direction)
        both = ranked[:, None] & ranked[None, :]
        beats_everywhere &= np.where(both, beats, True)
        compared |= both
    dominated_by = (beats_everywhere & compared).sum(axis=0)
    ranks = pd.concat([table.set_index("method")["rank"].astype(float) for table, _ in tables.values()], axis=1)
    mean = ranks.mean(axis=1).reindex(methods)
    group = pd.Series(1 + dominated_by, index=methods).where(mean.notna()).astype("Int64")
    return pd.DataFrame({"method": methods, "family": family, "mean_rank": mean.to_numpy(), "rank_group": group.to_numpy()})


def _beats(table: pd.DataFrame, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """On one metric: [i, j] where method i beats method j (``_rank_groups``' rule), and which are ranked."""
    ok = (table["status"] == "ok").to_numpy()
    error = (table["status"] == "error").to_numpy()
    low, high = table["ci_low"].to_numpy(dtype=float), table["ci_high"].to_numpy(dtype=float)
    beats = _better(low[:, None], high[:, None], low[None, :], high[None, :], direction) & ok[:, None] & ok[None, :]
    return beats | (ok[:, None] & error[None, :]), ok | error


def uninformative_families(board: Board, groups: pd.DataFrame) -> dict[str, str]:
    """Per family in which a control ranks first (``groups``: a task's ``family_rank_groups``),
    the reason the family is uninformative for that task.

    "First" is the best mean rank (ties included): if an explainer that ignores the model, or
    scores at random, is as good as any method, the family's metrics cannot tell informative
    explanations from uninformative ones on this task. The cost family is left out: a control
    being cheapest says nothing about the metrics.
    """
    reasons = {}
    quality = groups[groups["family"] != "cost"].dropna(subset=["mean_rank"])
    for family, block in quality.groupby("family", sort=False):
        best = block[block["mean_rank"] == block["mean_rank"].min()]
        controls = best.loc[best["is_control"], "method"].tolist()
        if controls:
            kinds = [_control_kind(board, method) for method in controls]
            reasons[family] = (
                f"uninformative for this task: the control {', '.join(controls)} ({', '.join(kinds)}) ranks first "
                f"on {family} (mean rank {best['mean_rank'].min():.3g}), so these metrics do not separate "
                "explanations from ones that carry no information about the model"
            )
    return reasons


def _control_kind(board: Board, method: str) -> str:
    card = board.cards.get(method)
    kind = card.control_kind if card is not None else ""
    return {"random": "random scores", "model-independent": "ignores the model"}.get(kind, "a control")


def pareto_front(frame: pd.DataFrame, cost: str, quality: str) -> pd.Series:
    """Rows no other row beats: none has lower-or-equal ``cost`` and ``quality`` (both lower is
    better) with one of them strictly lower. Rows with a missing value are never on the front."""
    values = frame[[cost, quality]].to_numpy(dtype=float)
    known = ~np.isnan(values).any(axis=1)
    le = (values[:, None, :] <= values[None, :, :]).all(axis=2)
    lt = (values[:, None, :] < values[None, :, :]).any(axis=2)
    beaten = (le & lt & known[:, None]).any(axis=0)
    return pd.Series(known & ~beaten, index=frame.index, name="pareto")


#: fewer methods in common than this and two metrics' agreement is not computed (with two
#: methods every rank correlation is +1 or -1, which says nothing)
MIN_AGREEMENT_METHODS = 3
AGREEMENT_COLUMNS = ["metric_a", "metric_b", "family_a", "family_b", "spearman", "n_methods"]


def metric_agreement(board: Board, task: str, tables: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Do the metrics agree? Per pair of metrics on ``task``, the Spearman rank correlation of the
    methods' mean scores, with each metric oriented so that larger is better.

    +1: the two metrics order the methods the same way, best to worst; -1: in opposite ways; 0:
    unrelated. The orientation (lower-is-better metrics negated) makes agreement mean agreeing
    on which method is better, whatever the metrics' scales and directions. A pair is computed
    over the methods with an ok result on both (at least ``MIN_AGREEMENT_METHODS``), else NaN;
    also NaN when a metric gives every such method the same mean. Long format, one row per
    ordered pair (the diagonal included), metrics in ``metrics_by_family`` order. ``tables``: the
    task's ``leaderboard_table`` per metric when already computed; a metric missing from them is
    left out (its table failed, and says why where it is shown).
    """
    families = metrics_by_family(board, task)
    family_of = {m: family for family, metrics in families.items() for m in metrics if not tables or m in tables}
    tables = tables or {m: leaderboard_table(board, task, m) for m in family_of}
    oriented = pd.DataFrame(
        {m: _oriented_means(tables[m], direction_of(board, task, m)) for m in family_of}, columns=list(family_of)
    )
    rho = oriented.corr(method="spearman", min_periods=MIN_AGREEMENT_METHODS)
    known = oriented.notna().astype(int)
    counts = known.T @ known
    frame = rho.stack(future_stack=True).rename("spearman").to_frame()
    frame["n_methods"] = counts.stack(future_stack=True)
    frame = frame.rename_axis(["metric_a", "metric_b"]).reset_index()
    frame["family_a"], frame["family_b"] = frame["metric_a"].map(family_of), frame["metric_b"].map(family_of)
    return frame.astype({"spearman": float, "n_methods": "int64"})[AGREEMENT_COLUMNS]


def _oriented_means(table: pd.DataFrame, direction: str) -> pd.Series:
    """The methods' means on one metric (ok rows only), negated when lower is better."""
    ok = table[table["status"] == "ok"].set_index("method")["mean"].astype(float)
    return ok if direction == "higher" else -ok

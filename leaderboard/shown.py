"""The tables the pages show, made from the board's tables without Streamlit: the app's pages
(through ``ui``) and the static export (``export.py``) show the same cells."""

from __future__ import annotations

import json

import pandas as pd

from xaiboard.leaderboard.tables import BoardTables, TaskTables, plain_value, to_dict

STATUS_LABELS = {"ok": "ok", "error": "error", "not-applicable": "not applicable"}


def interval(low: float, high: float) -> str:
    return "" if pd.isna(low) else f"[{low:.4g}, {high:.4g}]"


def _versus_random(flag: object) -> str:
    return "" if pd.isna(flag) else ("beats random" if flag else "does not beat random")


def _p_value(p: float) -> str:
    return "" if pd.isna(p) else f"{p:.2g}"


def display_table(ranked: pd.DataFrame, with_reference: bool) -> pd.DataFrame:
    """The ranked table as shown: CI as ``[lo, hi]``, controls, the random check and statuses in
    words, the error or not-applicable reason as a note. Without a random reference there is no
    comparison, so its columns are left out."""
    shown = pd.DataFrame(
        {
            "rank": ranked["rank"],
            "method": ranked["method"],
            "control": ranked["is_control"],
            "mean": ranked["mean"],
            "95% CI": [interval(lo, hi) for lo, hi in zip(ranked["ci_low"], ranked["ci_high"])],
            "n": ranked["n"],
            "vs random": ranked["beats_random"].map(_versus_random),
            "p (paired, vs random)": ranked["p_vs_random"].map(_p_value),
            "status": ranked["status"].map(STATUS_LABELS),
            "note": ranked["error"].fillna(ranked["reason"]).fillna(""),
        }
    )
    return shown if with_reference else shown.drop(columns=["vs random", "p (paired, vs random)"])


def rank_cell(mean_rank: float, group: object) -> str:
    """A family rank as shown: the mean rank and, in brackets, the family rank group."""
    return "" if pd.isna(mean_rank) else f"{mean_rank:.2f} (group {group})"


def method_family(tables: BoardTables, method: str) -> str:
    """How the method works, from its card ("" without one)."""
    return str(tables.cards.get(method, {}).get("family", ""))


def overview_grid(overview: pd.DataFrame, family: str, tasks: list[str], tables: BoardTables) -> pd.DataFrame:
    """Methods × ``tasks`` for one family: cells ``"mean (group g)"``, best mean over tasks first."""
    rows = overview[(overview["family"] == family) & overview["task"].isin(tasks)]
    cells = rows.assign(cell=[rank_cell(m, g) for m, g in zip(rows["mean_rank"], rows["rank_group"])])
    shown = cells.pivot(index="method", columns="task", values="cell").reindex(columns=tasks).fillna("")
    order = rows.groupby("method")["mean_rank"].mean().sort_values().index
    shown = shown.reindex(order)
    shown.insert(0, "control", [m in tables.controls for m in shown.index])
    shown.insert(1, "method family", [method_family(tables, m) for m in shown.index])
    shown.columns.name = None
    return shown.rename_axis("method").reset_index()


def compact(task: TaskTables, metrics: list[str], family: str) -> pd.DataFrame:
    """Per method: family mean rank and group, then per metric "mean [CI low, CI high] #rank"."""
    groups = task.frames["family_groups"]
    rows = groups[groups["family"] == family].set_index("method")
    shown = pd.DataFrame({"control": rows["is_control"], "family rank": [
        rank_cell(m, g) for m, g in zip(rows["mean_rank"], rows["rank_group"])]}, index=rows.index)  # fmt: skip
    for metric in metrics:
        ranked = task.frames.get(f"metric:{metric}")
        if ranked is not None:
            cells = [_cell(r) for r in ranked.itertuples()]
            shown[metric] = pd.Series(cells, index=ranked["method"]).reindex(shown.index).fillna("")
    return shown.sort_values("family rank").rename_axis("method").reset_index()


def _cell(row: object) -> str:
    if row.status != "ok":
        return STATUS_LABELS.get(row.status, row.status)
    return f"{row.mean:.3g} {interval(row.ci_low, row.ci_high)} #{row.rank}"


def file_stem(*parts: str) -> str:
    """A download's file name from names (task names carry '/')."""
    return "-".join(part.replace("/", "_") for part in parts)


def board_json(tables: BoardTables) -> str:
    """The whole board as one JSON document (the precomputed tables file's content)."""
    return json.dumps(to_dict(tables), allow_nan=False, default=plain_value)

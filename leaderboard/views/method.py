"""Method page: the method's card (``method.json``), its family ranks across tasks, its cost
per explanation on each task, and its example explanations drawn over the inputs (``gallery.py``)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from xaiboard.leaderboard import gallery, ui
from xaiboard.leaderboard.plain import escape_markdown
from xaiboard.leaderboard.tables import BoardTables

CARD_FIELDS = ("description", "kind", "family", "control_kind", "authors", "paper", "url", "licence", "modalities",
               "cost_class", "passes", "code_hash", "submitted_at")  # fmt: skip


def card_frame(card: dict) -> pd.DataFrame:
    """The card's fields as (field, value) rows of plain text."""
    values = [", ".join(map(str, v)) if isinstance(v, list) else str(v) for v in (card.get(f, "") for f in CARD_FIELDS)]
    return pd.DataFrame({"field": CARD_FIELDS, "value": values})


def ranks_across_tasks(tables: BoardTables, method: str) -> pd.DataFrame:
    """Per task (rows) and family (columns): the method's ``"mean (group g)"``."""
    rows = tables.overview()
    rows = rows[rows["method"] == method]
    cells = rows.assign(cell=[ui.rank_cell(m, g) for m, g in zip(rows["mean_rank"], rows["rank_group"])])
    shown = cells.pivot(index="task", columns="family", values="cell").fillna("")
    shown.columns.name = None
    return shown.reset_index()


def cost_across_tasks(tables: BoardTables, method: str) -> pd.DataFrame:
    blocks = [t.frames["cost"].assign(task=name) for name, t in tables.tasks.items() if "cost" in t.frames]
    if not blocks:
        return pd.DataFrame()
    frame = pd.concat(blocks, ignore_index=True)
    frame = frame[frame["method"] == method]
    return frame[["task", "passes", "forward_passes", "backward_passes", "seconds", "peak_memory_mb"]]


def show_method(tables: BoardTables, method: str) -> None:
    st.header(f"Method {escape_markdown(method)}")
    card = tables.cards.get(method)
    if card is None:
        st.text("This method has no card (method.json).")
    else:
        st.dataframe(card_frame(card), hide_index=True)
        st.caption("Parameters")
        st.code(json.dumps(card.get("parameters", {}), indent=1, sort_keys=True), language=None)
    st.subheader("Family ranks across tasks")
    st.caption("Mean rank over the family's metrics on each task (lower is better), family rank group in brackets.")
    ui.table(ranks_across_tasks(tables, method), ui.file_stem(method, "ranks"))
    st.subheader("Cost per explanation")
    ui.table(cost_across_tasks(tables, method), ui.file_stem(method, "cost"))
    gallery.show_method(ui.board_root(), tables, method)


tables = ui.current()
methods = sorted(set(tables.cards) | set(tables.overview()["method"]))
chosen = st.sidebar.selectbox("Method", methods, key="method")
with ui.guarded(chosen):
    show_method(tables, chosen)

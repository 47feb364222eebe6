"""Overview page: methods × tasks, each cell one metric family's rank with its rank group,
one table per modality; filters by family and modality; controls always shown; the whole board
as a download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from xaiboard.leaderboard import ui
from xaiboard.leaderboard.aggregate import FAMILIES
from xaiboard.leaderboard.plain import escape_markdown
from xaiboard.leaderboard.shown import method_family, overview_grid
from xaiboard.leaderboard.tables import BoardTables

GUIDE = (
    "Reading guide: each cell is the method's mean rank over the chosen family's metrics on that task "
    "(lower is better) and, in brackets, its rank group (methods in one group are not separated on every "
    "metric); families and tasks are never blended into one score."
)


def controls_row(overview: pd.DataFrame, tables: BoardTables) -> tuple[str, list[str], list[str]]:
    """The filters, always shown: metric family, modalities, method families (controls stay in)."""
    present = [f for f in FAMILIES if f in set(overview["family"])]
    left, middle, right = st.columns(3)
    family = left.selectbox("Metric family", present, key="family")
    modalities = sorted(set(overview["modality"]))
    chosen = middle.multiselect("Modality", modalities, default=modalities, key="modality")
    kinds = sorted({method_family(tables, m) for m in overview["method"]} - {"control"})
    kept = right.multiselect("Method family", kinds, default=kinds, key="method_family")
    return family, chosen, kept


def show_overview(tables: BoardTables) -> None:
    overview = tables.overview()
    st.header("Overview")
    st.caption(GUIDE)
    family, modalities, kinds = controls_row(overview, tables)
    keep = overview["is_control"] | overview["method"].map(lambda m: method_family(tables, m)).isin(kinds)
    overview = overview[keep]
    for modality in modalities:
        tasks = sorted(set(overview.loc[overview["modality"] == modality, "task"]))
        st.subheader(escape_markdown(modality))
        ui.table(overview_grid(overview, family, tasks, tables), ui.file_stem("overview", modality, family))
        for task in tasks:
            reason = tables.tasks[task].caveats.get(family)
            if reason:
                ui.caveat(f"{task}: {reason}")
            for line in tables.flagged(task):
                ui.caveat(line)
    st.subheader("The whole board")
    left, right = st.columns(2)
    left.download_button("Whole board (JSON)", lambda: ui.board_json(tables), file_name="xaiboard.json", mime="application/json",
                         on_click="ignore", key="bundle-json")  # fmt: skip
    right.download_button("Whole board (CSV tables, zip)", lambda: ui.board_zip(tables), file_name="xaiboard-csv.zip",
                          mime="application/zip", on_click="ignore", key="bundle-zip")  # fmt: skip


with ui.guarded("overview"):
    show_overview(ui.current())

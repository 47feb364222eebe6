"""Compare page: two or more methods on one task, side by side on the same samples: their
example explanations (``gallery.py``) and, per metric and pair of methods, the paired difference
of their per-sample scores with the paired test's p-value (``paired.py``)."""

from __future__ import annotations

from itertools import combinations

import pandas as pd
import streamlit as st

from xaiboard.leaderboard import gallery, ui
from xaiboard.leaderboard.paired import P_COLUMN, paired_differences
from xaiboard.leaderboard.plain import escape_markdown
from xaiboard.leaderboard.tables import BoardTables

READING = (
    "Each table pairs two methods' scores sample by sample: the mean difference of the first minus the second, "
    "over the samples where both are finite, and the two-sided paired permutation test's p-value (not corrected for "
    "the number of metrics); 'better' follows the metric's direction."
)


def methods_on(tables: BoardTables, task: str) -> list[str]:
    """The methods with results on ``task``, best first by the first family's mean rank."""
    ranks = tables.tasks[task].frames.get("family_ranks")
    return [] if ranks is None else list(ranks["method"])


@st.cache_data(max_entries=256, show_spinner="Running the paired tests...")
def differences(root: str, task: str, task_key: str, a: str, b: str, _tables: BoardTables) -> pd.DataFrame:
    """``paired_differences`` of ``a`` and ``b`` on the task content ``task_key`` (the cache key)."""
    records = {m: gallery.task_records(root, task, m, task_key) for m in (a, b)}
    task_tables = _tables.tasks[task]
    return paired_differences(a, b, records, task_tables.families, task_tables.directions)


def show_compare(tables: BoardTables, task: str, chosen: list[str]) -> None:
    root = ui.board_root()
    st.header(f"Compare on {escape_markdown(task)}")
    st.subheader("Example explanations")
    st.caption(gallery.LEGEND)
    with ui.guarded(f"{task}: example explanations"):
        gallery.show_side_by_side(root, tables, task, chosen)
    st.subheader("Paired differences")
    st.caption(READING)
    key = tables.keys.tasks.get(task, "")
    for a, b in combinations(chosen, 2):
        with ui.guarded(f"{task}: {a} vs {b}"):
            st.markdown(f"**{escape_markdown(a)} vs {escape_markdown(b)}**")
            table = differences(root, task, key, a, b, tables)
            ui.table(table, ui.file_stem(task, "compare", a, b),
                     column_config={P_COLUMN: st.column_config.NumberColumn(format="%.2g")})  # fmt: skip


tables = ui.current()
task = st.sidebar.selectbox("Task", list(tables.tasks), key="compare_task")
methods = methods_on(tables, task)
controls = set(tables.controls)
defaults = [m for m in methods if m not in controls][:2]
chosen = st.sidebar.multiselect("Methods", methods, default=defaults, key="compare_methods")
if len(chosen) < 2:
    st.info("Choose two or more methods in the sidebar to compare them.")
else:
    with ui.guarded(task):
        show_compare(tables, task, chosen)

"""Quality vs cost page: on one task, each method's family rank against its cost per
explanation (model passes or seconds), the Pareto front (no method both cheaper and better) marked."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from xaiboard.leaderboard import ui
from xaiboard.leaderboard.aggregate import pareto_front
from xaiboard.leaderboard.plain import escape_markdown
from xaiboard.leaderboard.tables import TaskTables

COSTS = {"model passes": "passes", "seconds": "seconds"}


def quality_and_cost(task: TaskTables, family: str, cost: str) -> pd.DataFrame:
    """Per method: mean rank and group on ``family``, the cost column, and whether it is on the front."""
    groups = task.frames["family_groups"]
    frame = groups[groups["family"] == family].merge(task.frames["cost"][["method", cost]], on="method", how="inner")
    frame = frame[["method", "is_control", "mean_rank", "rank_group", cost]]
    return frame.assign(pareto=pareto_front(frame, cost, "mean_rank")).sort_values([cost, "mean_rank"])


def chart(frame: pd.DataFrame, cost: str) -> alt.Chart:
    """Family rank (lower is better, drawn at the top) against cost on a symmetric log axis."""
    points = alt.Chart(frame).mark_point(filled=True, size=80).encode(
        x=alt.X(f"{cost}:Q", scale=alt.Scale(type="symlog"), title=f"cost per explanation ({cost})"),
        y=alt.Y("mean_rank:Q", scale=alt.Scale(reverse=True), title="family mean rank (lower is better)"),
        color=alt.Color("pareto:N", title="Pareto front"),
        shape=alt.Shape("is_control:N", title="control"),
        tooltip=["method", "mean_rank", "rank_group", cost],
    )
    front = alt.Chart(frame[frame["pareto"]]).mark_line().encode(x=f"{cost}:Q", y="mean_rank:Q")
    return (front + points).properties(height=420)


tables = ui.current()
name = st.sidebar.selectbox("Task", list(tables.tasks), key="cost_task")
task = tables.tasks[name]
st.header(f"Quality vs cost: {escape_markdown(name)}")
left, right = st.columns(2)
family = left.selectbox("Metric family", [f for f in task.families if f != "cost"], key="cost_family")
cost = COSTS[right.radio("Cost", list(COSTS), horizontal=True, key="cost_axis")]
with ui.guarded(f"{name}: quality vs cost"):
    if family in task.caveats:
        ui.caveat(task.caveats[family])
    data = quality_and_cost(task, family, cost)
    st.altair_chart(chart(data, cost), width="stretch")
    ui.table(data, ui.file_stem(name, family, "quality-vs-cost"))

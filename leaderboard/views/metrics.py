"""Metrics page: do the metrics agree? Per task, the Spearman rank correlation between every two
metrics over the methods (a heatmap of the precomputed ``metric_agreement`` table), the pairs of
one family that disagree (a family rank averages them), and each metric's definition,
direction, family, reference and what its tests check it against (from the registered metric
classes: their docstrings and ``reference``, ``checked_against``, ``deviation`` attributes)."""

from __future__ import annotations

import inspect

import altair as alt
import pandas as pd
import streamlit as st

from xaiboard.benchmark.registry import METRICS
from xaiboard.leaderboard import ui
from xaiboard.leaderboard.plain import escape_markdown
from xaiboard.leaderboard.tables import TaskTables

GUIDE = (
    "Each cell is the Spearman rank correlation between two metrics' mean scores over the methods that have a "
    "result on both (at least 3), each metric turned so that larger is better: +1, the two metrics order the "
    "methods the same way, best to worst; -1, in opposite ways; near 0, they are unrelated. An empty cell: too "
    "few methods in common, or a metric that scores them all alike. Controls count as methods."
)
DEFINITION_COLUMNS = ["metric", "family", "direction", "definition", "reference", "checked against", "deviation"]


def heatmap(agreement: pd.DataFrame, order: list[str]) -> alt.Chart:
    """Metric × metric, coloured from -1 (red) to +1 (blue), metrics in family order."""
    chart = alt.Chart(agreement).mark_rect().encode(
        x=alt.X("metric_b:N", sort=order, title=None, axis=alt.Axis(labelAngle=-60, labelOverlap=False, labelLimit=240)),
        y=alt.Y("metric_a:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=240)),
        color=alt.Color("spearman:Q", scale=alt.Scale(scheme="redblue", domain=[-1, 1]), title="Spearman"),
        tooltip=["metric_a", "metric_b", "family_a", "family_b", alt.Tooltip("spearman:Q", format=".2f"), "n_methods"],
    )
    side = 20 * len(order) + 20
    return chart.properties(width=side, height=side)


def disagreeing_within_families(agreement: pd.DataFrame) -> pd.DataFrame:
    """Each pair of one family whose correlation is negative, once, most negative first."""
    pairs = agreement[(agreement["family_a"] == agreement["family_b"]) & (agreement["metric_a"] < agreement["metric_b"])]
    pairs = pairs[pairs["spearman"] < 0].sort_values(["spearman", "metric_a", "metric_b"])
    return pairs[["family_a", "metric_a", "metric_b", "spearman", "n_methods"]].rename(columns={"family_a": "family"})


def describe(metric: str) -> dict[str, str]:
    """What the registered metric class says about itself; a metric this installation does not
    register is only known by its records."""
    if metric not in METRICS:
        return {"definition": "not a metric registered in this installation", "reference": "", "checked against": "",
                "deviation": ""}  # fmt: skip
    cls = METRICS.factory(metric)
    first_paragraph = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
    return {
        "definition": " ".join(first_paragraph.split()).replace("``", ""),
        "reference": cls.reference,
        "checked against": cls.checked_against or "no reference implementation",
        "deviation": cls.deviation,
    }


def definitions(task: TaskTables) -> pd.DataFrame:
    """One row per metric on the task, in family order (family and direction as the records say)."""
    rows = [
        {"metric": metric, "family": family, "direction": f"{task.directions.get(metric) or 'unknown'} is better",
         **describe(metric)}
        for family, metrics in task.families.items()
        for metric in metrics
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=DEFINITION_COLUMNS)


def show_agreement(name: str, task: TaskTables) -> None:
    agreement = ui.frame(task, "metric_agreement")
    if agreement is None:
        if "metric_agreement" not in task.errors:
            st.text("The stored statistics have no metric agreement table: run `xaiboard board build`.")
        return
    order = [metric for metrics in task.families.values() for metric in metrics if metric in set(agreement["metric_a"])]
    pairs = agreement[agreement["metric_a"] != agreement["metric_b"]]
    if pairs["spearman"].notna().any():
        st.altair_chart(heatmap(agreement, order))
    else:
        st.text("No two metrics have results for enough methods in common to compare them.")
    st.caption("Pairs of one family that order the methods in opposite ways (the family rank averages them):")
    ui.table(disagreeing_within_families(agreement), ui.file_stem(name, "disagreeing-metrics"),
             column_config={"spearman": st.column_config.NumberColumn(format="%.2f")})  # fmt: skip
    with st.expander("Every pair as a table"):
        ui.table(agreement, ui.file_stem(name, "metric-agreement"))


def show_metrics(name: str, task: TaskTables) -> None:
    st.header(f"Do the metrics agree? Task {escape_markdown(name)}")
    st.caption(GUIDE)
    with ui.guarded(f"{name}: metric agreement"):
        show_agreement(name, task)
    st.subheader("The metrics")
    st.caption("Each metric's definition and reference, and what the tests check its values against (see docs/metrics.md).")
    ui.table(definitions(task), ui.file_stem(name, "metrics"))


tables = ui.current()
chosen = st.sidebar.selectbox("Task", list(tables.tasks), key="metrics_task")
with ui.guarded(chosen):
    show_metrics(chosen, tables.tasks[chosen])

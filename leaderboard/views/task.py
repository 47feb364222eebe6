"""Task page: one task's family ranks and, per family, a method × metric table with CIs; each
metric's ranked table and CI chart on demand; the task card (with the task's shortcut scores and
ground-truth faithfulness check), cost and provenance."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from xaiboard.benchmark.task_check_record import faithfulness_frame, prior_frame, verdicts
from xaiboard.leaderboard import ui
from xaiboard.leaderboard.plain import escape_markdown
from xaiboard.leaderboard.shown import compact
from xaiboard.leaderboard.tables import BoardTables, TaskTables


def show_family(tables: BoardTables, name: str, task: TaskTables, family: str, details: bool) -> None:
    if family in task.caveats:
        ui.caveat(task.caveats[family])
    metrics = task.families[family]
    if "family_groups" not in task.errors:
        with ui.guarded(f"{name}: {family} table"):
            ui.table(compact(task, metrics, family), ui.file_stem(name, "family", family))
    if details:
        for metric in metrics:
            with ui.guarded(f"{name}/{metric}"):
                ui.show_metric(tables, name, task, metric)


def show_task(tables: BoardTables, name: str) -> None:
    task = tables.tasks[name]
    st.header(f"Task {escape_markdown(name)}")
    st.caption(
        "Family rank: the method's rank group averaged over the family's metrics (lower is better), with the "
        "family rank group in brackets. Cells: mean [95% CI] #rank group. Errors count as ranked last; "
        "not-applicable metrics are left out."
    )
    ranks = ui.frame(task, "family_ranks") if "family_groups" not in task.errors else ui.frame(task, "family_groups")
    if ranks is not None:
        ui.table(ranks, ui.file_stem(name, "family-ranks"))
    details = st.toggle("Show each metric's ranked table and CI chart", key="details")
    for tab, family in zip(st.tabs([escape_markdown(f) for f in task.families]), task.families):
        with tab:
            show_family(tables, name, task, family, details)
    with st.expander("Task card", expanded=True):
        registered = tables.task_cards.get(name)
        if registered:
            ui.table(pd.DataFrame({"field": list(registered), "value": [str(v) for v in registered.values()]}),
                     ui.file_stem(name, "task-card"))  # fmt: skip
        else:
            st.text("No registered card was stored for this task (xaiboard board build stores it).")
        show_check(tables, name)
    for title, key in (("Settings the records were produced under", "card"), ("Methods on this task", "cards"),
                       ("Cost per explanation", "cost"), ("Evaluation cost per metric (all methods)", "metric_cost"),
                       ("Provenance", "provenance")):  # fmt: skip
        with st.expander(title):
            data = ui.frame(task, key)
            if data is not None:
                ui.table(data, ui.file_stem(name, key))


def show_check(tables: BoardTables, name: str) -> None:
    """The task's shortcut scores and ground-truth faithfulness check (``xaiboard task check``)."""
    check, stale = tables.task_check(name)
    st.subheader("Shortcut scores and ground-truth faithfulness")
    if check is None:
        st.text(f"No task check stored for this task (xaiboard task check {name} --results-dir <this board> makes one).")
        return
    if stale:
        ui.caveat(stale)
    for line in tables.flagged(name):
        ui.caveat(line)
    ui.plain_lines(verdicts(check))
    if check["priors"]:
        ui.table(prior_frame(check["priors"]), ui.file_stem(name, "shortcut-scores"))
    if check["faithfulness"].get("applicable"):
        ui.table(faithfulness_frame(check["faithfulness"]), ui.file_stem(name, "gt-faithfulness"))


tables = ui.current()
chosen = st.sidebar.selectbox("Task", list(tables.tasks), key="task")
with ui.guarded(chosen):
    show_task(tables, chosen)

"""The xaiboard leaderboard: ``streamlit run leaderboard/app.py`` (or ``xaiboard leaderboard``).

Shows the results root ``XAIBOARD_SUBMISSIONS`` (default: the repository's ``submissions/``)
on four pages (``views/``): Overview (methods × tasks, family ranks by modality), Task (one
task's ranked tables with CIs, details on demand), Method (a method's card and ranks across
tasks) and Quality vs cost (family rank against cost per explanation, Pareto front marked).

The statistics come precomputed (``tables.py``: ``xaiboard board build`` writes them beside the
records); when the records changed since, the changed tasks are recomputed and the page says
so. This script loads them once per run for every page and puts them in the session.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from xaiboard.leaderboard import ui

INTRO = """
Methods are ranked per task and per metric by their mean per-sample score with a 95% bootstrap
confidence interval; methods share a **rank group** unless one's interval lies entirely on the
better side of the other's. **Control rows** (a random explainer, a model-independent explainer)
show what "no information" scores. The headline is each method's mean rank within each metric
family, never one blended score.
"""
VIEWS = Path(__file__).with_name("views")
PAGES = [("overview.py", "Overview"), ("task.py", "Task"), ("method.py", "Method"), ("compare.py", "Compare"),
         ("cost.py", "Quality vs cost"), ("metrics.py", "Metrics"), ("reproductions.py", "Reproductions")]  # fmt: skip


def main() -> None:
    st.set_page_config(page_title="xaiboard", layout="wide")
    page = st.navigation([st.Page(VIEWS / name, title=title, default=i == 0) for i, (name, title) in enumerate(PAGES)])
    st.title("xaiboard: a leaderboard for explanation methods")
    root = ui.board_root()
    with ui.guarded(root):
        tables, notice = ui.load_tables(root)
        st.session_state[ui.STATE_KEY] = tables
        if notice and tables.tasks:
            st.info(notice)
        ui.show_problems(tables.problems)
        if not tables.tasks:
            st.info("No results found under the results folder below. Run `xaiboard run` to produce some.")
            st.code(root, language=None)
            return
        st.markdown(INTRO)
        page.run()


main()

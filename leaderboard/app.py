"""The xaiboard leaderboard: ``streamlit run leaderboard/app.py`` (or ``xaiboard leaderboard``).

Reads the board (checked records and method cards, ``board.load_board``) under
``XAIBOARD_SUBMISSIONS`` (default: the repository's ``submissions/``) and shows, per task, the
per-family mean ranks, then per metric a ranked table with 95% bootstrap CIs, rank groups,
control rows and the comparison with the random control, the methods' cards, cost and
provenance.

Submitted text is plain text (see ``plain.py``): card fields, error messages, reasons and
problem lines are only ever shown with ``st.text``, ``st.code`` or in dataframe cells, never in
Markdown; names appear in headings only escaped. The page never shows a traceback: each part
that reads submitted data runs in ``guarded``, which replaces a failure by one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import altair as alt
import pandas as pd
import streamlit as st

from xaiboard.benchmark.paths import submissions_dir
from xaiboard.benchmark.registry import METRICS
from xaiboard.leaderboard import aggregate
from xaiboard.leaderboard.board import Board, load_board
from xaiboard.leaderboard.plain import escape_markdown

INTRO = """
Each table ranks explanation methods on one task and one metric, by the mean per-sample score
with a 95% bootstrap confidence interval. Methods share a **rank group** unless one's interval
lies entirely on the better side of the other's, so a tie means the data cannot tell them
apart. **Control rows** (a random explainer, a model-independent explainer) show what "no
information" scores; a method whose interval does not beat the random explainer's is marked.
The headline is each method's mean rank within each metric family, never one blended score.
"""


STATUS_LABELS = {"ok": "ok", "error": "error", "not-applicable": "not applicable"}


@st.cache_data(ttl=60, show_spinner=False)
def load(root: str) -> Board:
    """The board over ``root``; cached for a minute so that switching task or tab does not
    re-read every result file."""
    return load_board(root)


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Run one part of the page; if submitted data breaks it, show one plain line instead of a
    traceback and go on with the rest of the page."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001  (any record may be malformed in a way no check foresaw)
        st.error("This part of the page could not be shown:")
        plain_lines([f"{what}: {type(exc).__name__}: {exc}"])


def plain_lines(lines: list[str]) -> None:
    """Submitted text as plain text, one item per line (an item's own line breaks become spaces)."""
    st.code("\n".join(" ".join(line.splitlines()) for line in lines), language=None, wrap_lines=True)


def metric_definition(name: str) -> str:
    """The first docstring line of a registered metric, plus its reference when it has one."""
    if name not in METRICS:
        return ""
    cls = METRICS.factory(name)
    first_line = (cls.__doc__ or "").strip().splitlines()[:1]
    reference = getattr(cls, "reference", "")
    return " ".join(first_line + ([f"Reference: {reference}."] if reference else []))


def _interval(low: float, high: float) -> str:
    return "" if pd.isna(low) else f"[{low:.4g}, {high:.4g}]"


def _versus_random(flag: object) -> str:
    return "" if pd.isna(flag) else ("beats random" if flag else "does not beat random")


def _p_value(p: float) -> str:
    return "" if pd.isna(p) else f"{p:.2g}"


def display_table(table: pd.DataFrame, with_reference: bool) -> pd.DataFrame:
    """The ranked table as shown: CI as ``[lo, hi]``, controls, the random check and statuses in
    words, the error or not-applicable reason as a note. Without a random reference there is no
    comparison, so its columns are left out."""
    shown = pd.DataFrame(
        {
            "rank": table["rank"],
            "method": table["method"],
            "control": table["is_control"],
            "mean": table["mean"],
            "95% CI": [_interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"])],
            "n": table["n"],
            "vs random": table["beats_random"].map(_versus_random),
            "p (paired, vs random)": table["p_vs_random"].map(_p_value),
            "status": table["status"].map(STATUS_LABELS),
            "note": table["error"].fillna(table["reason"]).fillna(""),
        }
    )
    return shown if with_reference else shown.drop(columns=["vs random", "p (paired, vs random)"])


def ci_chart(table: pd.DataFrame) -> alt.Chart:
    """Means as points with their 95% CI as horizontal rules, methods in rank order."""
    ok = table.loc[table["status"] == "ok", ["method", "mean", "ci_low", "ci_high", "is_control"]]
    base = alt.Chart(ok).encode(y=alt.Y("method:N", sort=list(ok["method"]), title=None))
    interval = base.mark_rule().encode(x=alt.X("ci_low:Q", title="mean and 95% CI"), x2="ci_high:Q")
    points = base.mark_point(filled=True, size=60).encode(
        x="mean:Q",
        color=alt.Color("is_control:N", title="control"),
        tooltip=["method", "mean", "ci_low", "ci_high"],
    )
    return (interval + points).properties(height=28 * len(ok) + 20)


def show_metric(board: Board, task: str, metric: str) -> None:
    table = aggregate.leaderboard_table(board, task, metric)
    direction = aggregate.direction_of(board, task, metric)
    st.subheader(escape_markdown(metric))
    st.caption(f"**{direction} is better.** {metric_definition(metric)}")
    st.dataframe(
        display_table(table, with_reference=board.reference is not None),
        hide_index=True,
        column_config={
            "control": st.column_config.CheckboxColumn(help="control row: random or model-independent"),
            "mean": st.column_config.NumberColumn(format="%.4g"),
        },
    )
    if (table["status"] == "ok").any():
        st.altair_chart(ci_chart(table), width="stretch")
    failed = table[table["status"] == "error"]
    if not failed.empty:
        st.error(f"{len(failed)} method(s) failed on this metric; they count as ranked last:")
        plain_lines([f"{method}: {error}" for method, error in zip(failed["method"], failed["error"])])


def show_task(board: Board, task: str) -> None:
    families = aggregate.metrics_by_family(board, task)
    st.header(f"Mean rank per family: {escape_markdown(task)}")
    st.caption(
        "Each cell is the method's rank group averaged over the family's metrics ("
        + "; ".join(f"{family}: {', '.join(map(escape_markdown, metrics))}" for family, metrics in families.items())
        + "). Lower is better; errors count as ranked last; not-applicable metrics are left out."
    )
    with guarded(f"{task}: family ranks"):
        st.dataframe(aggregate.family_ranks(board, task), hide_index=True)
    with st.expander("Methods on this task"):
        with guarded(f"{task}: method cards"):
            st.dataframe(aggregate.cards_table(board, task), hide_index=True)
    for tab, (family, metrics) in zip(st.tabs(list(families)), families.items()):
        with tab:
            for metric in metrics:
                with guarded(f"{task}/{metric}"):
                    show_metric(board, task, metric)
    st.header("Cost per explanation")
    with guarded(f"{task}: cost"):
        st.dataframe(aggregate.cost_table(board, task), hide_index=True)
    with st.expander("Evaluation cost per metric (all methods)"):
        with guarded(f"{task}: metric cost"):
            st.dataframe(aggregate.metric_cost_table(board, task), hide_index=True)
    with st.expander("Provenance"):
        with guarded(f"{task}: provenance"):
            st.dataframe(aggregate.provenance_table(board, task), hide_index=True)


def show_problems(problems: tuple[str, ...]) -> None:
    """One plain line per result file or card that is not shown, and why."""
    if problems:
        label = f"{len(problems)} result file(s) or card(s) could not be read or are not shown"
        with st.expander(label, expanded=True):
            plain_lines(list(problems))


def show_board(root: str) -> None:
    board = load(root)
    show_problems(board.problems)
    if not board.records:
        st.info("No results found under the results folder below. Run `xaiboard run` to produce some.")
        st.code(root, language=None)
        return
    task = st.sidebar.selectbox("Task", aggregate.task_names(board), key="task")
    with guarded(task):
        show_task(board, task)


def main() -> None:
    st.set_page_config(page_title="xaiboard", layout="wide")
    st.title("xaiboard: a leaderboard for explanation methods")
    st.markdown(INTRO)
    root = str(submissions_dir())
    with guarded(root):
        show_board(root)


main()

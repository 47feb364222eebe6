"""What every page of the leaderboard shares: the tables of the results root, plain-text output,
the ranked-table display, CSV downloads.

Submitted text is plain text (see ``plain.py``): card fields, error messages, reasons and
problem lines are only ever shown with ``st.text``, ``st.code`` or in dataframe cells, never in
Markdown; names (and sentences built from names) appear in Markdown elements only escaped. The
pages never show a traceback: each part that reads submitted data runs in ``guarded``, which
replaces a failure by one line.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from xaiboard.benchmark.paths import submissions_dir
from xaiboard.benchmark.registry import METRICS
from xaiboard.leaderboard import tables as tables_module
from xaiboard.leaderboard.plain import escape_markdown
# the pages use these as ui.*; they live in shown.py, which the static export shares
from xaiboard.leaderboard.shown import STATUS_LABELS, board_json, display_table, file_stem, interval, rank_cell  # noqa: F401
from xaiboard.leaderboard.tables import BoardTables, TaskTables

if TYPE_CHECKING:
    import altair as alt

#: where the app keeps this run's tables for the page scripts
STATE_KEY = "xaiboard_tables"


@st.cache_resource(max_entries=4, show_spinner="Computing the board's statistics...")
def _load(root: str, board_key: str) -> tuple[BoardTables, str]:
    """The tables over ``root`` for the content whose hash is ``board_key`` (the cache key): read
    from the precomputed file when it matches, recomputed (the changed tasks only) when not."""
    return tables_module.load(root)


@st.cache_resource
def _digests() -> tables_module.Digests:
    """The process's memo of record and card hashes (``tables.content_keys``): each run checks
    the files' signatures and reads only those that changed."""
    return {}


def load_tables(root: str) -> tuple[BoardTables, str]:
    """Up-to-date tables over ``root`` and the recompute notice (``""`` when precomputed)."""
    return _load(root, tables_module.content_keys(root, _digests()).board)


def board_root() -> str:
    return str(submissions_dir())


def current() -> BoardTables:
    """The tables the app loaded for this run (``app.py`` puts them in the session)."""
    return st.session_state[STATE_KEY]


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Run one part of the page; if submitted data breaks it, show one plain line instead of a
    traceback and go on with the rest of the page."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001  (any record may be malformed in a way no check foresaw)
        failed(f"{what}: {type(exc).__name__}: {exc}")


def failed(line: str) -> None:
    st.error("This part of the page could not be shown:")
    plain_lines([line])


def plain_lines(lines: list[str]) -> None:
    """Submitted text as plain text, one item per line (an item's own line breaks become spaces)."""
    st.code("\n".join(" ".join(line.splitlines()) for line in lines), language=None, wrap_lines=True)


def frame(task: TaskTables, name: str) -> pd.DataFrame | None:
    """One of a task's tables, or ``None`` after showing why it could not be computed."""
    if name in task.errors:
        failed(task.errors[name])
        return None
    return task.frames.get(name)


def table(data: pd.DataFrame, file_name: str, **options: object) -> None:
    """A table and a button that downloads it as CSV (written when clicked, not on every run)."""
    st.dataframe(data, hide_index=True, **options)
    st.download_button(
        "Download CSV", lambda: data.to_csv(index=False), file_name=f"{file_name}.csv", mime="text/csv",
        key=f"csv-{file_name}", on_click="ignore",
    )  # fmt: skip


def caveat(line: str) -> None:
    """A sentence built by the board from names, as an escaped warning."""
    st.warning(escape_markdown(line))


def metric_definition(name: str) -> str:
    """The first docstring line of a registered metric, plus its reference when it has one."""
    import xaiboard.benchmark.metrics  # noqa: F401  (registers them; loaded on first use, as it loads torch)

    if name not in METRICS:
        return ""
    cls = METRICS.factory(name)
    first_line = (cls.__doc__ or "").strip().splitlines()[:1]
    reference = getattr(cls, "reference", "")
    return " ".join(first_line + ([f"Reference: {reference}."] if reference else []))


def ci_chart(ranked: pd.DataFrame) -> alt.Chart:
    """Means as points with their 95% CI as horizontal rules, methods in rank order."""
    import altair as alt  # here, not at the top: only the details need it, and it takes a while to load

    ok = ranked.loc[ranked["status"] == "ok", ["method", "mean", "ci_low", "ci_high", "is_control"]]
    base = alt.Chart(ok).encode(y=alt.Y("method:N", sort=list(ok["method"]), title=None))
    rules = base.mark_rule().encode(x=alt.X("ci_low:Q", title="mean and 95% CI"), x2="ci_high:Q")
    points = base.mark_point(filled=True, size=60).encode(
        x="mean:Q",
        color=alt.Color("is_control:N", title="control"),
        tooltip=["method", "mean", "ci_low", "ci_high"],
    )
    return (rules + points).properties(height=28 * len(ok) + 20)


def show_metric(tables: BoardTables, task_name: str, task: TaskTables, metric: str) -> None:
    """One metric's ranked table, CI chart and failures."""
    st.subheader(escape_markdown(metric))
    st.caption(f"**{task.directions.get(metric) or 'unknown'} is better.** {metric_definition(metric)}")
    ranked = frame(task, f"metric:{metric}")
    if ranked is None:
        return
    table(
        display_table(ranked, with_reference=tables.reference is not None),
        file_stem(task_name, "metric", metric),
        column_config={
            "control": st.column_config.CheckboxColumn(help="control row: random or model-independent"),
            "mean": st.column_config.NumberColumn(format="%.4g"),
        },
    )
    if (ranked["status"] == "ok").any():
        st.altair_chart(ci_chart(ranked), width="stretch")
    errors = ranked[ranked["status"] == "error"]
    if not errors.empty:
        st.error(f"{len(errors)} method(s) failed on this metric; they count as ranked last:")
        plain_lines([f"{method}: {error}" for method, error in zip(errors["method"], errors["error"])])


def show_problems(problems: tuple[str, ...]) -> None:
    """One plain line per result file or card that is not shown, and why."""
    if problems:
        label = f"{len(problems)} result file(s) or card(s) could not be read or are not shown"
        with st.expander(label, expanded=True):
            plain_lines(list(problems))


def board_zip(tables: BoardTables) -> bytes:
    """The whole board as a zip of CSVs: the overview, then every table of every task."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("overview.csv", tables.overview().to_csv(index=False))
        for task_name, task in tables.tasks.items():
            for name, data in task.frames.items():
                archive.writestr(f"{task_name}/{name.replace(':', '-')}.csv", data.to_csv(index=False))
    return buffer.getvalue()

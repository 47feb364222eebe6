"""The xaiboard leaderboard: ``streamlit run leaderboard/app.py`` (or ``xaiboard leaderboard``).

Reads every result record under ``XAIBOARD_SUBMISSIONS`` (default: the repository's
``submissions/``) and shows, per task, the per-family mean ranks, then per metric a ranked
table with 95% bootstrap CIs, rank groups, control rows and the "beats random" check.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import xaiboard.benchmark.metrics  # noqa: F401  (registers the built-in metrics, for their definitions)
from xaiboard.benchmark.paths import submissions_dir
from xaiboard.benchmark.record import ResultRecord
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import aggregate

INTRO = """
Each table ranks explanation methods on one task and one metric, by the mean per-sample score
with a 95% bootstrap confidence interval. Methods share a **rank group** unless one's interval
lies entirely on the better side of the other's, so a tie means the data cannot tell them
apart. **Control rows** (a random explainer, a model-independent explainer) show what "no
information" scores; a method whose interval does not beat the random explainer's is marked.
The headline is each method's mean rank within each metric family, never one blended score.
"""


@st.cache_data(ttl=60, show_spinner=False)
def load(root: str) -> tuple[list[ResultRecord], list[str]]:
    """Every readable record under ``root``, and one line per file that could not be read.

    Cached for a minute so that switching task or tab does not re-read every result file.
    """
    records, errors = ResultStore(root).records()
    return records, [str(error) for error in errors]


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


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ranked table as shown: CI as ``[lo, hi]``, controls and the random check in words."""
    return pd.DataFrame(
        {
            "rank": table["rank"],
            "method": table["method"],
            "control": table["is_control"],
            "mean": table["mean"],
            "95% CI": [_interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"])],
            "n": table["n"],
            "vs random": table["beats_random"].map(_versus_random),
            "p (paired, vs random)": table["p_vs_random"].map(_p_value),
            "status": table["status"],
        }
    )


def ci_chart(table: pd.DataFrame) -> alt.Chart:
    """Means as points with their 95% CI as horizontal rules, methods in rank order."""
    ok = table[table["status"] == "ok"]
    base = alt.Chart(ok).encode(y=alt.Y("method:N", sort=list(ok["method"]), title=None))
    interval = base.mark_rule().encode(x=alt.X("ci_low:Q", title="mean and 95% CI"), x2="ci_high:Q")
    points = base.mark_point(filled=True, size=60).encode(
        x="mean:Q",
        color=alt.Color("is_control:N", title="control"),
        tooltip=["method", "mean", "ci_low", "ci_high"],
    )
    return (interval + points).properties(height=28 * len(ok) + 20)


def show_metric(records: list[ResultRecord], task: str, metric: str) -> None:
    table = aggregate.leaderboard_table(records, task, metric)
    direction = aggregate.direction_of(records, task, metric)
    st.subheader(metric)
    st.caption(f"**{direction} is better.** {metric_definition(metric)}")
    st.dataframe(
        display_table(table),
        hide_index=True,
        column_config={
            "control": st.column_config.CheckboxColumn(help="control row: random or model-independent"),
            "mean": st.column_config.NumberColumn(format="%.4g"),
        },
    )
    if (table["status"] == "ok").any():
        st.altair_chart(ci_chart(table), width="stretch")
    for method, message in table.loc[table["status"] == "error", ["method", "error"]].itertuples(index=False):
        st.error(f"{method}: {message}")


def show_task(records: list[ResultRecord], task: str) -> None:
    families = aggregate.metrics_by_family(records, task)
    st.header(f"Mean rank per family: {task}")
    st.caption(
        "Each cell is the method's rank group averaged over the family's metrics ("
        + "; ".join(f"{family}: {', '.join(metrics)}" for family, metrics in families.items())
        + "). Lower is better; errors count as ranked last."
    )
    st.dataframe(aggregate.family_ranks(records, task), hide_index=True)
    for tab, (family, metrics) in zip(st.tabs(list(families)), families.items()):
        with tab:
            for metric in metrics:
                show_metric(records, task, metric)
    st.header("Cost per explanation")
    st.dataframe(aggregate.cost_table(records, task), hide_index=True)
    with st.expander("Provenance"):
        st.dataframe(aggregate.provenance_table(records, task), hide_index=True)


def main() -> None:
    st.set_page_config(page_title="xaiboard", layout="wide")
    st.title("xaiboard: a leaderboard for explanation methods")
    st.markdown(INTRO)
    root = submissions_dir()
    records, errors = load(str(root))
    if errors:
        with st.expander(f"{len(errors)} result file(s) could not be read", expanded=True):
            st.markdown("\n".join(f"- `{line}`" for line in errors))
    if not records:
        st.info(f"No results found under `{root}`. Run `xaiboard run` to produce some.")
        return
    task = st.sidebar.selectbox("Task", aggregate.task_names(records), key="task")
    show_task(records, task)


main()

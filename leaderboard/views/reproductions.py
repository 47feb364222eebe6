"""Reproductions page: published tables rerun on our harness (``xaiboard reproduce``), paper
beside ours. Reads ``<results root>/reproductions/*.json`` (``repro_records.py``) and shows per
reproduction its protocol, the table (paper, ours as mean ± std over seeds, difference, verdict,
reason), the plots the run drew beside the record, and each row's per-seed values and evidence.

The plots are the PNG files the reproduction wrote, not redrawn here: they are the figures the
run made (laid out as the papers' figures: curves per method, annotated heatmaps per fidelity
and form), the page needs no per-reproduction drawing code that would have to follow each
reproduction's evidence layout, and the board imports no reproduction code.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from xaiboard.benchmark.paths import REPRODUCTIONS_FOLDER
from xaiboard.leaderboard import repro_records, ui
from xaiboard.leaderboard.plain import escape_markdown
from xaiboard.leaderboard.repro_records import ReproductionRecord

GUIDE = (
    "Each reproduction reruns a published table with the paper's protocol (data, model, which samples are scored, "
    "the metric as the paper defines it) over several seeds. Verdicts: within the paper's spread (its own std), "
    "within tolerance (the reproduction's stated one), holds / fails (a qualitative claim), off (neither; the reason "
    "says why), skipped (a method not available here), ours only (our convention beside the paper's)."
)


def show_record(record: ReproductionRecord) -> None:
    if record.quick:
        st.warning("A --quick run: a tiny size that checks the table's structure, not the paper's numbers.")
    st.dataframe(repro_records.protocol_frame(record), hide_index=True)
    ui.table(record.table, ui.file_stem("reproduction", record.name),
             column_config={"difference": st.column_config.NumberColumn(format="%+.3f")})  # fmt: skip
    for plot in record.plots:
        st.caption(escape_markdown(plot.name))
        st.image(str(plot))
    with st.expander("Per-seed values and evidence of each row"):
        st.code(repro_records.evidence_text(record), language="json")


def show_reproductions(root: Path) -> None:
    st.header("Reproductions: paper vs ours")
    st.caption(GUIDE)
    records, problems = repro_records.read_all(root)
    if problems:
        with st.expander(f"{len(problems)} reproduction record(s) could not be read", expanded=True):
            ui.plain_lines(problems)
    if not records:
        st.info("No reproduction records under this results folder: `xaiboard reproduce NAME --results-dir DIR` writes "
                f"them to DIR/{REPRODUCTIONS_FOLDER}/.")  # fmt: skip
        st.code(str(root / REPRODUCTIONS_FOLDER), language=None)
        return
    ui.table(repro_records.summary(records), "reproductions")
    for tab, record in zip(st.tabs([escape_markdown(r.name) for r in records]), records):
        with tab, ui.guarded(record.name):
            show_record(record)


with ui.guarded("reproductions"):
    show_reproductions(Path(ui.board_root()))

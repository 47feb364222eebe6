"""Example explanations on the Method and Compare pages: each (task, method)'s examples file read,
checked, drawn (``pictures.py``) and shown, and the records the Compare page pairs.

Drawing is cached by the examples file's content hash (``st.cache_data``), so a page view only
reads and hashes a few small files; the records the Compare page pairs are cached by the task's
content key (``tables.Keys``), which changes whenever one of its records does. A bad file is one
line naming the file and the field, and a file made by other method code (or task version) than
the method's records on the board is not drawn: the line says so, since ``xaiboard run``
refreshes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from xaiboard.benchmark.examples import ExampleError, read_examples
from xaiboard.benchmark.record import RecordError, ResultRecord
from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import ui
from xaiboard.leaderboard.pictures import Picture, pictures
from xaiboard.leaderboard.plain import escape_markdown
from xaiboard.leaderboard.tables import BoardTables

LEGEND = (
    "Red: a positive score, blue: a negative one, as strong as the score is relative to the sample's largest. "
    "Green: the ground truth (outlined region, underlined token, haloed edge); orange: the explained node. "
    "A graph edge shows the larger score of its two directions."
)

#: said under pictures of samples explained on their own (a resumed run), not within their batch
ALONE = (
    "Explained on these samples alone (filled in by a resumed run), not within the evaluation batch: a method that "
    "draws random numbers or learns from its batch can differ from the explanation its scores are of."
)


@dataclass(frozen=True)
class Drawn:
    """One (task, method)'s pictures and what its file says it was made from."""

    pictures: list[Picture]
    modality: str
    sample_ids: list[int]
    method_hash: str
    task_version: str
    batch_size: int


@st.cache_data(max_entries=1024, show_spinner=False)
def _drawn(path: str, digest: str, _data: bytes) -> Drawn:
    """The pictures of the file ``path`` whose bytes ``_data`` hash to ``digest`` (the cache key)."""
    examples = read_examples(path, _data)
    meta = examples.meta
    return Drawn(pictures(examples), examples.modality, examples.sample_ids, meta["method_hash"],
                 meta["task_version"], meta["batch_size"])  # fmt: skip


def drawn(root: str, task: str, method: str) -> Drawn | None:
    """The (task, method)'s pictures, ``None`` without an examples file (``ExampleError`` if bad)."""
    path = ResultStore(root).examples_path(task, method)
    if not path.exists():
        return None
    data = path.read_bytes()
    return _drawn(str(path), hashlib.sha256(data).hexdigest(), data)


def stale(tables: BoardTables, task: str, method: str, found: Drawn) -> str:
    """Why ``found`` is not of the code and task version of the method's records here ("" if it is)."""
    provenance = tables.tasks[task].frames.get("provenance")
    if provenance is None:
        return ""
    mine = provenance[provenance["method"] == method]
    hashes, versions = set(mine["method_hash"]), set(mine["task_version"])
    if hashes and found.method_hash not in hashes:
        return (f"{task} / {method}: the examples were made by other code of the method (hash {found.method_hash}) "
                f"than its results ({', '.join(sorted(hashes))}); `xaiboard run` refreshes them")  # fmt: skip
    if versions and found.task_version not in versions:
        return f"{task} / {method}: the examples are of task version {found.task_version}, the results of {', '.join(sorted(versions))}"
    return ""


def current(root: str, tables: BoardTables, task: str, method: str) -> Drawn | None:
    """The (task, method)'s pictures if they can be shown; otherwise ``None``, after one plain line
    saying why (a bad or stale file; nothing when there is no file)."""
    try:
        found = drawn(root, task, method)
    except ExampleError as exc:
        ui.failed(str(exc))
        return None
    reason = "" if found is None else stale(tables, task, method, found)
    if reason:
        ui.plain_lines([reason])
        return None
    return found


def show_pictures(found: Drawn) -> None:
    """A row of image or graph pictures; texts one under the other (they need the width)."""
    if found.modality == "text":
        for picture in found.pictures:
            show_one(picture)
    else:
        for column, picture in zip(st.columns(len(found.pictures)), found.pictures):
            with column:
                show_one(picture)
    if found.batch_size == len(found.pictures):
        st.caption(ALONE)


def show_one(picture: Picture) -> None:
    """One picture and its caption (numbers only). Token HTML is the board's own markup around
    escaped tokens (``pictures.token_html``), shown with ``st.html``, which parses no Markdown."""
    if picture.kind == "png":
        st.image(picture.data, caption=picture.caption)
    else:
        st.html(picture.data)
        st.caption(picture.caption)


def show_method(root: str, tables: BoardTables, method: str) -> None:
    """The Method page's section: the method's pictures on every task that has them."""
    st.subheader("Example explanations")
    st.caption(LEGEND)
    shown = 0
    for task in tables.tasks:
        with ui.guarded(f"{task}: example explanations"):
            found = current(root, tables, task, method)
            if found is not None:
                st.markdown(f"**{escape_markdown(task)}**")
                show_pictures(found)
                shown += 1
    if not shown:
        st.text("No example explanations of this method can be shown (xaiboard run stores them beside the records).")


def show_side_by_side(root: str, tables: BoardTables, task: str, methods: Sequence[str]) -> None:
    """The Compare page's pictures: each method's row on the same samples (methods whose
    examples are of other samples than the first method's are left out, with a line saying so)."""
    rows = {}
    for method in methods:
        found = current(root, tables, task, method)
        if found is not None:
            rows[method] = found
    if not rows:
        st.text("None of these methods has example explanations stored for this task.")
        return
    reference = next(iter(rows.values())).sample_ids
    for method, found in rows.items():
        if found.sample_ids != reference:
            ui.plain_lines([f"{method}: its examples are of samples {found.sample_ids}, not {reference}"])
            continue
        st.markdown(f"**{escape_markdown(method)}**")
        show_pictures(found)


@st.cache_data(max_entries=256, show_spinner=False)
def task_records(root: str, task: str, method: str, task_key: str) -> dict[str, ResultRecord]:
    """The method's readable records on ``task`` by metric, for the task content ``task_key``
    (the cache key). A file that cannot be read, or sits in another method's place, is left out:
    the board lists it among its problems."""
    store = ResultStore(root)
    records = {}
    for path in sorted(Path(store.path(task, method, "any").parent).glob("*.json")):
        try:
            record = store.read_in_place(path)
        except (RecordError, ValueError):
            continue
        records[record.metric] = record
    return records

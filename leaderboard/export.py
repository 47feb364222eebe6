"""The board as static files: ``xaiboard board export DIR`` (for publishing without a server).

Writes, from the same tables the app shows (``tables.load``, so never stale numbers):

- ``index.html``: the overview, methods × tasks, each cell the method's family rank with its
  rank group, one table per modality and metric family, the caveats, links to the task pages;
- ``tasks/<task>.html``: a task's family ranks, per family the method × metric table with CIs,
  every metric's ranked table, the task card, the methods' cards, cost and provenance;
- ``csv/``: every table on those pages as CSV (linked under each table), ``xaiboard.json`` (the
  whole board).

The pages are plain HTML with inline style, no script and relative links, so ``index.html``
opens from disk. Everything in a results root is written by others: every text and every table
cell goes through ``html.escape``, so submitted text shows as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xaiboard.benchmark.atomic import atomic_write_text
from xaiboard.leaderboard.aggregate import FAMILIES
from xaiboard.leaderboard.shown import board_json, compact, display_table, file_stem, overview_grid
from xaiboard.leaderboard.tables import BoardTables, TaskTables

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }
th { background: #f3f3f3; }
.caveat { background: #fff4d6; padding: .3rem .6rem; }
.csv { font-size: .8rem; }
"""
GUIDE = (
    "Each cell is the method's mean rank over the metric family's metrics on that task (lower is better) and, "
    "in brackets, its rank group (methods in one group are not separated on every metric); families and "
    "tasks are never blended into one score. Control rows show what no information scores."
)
#: a task's supporting tables: (title, name in ``TaskTables.frames``)
TASK_EXTRAS = (("Settings the records were produced under", "card"), ("Methods on this task", "cards"),
               ("Cost per explanation", "cost"), ("Evaluation cost per metric (all methods)", "metric_cost"),
               ("Provenance", "provenance"))  # fmt: skip


@dataclass
class Page:
    """One HTML page being written, and the CSV files its tables link to (written with it)."""

    title: str
    #: the page's folder relative to the export root ("" or "tasks"), for relative links
    depth: int = 0
    parts: list[str] = field(default_factory=list)
    csvs: dict[str, str] = field(default_factory=dict)

    def add(self, tag: str, text: str, css: str = "") -> None:
        attribute = f' class="{css}"' if css else ""
        self.parts.append(f"<{tag}{attribute}>{html.escape(text)}</{tag}>")

    def link(self, href: str, text: str) -> None:
        self.parts.append(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a></p>')

    def table(self, data: pd.DataFrame, stem: str) -> None:
        """``data`` as an escaped HTML table, and its CSV (``csv/<stem>.csv``) linked below it."""
        self.parts.append(data.to_html(index=False, escape=True, na_rep="", border=0))
        self.csvs[f"{stem}.csv"] = data.to_csv(index=False)
        self.parts.append(f'<p class="csv"><a href="{"../" * self.depth}csv/{html.escape(stem)}.csv">CSV</a></p>')

    def html(self) -> str:
        head = f'<meta charset="utf-8"><title>{html.escape(self.title)}</title><style>{STYLE}</style>'
        return f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n" + "\n".join(self.parts) + "\n</body></html>\n"


def task_file(name: str) -> str:
    return f"tasks/{file_stem(name)}.html"


def overview_page(tables: BoardTables) -> Page:
    page = Page("xaiboard: overview")
    page.add("h1", "xaiboard: a leaderboard for explanation methods")
    page.add("p", GUIDE)
    overview = tables.overview()
    for family in (f for f in FAMILIES if f in set(overview["family"])):
        page.add("h2", f"Overview: {family}")
        for modality in sorted(set(overview["modality"])):
            tasks = sorted(set(overview.loc[overview["modality"] == modality, "task"]))
            page.add("h3", modality)
            page.table(overview_grid(overview, family, tasks, tables), file_stem("overview", modality, family))
            for task in tasks:
                if reason := tables.tasks[task].caveats.get(family):
                    page.add("p", f"{task}: {reason}", "caveat")
    page.add("h2", "Tasks")
    for name in tables.tasks:
        page.link(task_file(name), name)
    if tables.problems:
        page.add("h2", f"{len(tables.problems)} result file(s) or card(s) could not be read or are not shown")
        page.add("pre", "\n".join(" ".join(line.splitlines()) for line in tables.problems))
    page.link("xaiboard.json", "The whole board (JSON)")
    return page


def task_page(tables: BoardTables, name: str, task: TaskTables) -> Page:
    page = Page(f"xaiboard: {name}", depth=1)
    page.link("../index.html", "Overview")
    page.add("h1", f"Task {name}")
    show_error_lines(page, task.errors.values())
    if "family_ranks" in task.frames:
        page.add("h2", "Family ranks")
        page.table(task.frames["family_ranks"], file_stem(name, "family-ranks"))
    for family, metrics in task.families.items():
        page.add("h2", f"Family {family}")
        if family in task.caveats:
            page.add("p", task.caveats[family], "caveat")
        if "family_groups" in task.frames:
            page.table(compact(task, metrics, family), file_stem(name, "family", family))
        for metric in (m for m in metrics if f"metric:{m}" in task.frames):
            page.add("h3", f"{metric} ({task.directions.get(metric) or 'unknown'} is better)")
            shown = display_table(task.frames[f"metric:{metric}"], with_reference=tables.reference is not None)
            page.table(shown, file_stem(name, "metric", metric))
    registered = tables.task_cards.get(name)
    if registered:
        page.add("h2", "Task card")
        card = pd.DataFrame({"field": list(registered), "value": [str(v) for v in registered.values()]})
        page.table(card, file_stem(name, "task-card"))
    for title, key in (extra for extra in TASK_EXTRAS if extra[1] in task.frames):
        page.add("h2", title)
        page.table(task.frames[key], file_stem(name, key))
    return page


def show_error_lines(page: Page, lines: Iterable[str]) -> None:
    lines = list(lines)
    if lines:
        page.add("p", "These tables could not be computed:")
        page.add("pre", "\n".join(" ".join(line.splitlines()) for line in lines))


def export(tables: BoardTables, out: Path | str) -> list[Path]:
    """Write the board's static pages, CSVs and JSON under ``out``; the files written."""
    out = Path(out)
    pages = {"index.html": overview_page(tables)}
    pages.update({task_file(name): task_page(tables, name, task) for name, task in tables.tasks.items()})
    written = []
    for path, page in pages.items():
        written.append(atomic_write_text(out / path, page.html()))
        written.extend(atomic_write_text(out / "csv" / stem, text) for stem, text in page.csvs.items())
    written.append(atomic_write_text(out / "xaiboard.json", board_json(tables) + "\n"))
    return written

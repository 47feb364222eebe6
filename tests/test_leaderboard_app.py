"""The Streamlit app end to end (``AppTest``) over results roots of synthetic files: ranked
tables, task switching, not-applicable rows, every page, and a root full of bad and hostile
files; the Metrics and Reproductions pages; and every page over the committed results."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from PIL import Image
from test_leaderboard import CARDS, CONTROL, METRIC, SHAPES, SHAPES_ORDER, card, record, write_root
from test_leaderboard_tables import AGREEMENT

from xaiboard.benchmark.paths import REPRODUCTIONS_FOLDER, submissions_dir
from xaiboard.benchmark.reproductions.base import RECORD_SCHEMA, Measured, Published, Reproduction, run_reproduction
from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import aggregate, repro_records, tables

APP = Path(aggregate.__file__).with_name("app.py")
LINK = "[link](https://example.com)"
SCRIPT = "<script>alert(1)</script>"
#: what would show that submitted text became markup: link syntax, its target, the script
HOSTILE = ("](", "example.com", "<script", "alert(1)", "onerror")
#: element types that render their text as plain text (dataframe cells are drawn, not parsed)
PLAIN = {"text", "code", "dataframe"}


PAGES = ("views/overview.py", "views/task.py", "views/method.py", "views/compare.py", "views/cost.py", "views/metrics.py",
         "views/reproductions.py")


def open_app(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app's first render (the Overview page) over ``root``."""
    monkeypatch.setenv("XAIBOARD_SUBMISSIONS", str(root))
    return AppTest.from_file(str(APP), default_timeout=60).run()


def run_app(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The Task page over ``root`` with every metric's ranked table shown."""
    at = open_app(root, monkeypatch).switch_page("views/task.py").run()
    if at.toggle:
        at.toggle(key="details").set_value(True).run()
    return at


def ranking_tables(at: AppTest) -> list[pd.DataFrame]:
    return [frame.value for frame in at.dataframe if "95% CI" in frame.value.columns]


def card_tables(at: AppTest) -> list[pd.DataFrame]:
    return [frame.value for frame in at.dataframe if "description" in frame.value.columns]


def plain_text(at: AppTest) -> str:
    """Everything the page shows as plain text: text and code elements, dataframe cells."""
    cells = [frame.value.astype(str).to_csv() for frame in at.dataframe]
    return "\n".join([*(t.value for t in at.text), *(c.value for c in at.code), *cells])


def marked_up(at: AppTest) -> list[str]:
    """The serialised element of every node that is not a plain-text element: whatever Markdown
    body, label, option or help it renders."""
    nodes = [node for node in at._tree if getattr(node, "type", "") not in PLAIN]
    return [str(node.proto) for node in nodes if getattr(node, "proto", None) is not None]


# text/planted: weak is best here, so switching task must change the order.
PLANTED = [
    record("weak", (0.93, 0.97), task="text/planted"),
    record("good", (0.50, 0.70), task="text/planted"),
    record("random", (0.45, 0.55), task="text/planted"),
]


def test_app_shows_ranked_tables_and_switches_task(tmp_path, monkeypatch):
    write_root(tmp_path, SHAPES + PLANTED)
    bad = tmp_path / "bad" / "results" / "image" / "shapes" / f"{METRIC}.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"task": ')
    at = run_app(tmp_path, monkeypatch)
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "image/shapes"
    (table,) = ranking_tables(at)
    assert table["method"].tolist() == SHAPES_ORDER
    assert table["rank"].tolist() == [1, 1, 2, 3, 3, 6]
    assert table["95% CI"].tolist()[:3] == ["[0.85, 0.95]", "[0.7, 0.88]", "[0.45, 0.8]"]
    assert table["control"].tolist() == [m in (CONTROL, "random") for m in SHAPES_ORDER]
    assert table["vs random"].tolist() == ["beats random", "beats random", "does not beat random",
                                           "does not beat random", "", ""]  # fmt: skip
    assert table["status"].tolist()[-1] == "error" and table["note"].tolist()[-1] == "broken exploded"
    assert [e.value for e in at.error] == ["1 method(s) failed on this metric; they count as ranked last:"]
    assert "broken: broken exploded" in [c.value for c in at.code]
    assert any("Share of planted tokens" in c.value and "higher is better" in c.value for c in at.caption)
    assert any(c.value.startswith(f"{bad}: invalid JSON") for c in at.code)

    at.sidebar.selectbox[0].set_value("text/planted").run()
    assert not at.exception
    (table,) = ranking_tables(at)
    assert table["method"].tolist() == ["weak", "good", "random"]
    assert table["95% CI"].tolist() == ["[0.93, 0.97]", "[0.5, 0.7]", "[0.45, 0.55]"]
    assert not at.error


def test_app_without_a_random_card_has_no_random_columns(tmp_path, monkeypatch):
    """Also: a cost family beside the task's cost table (each gets its own download)."""
    cost = [record(m, (0.1, 0.2), metric="cost_passes", family="cost", direction="lower") for m in ("good", "weak")]
    write_root(tmp_path, SHAPES + cost, {})
    at = run_app(tmp_path, monkeypatch)
    assert not at.exception
    table, cost_table = ranking_tables(at)
    assert cost_table["method"].tolist() == ["good", "weak"]
    assert "vs random" not in table.columns and "p (paired, vs random)" not in table.columns
    assert not table["control"].any() and not [e.value for e in at.error if "could not be shown" in e.value]


def test_app_without_results_says_so(tmp_path, monkeypatch):
    at = run_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "No results found" in at.info[0].value
    assert not at.dataframe


def test_a_part_that_fails_is_one_plain_line_and_the_page_goes_on(tmp_path, monkeypatch):
    """Whatever no check foresaw: the family ranks and the metric table fail, the rest shows."""

    def broken(*args: object) -> None:
        raise RuntimeError("unforeseen\nsecond line")

    monkeypatch.setattr(aggregate, "leaderboard_table", broken)
    write_root(tmp_path, SHAPES)
    at = run_app(tmp_path, monkeypatch)
    assert not at.exception
    assert [e.value for e in at.error] == ["This part of the page could not be shown:"] * 2
    lines = [c.value for c in at.code]
    assert lines == ["image/shapes: family ranks: RuntimeError: unforeseen second line",
                     f"image/shapes/{METRIC}: RuntimeError: unforeseen second line"]  # fmt: skip
    assert any("passes" in frame.value.columns for frame in at.dataframe)  # the cost table


def test_not_applicable_record_renders_with_its_reason(tmp_path, monkeypatch):
    reason = "needs to re-run the method; explanations were precomputed"
    spread = [record(m, ci, metric="spread", family="robustness", direction="lower", reason=why)
              for m, ci, why in [("good", (0.1, 0.2), None), ("random", (0.3, 0.4), None), ("pre", None, reason)]]  # fmt: skip
    write_root(tmp_path, SHAPES + spread + [record("pre", (0.5, 0.6))], {**CARDS, "pre": card("pre", kind="precomputed")})
    at = run_app(tmp_path, monkeypatch)
    assert not at.exception
    table = next(t for t in ranking_tables(at) if "pre" in t["method"].tolist() and len(t) == 3).set_index("method")
    assert table.loc["pre", "status"] == "not applicable" and table.loc["pre", "note"] == reason
    assert pd.isna(table.loc["pre", "rank"]) and table.loc["pre", "vs random"] == ""
    assert [e.value for e in at.error] == ["1 method(s) failed on this metric; they count as ranked last:"]  # broken only
    family = next(frame.value for frame in at.dataframe if "robustness" in frame.value.columns).set_index("method")
    assert pd.isna(family.loc["pre", "robustness"]) and family.loc["good", "robustness"] == 1.0
    (cards,) = card_tables(at)
    assert cards.set_index("method").loc["pre", "kind"] == "precomputed"


def test_task_page_survives_bad_records(tmp_path, monkeypatch):
    """Valid records and cards for a few methods (``random`` the random control), plus: a record
    whose direction is ``sideways``, one with string scores, a folder ``evil/`` whose record
    claims to be ``saliency``'s, a folder named like an HTML element, a card whose name is link
    syntax, and a method whose card description and error message carry a link and a script.
    The page renders, lists each bad file exactly once, shows the hostile text as plain text,
    and renders no link or HTML from it."""
    hostile = f"{LINK} {SCRIPT}"
    valid = [record("saliency", (0.85, 0.95)), record("random", (0.40, 0.60)), record(CONTROL, (0.42, 0.62)),
             record("edgy", None), record("sideways", (0.5, 0.6)), record("strings", (0.5, 0.6))]  # fmt: skip
    cards = {**CARDS, "saliency": card("saliency", description="Gradient magnitude."),
             "edgy": card("edgy", description=hostile, authors=SCRIPT, paper=LINK, url="javascript:alert(1)")}  # fmt: skip
    write_root(tmp_path, [replace(valid[3], error=hostile), *valid[:3], *valid[4:]], cards)
    store = ResultStore(tmp_path)
    sideways, strings = store.path("image/shapes", "sideways", METRIC), store.path("image/shapes", "strings", METRIC)
    _edit(sideways, direction="sideways")
    _edit(strings, scores=["0.5", "0.6"])
    evil = store.path("image/shapes", "evil", METRIC)
    evil.parent.mkdir(parents=True)
    evil.write_text(store.path("image/shapes", "saliency", METRIC).read_text().replace("0.9", "1.0"))
    html_folder = "<img src=x onerror=alert(1)>"
    store.write(record(html_folder, (0.99, 1.0)))
    html_record = store.path("image/shapes", html_folder, METRIC)
    bad_card = tmp_path / "linked" / "method.json"
    bad_card.parent.mkdir()
    bad_card.write_text(json.dumps({"name": LINK, "description": SCRIPT}))

    at = run_app(tmp_path, monkeypatch)
    assert not at.exception

    (problems,) = [c.value for c in at.code if str(tmp_path) in c.value]
    lines = problems.splitlines()
    for path in (sideways, strings, evil, html_record, bad_card):
        assert sum(line.startswith(f"{path}: ") for line in lines) == 1, path
    assert len(lines) == 5

    (table,) = ranking_tables(at)
    assert table["method"].tolist() == ["saliency", CONTROL, "random", "edgy"]  # one saliency row, its own
    assert table.set_index("method").loc["saliency", "mean"] == pytest.approx(0.90)
    assert table.set_index("method").loc["edgy", "note"] == hostile

    for element in marked_up(at):
        assert not any(marker in element for marker in HOSTILE), element
    shown = plain_text(at)
    assert f"edgy: {hostile}" in shown and hostile in card_tables(at)[0].set_index("method").loc["edgy", "description"]

    at.switch_page("views/method.py").run()
    at.sidebar.selectbox(key="method").set_value("edgy").run()
    assert not at.exception and hostile in plain_text(at)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page
        for element in marked_up(at):
            assert not any(marker in element for marker in HOSTILE), (page, element)


def _edit(path: Path, **fields: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_overview_shows_family_rank_groups_by_modality_and_the_caveat(tmp_path, monkeypatch):
    """image/shapes: good and okay share group 1; graph/ba-shapes: the model-independent
    control ranks first, so faithfulness is marked uninformative there. Controls stay when the
    method-family filter drops every other method."""
    graph = [record(CONTROL, (0.90, 0.95), task="graph/ba-shapes"), record("good", (0.1, 0.2), task="graph/ba-shapes")]
    write_root(tmp_path, SHAPES + PLANTED + graph)
    at = open_app(tmp_path, monkeypatch)
    assert not at.exception
    graph_table, image, text = [frame.value.set_index("method") for frame in at.dataframe]
    assert [h.value for h in at.subheader][:3] == ["graph", "image", "text"]
    assert image.loc["good", "image/shapes"] == "1.00 (group 1)" and image.loc["okay", "image/shapes"] == "1.00 (group 1)"
    assert image.loc["weak", "image/shapes"] == "2.00 (group 2)"  # only good's interval is above weak's
    assert text.index.tolist() == ["weak", "good", "random"]
    assert graph_table.index.tolist() == [CONTROL, "good"]
    (caveat,) = [w.value for w in at.warning]
    assert caveat.startswith("graph\\/ba\\-shapes\\: uninformative for this task\\: the control")
    at.multiselect(key="method_family").set_value([]).run()
    _, image, text = [frame.value.set_index("method") for frame in at.dataframe]
    assert image.index.tolist() == [CONTROL, "random"] and text.index.tolist() == ["random"]
    assert len(at.get("download_button")) == 5  # one per table, and the two whole-board bundles


def test_every_page_renders_on_the_committed_results(monkeypatch):
    """The committed board, on every page, from its precomputed statistics (``xaiboard board
    build`` keeps them current; stale ones would be recomputed, correct but slow). No part of a
    page fails (a failing part is an error element, not an exception)."""
    root = submissions_dir()
    stored, why = tables.read_stored(root / tables.TABLES_FILE)
    current = stored is not None and stored.keys == tables.content_keys(root)
    assert current, f"{root / tables.TABLES_FILE} is missing or stale ({why or 'records or board code changed'}): run `xaiboard board build` and commit it"
    at = open_app(root, monkeypatch)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not at.info, [i.value for i in at.info]  # no "Statistics recomputed" notice
    assert "saliency" in at.dataframe[0].value["method"].tolist()
    for page in PAGES[1:]:
        at.switch_page(page).run()
        assert not at.exception and not at.error, (page, [c.value for c in at.code])
    at.switch_page("views/task.py").run()
    at.toggle(key="details").set_value(True).run()
    assert not at.exception and any("95% CI" in frame.value.columns for frame in at.dataframe)
    assert [e.value for e in at.error if "could not be shown" in e.value] == []


def test_metrics_page_shows_the_agreement_heatmap_the_disagreeing_pairs_and_the_definitions(tmp_path, monkeypatch):
    write_root(tmp_path, AGREEMENT)
    at = open_app(tmp_path, monkeypatch).switch_page("views/metrics.py").run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 1
    disagreeing = next(f.value for f in at.dataframe if "metric_b" in f.value.columns and "family" in f.value.columns)
    assert disagreeing[["metric_a", "metric_b"]].values.tolist()[0] == [METRIC, "mirrored"]
    assert set(disagreeing["spearman"]) == {-1.0}
    metrics = next(f.value for f in at.dataframe if "checked against" in f.value.columns).set_index("metric")
    assert metrics.loc[METRIC, "definition"] == "Share of planted tokens the test explainer finds."
    assert metrics.loc[METRIC, "reference"] == "Test et al. 2024" and metrics.loc[METRIC, "direction"] == "higher is better"
    assert metrics.loc["mirrored_lower", "definition"] == "not a metric registered in this installation"
    assert metrics.loc["mirrored_lower", "direction"] == "lower is better"


class _ToyReproduction(Reproduction):
    """Three cells with known verdicts; its reason for the gap is hostile text; it draws a plot."""

    name = "toy-table"
    paper, table, data, model, samples, metric = "Toy et al. 2024", "Table 1", "none", "none", "all", "AUC"
    published = (Published("close", "auc", "Table 1", value=0.9, spread=0.02), Published("far", "auc", "Table 1", value=0.9),
                 Published("claimed", "curve", "Fig. 2", claim="decays"))  # fmt: skip
    known_gaps = {"far": f"{LINK} {SCRIPT}"}

    def measure(self, seeds, quick, progress, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(out_dir / f"{self.name}-curves.png")
        return {("close", "auc"): Measured([0.90, 0.91]), ("far", "auc"): Measured([0.5, 0.5]),
                ("claimed", "curve"): Measured([0.1, 0.1], holds=True, evidence={"curve": [1.0, 0.5, 0.1]})}  # fmt: skip


def test_reproductions_page_shows_each_record_its_plots_and_the_unreadable_ones(tmp_path, monkeypatch):
    """A record as ``xaiboard reproduce`` writes it, plus: a file that is not JSON, a record whose
    name is not its file's, a PNG that is none and one named like markup. The table and plot
    show, the bad files are one plain line each, the hostile reason stays plain text."""
    write_root(tmp_path, SHAPES)
    run_reproduction(_ToyReproduction(), seeds=2, quick=False, results_dir=tmp_path, progress=False, log=lambda _: None)
    folder = tmp_path / REPRODUCTIONS_FOLDER
    (folder / "broken.json").write_text("{not json")
    (folder / "renamed.json").write_text((folder / "toy-table.json").read_text())
    (folder / "toy-table-fake.png").write_text(SCRIPT)
    Image.new("RGB", (8, 8)).save(folder / "toy-table-[x](y).png")

    at = open_app(tmp_path, monkeypatch).switch_page("views/reproductions.py").run()
    assert not at.exception and not at.error
    (summary,) = [f.value for f in at.dataframe if "reproduction" in f.value.columns]
    assert summary.values.tolist() == [["toy-table", "within the paper's spread: 1, off: 1, holds: 1", 2, 0, False,
                                        "Toy et al. 2024", "Table 1"]]  # fmt: skip
    (table,) = [f.value for f in at.dataframe if "verdict" in f.value.columns]
    assert table["ours (mean ± std)"].tolist() == ["0.905 ± 0.005", "0.500 ± 0.000", "0.100 ± 0.000"]
    assert table["difference"].tolist()[:2] == pytest.approx([0.005, -0.4]) and pd.isna(table["difference"].iloc[2])
    assert table["reason"].tolist()[1] == f"{LINK} {SCRIPT}"
    assert len(at.get("image")) == 1
    (problems,) = [c.value for c in at.code if "broken.json" in c.value]
    assert problems.splitlines() == [f"{folder / 'broken.json'}: invalid JSON (Expecting property name enclosed in "
                                     "double quotes at line 1 column 2)",
                                     f"{folder / 'renamed.json'}: field 'name' 'toy-table' is not a plain name equal "
                                     "to the file's name"]  # fmt: skip
    for element in marked_up(at):
        assert not any(marker in element for marker in HOSTILE), element


@pytest.mark.parametrize("make_folder", [False, True])
def test_reproductions_page_without_records_says_so(tmp_path, monkeypatch, make_folder):
    write_root(tmp_path, SHAPES)
    if make_folder:
        (tmp_path / REPRODUCTIONS_FOLDER).mkdir()
    at = open_app(tmp_path, monkeypatch).switch_page("views/reproductions.py").run()
    assert not at.exception and not at.error
    assert [i.value for i in at.info][1:] == [
        f"No reproduction records under this results folder: `xaiboard reproduce NAME --results-dir DIR` writes them "
        f"to DIR/{REPRODUCTIONS_FOLDER}/."
    ]  # fmt: skip
    assert str(tmp_path / REPRODUCTIONS_FOLDER) in [c.value for c in at.code]


def test_the_board_reads_records_of_the_schema_reproductions_write():
    assert repro_records.SCHEMA == RECORD_SCHEMA

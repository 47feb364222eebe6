"""The board's checks: records must agree with the metric registry and with each other, carry
plain names and be unique; every rejected file is one problem line; the board imports no
method code (no Captum, no PyG)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from test_leaderboard import CARDS, METRIC, SHAPES, card, record, write_root

from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import aggregate
from xaiboard.leaderboard.board import load_board, make_board


def test_a_record_must_carry_its_registered_metrics_direction_and_family(tmp_path):
    flipped = replace(SHAPES[0], direction="lower")
    moved = replace(SHAPES[2], family="robustness")
    write_root(tmp_path, [flipped, moved, *SHAPES[3:]])
    board = load_board(tmp_path)
    path = lambda r: ResultStore(tmp_path).path(r.task, r.method, r.metric)  # noqa: E731
    assert board.problems == (  # in the order of the files: good/ before weak/
        f"{path(moved)}: field 'family' is 'robustness' but metric '{METRIC}' has 'faithfulness'",
        f"{path(flipped)}: field 'direction' is 'lower' but metric '{METRIC}' has 'higher'",
    )
    assert {r.method for r in board.records} == {"broken", "okay", "lb_test_control"}


def test_an_unregistered_metric_takes_the_direction_most_of_its_records_carry():
    records = [record(m, (0.1, 0.2), metric="spread", direction="lower") for m in ("a", "b")]
    board = make_board([*records, record("c", (0.1, 0.2), metric="spread", direction="higher")])
    assert board.problems == ("image/shapes/c/spread: field 'direction' is 'higher' but metric 'spread' has 'lower'",)
    assert aggregate.direction_of(board, "image/shapes", "spread") == "lower"


def test_names_that_are_not_plain_names_are_rejected(tmp_path):
    """The store accepts any folder name; the board only names it, it never shows it."""
    odd = record("<img src=x onerror=alert(1)>", (0.1, 0.2))
    write_root(tmp_path, [SHAPES[0], odd], {})
    board = load_board(tmp_path)
    path = ResultStore(tmp_path).path(odd.task, odd.method, odd.metric)
    assert board.problems == (f"{path}: field 'method' '<img src=x onerror=alert(1)>' is not a valid name",)
    assert [r.method for r in board.records] == ["weak"]


def test_duplicate_records_are_reported_and_none_of_them_is_shown():
    board = make_board([SHAPES[0], replace(SHAPES[0], seed=1), SHAPES[1]])
    assert board.problems == (f"image/shapes/weak/{METRIC}: 2 records for one task, method and metric; none is shown",)
    assert [r.method for r in board.records] == ["random"]


def test_every_bad_record_or_card_file_is_one_problem_line(tmp_path):
    write_root(tmp_path, SHAPES, {**CARDS, "weak": card("weak")})
    store = ResultStore(tmp_path)
    bad_record = store.path("image/shapes", "good", METRIC)
    bad_record.write_text(bad_record.read_text().replace('"higher"', '"sideways"'))
    bad_card = tmp_path / "weak" / "method.json"
    bad_card.write_text(json.dumps({"name": "weak", "control": "yes"}))
    board = load_board(tmp_path)
    assert len(board.problems) == 2
    assert board.problems[0].startswith(f"{bad_record}: field 'direction'")
    assert board.problems[1] == f"{bad_card}: field 'control' has type str"
    assert "good" not in {r.method for r in board.records} and "weak" not in board.cards


def test_the_board_imports_no_method_code():
    """Importing the board and its aggregation loads neither the methods nor Captum nor PyG."""
    check = (
        "import sys, xaiboard.leaderboard.aggregate, xaiboard.leaderboard.board, xaiboard.leaderboard.tables; "
        "loaded = [m for m in ('captum', 'torch_geometric', 'xaiboard.methods') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", check], check=True)


def test_no_leaderboard_module_imports_methods():
    """Also the app, which the subprocess check cannot import (it renders on import). That no
    method *name* is special is checked by renaming the random reference (test_leaderboard)."""
    for path in Path(aggregate.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] in ("captum", "torch_geometric")}, path
        assert not {m for m in imported if m.startswith(("xaiboard.methods", "methods"))}, path

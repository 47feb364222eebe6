"""What keeps the app's first render and reruns fast, without trading correctness: showing
precomputed tables loads no torch or scipy; stored tables become data frames only when shown;
the memo of file hashes reads a file again only when its signature changed, so a hand edit is
still noticed."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
from test_leaderboard import METRIC, SHAPES, write_root

from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import tables


def test_the_modules_that_show_precomputed_tables_load_no_torch_or_scipy():
    modules = ["ui", "tables", "aggregate", "board", "shown", "export"]
    code = f"import sys; import {', '.join(f'xaiboard.leaderboard.{m}' for m in modules)}; " \
           "print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))"  # fmt: skip
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"


def test_stored_tables_are_made_into_frames_when_asked_for_and_equal_the_built_ones(tmp_path):
    write_root(tmp_path, SHAPES)
    built = tables.compute(tables.load_board(tmp_path), tables.content_keys(tmp_path))
    tables.build(tmp_path)
    loaded, _ = tables.read_stored(tmp_path / tables.TABLES_FILE)
    frames = loaded.tasks["image/shapes"].frames
    assert isinstance(frames, tables.StoredFrames) and not frames._made
    assert set(frames) == set(built.tasks["image/shapes"].frames)
    pd.testing.assert_frame_equal(frames[f"metric:{METRIC}"], built.tasks["image/shapes"].frames[f"metric:{METRIC}"])
    assert list(frames._made) == [f"metric:{METRIC}"] and frames[f"metric:{METRIC}"] is frames[f"metric:{METRIC}"]


def test_a_stored_table_whose_rows_do_not_fit_its_columns_is_not_trusted(tmp_path):
    write_root(tmp_path, SHAPES)
    path, _ = tables.build(tmp_path)
    data = json.loads(path.read_text())
    data["tasks"]["image/shapes"]["frames"]["cost"]["data"][0].append("extra")
    path.write_text(json.dumps(data))
    assert "could not be read (ValueError)" in tables.load(tmp_path)[1]


def test_the_hash_memo_reads_only_changed_files_and_notices_a_hand_edit(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "SETTLED_NS", -1)  # remember even files written just now
    write_root(tmp_path, SHAPES)
    check = tmp_path / tables.CHECKS_FOLDER / "image%2Fshapes.json"  # a task check is hashed too
    check.parent.mkdir()
    check.write_text("{}")
    memo: tables.Digests = {}
    first = tables.content_keys(tmp_path, memo)
    assert first == tables.content_keys(tmp_path) and len(memo) == len(tables._data_files(tmp_path)) + 1
    read = []  # the data files read (the board's code is hashed on every call)
    original = tables.Path.read_bytes
    monkeypatch.setattr(tables.Path, "read_bytes", lambda self: read.extend([self.name] * (self.suffix == ".json")) or original(self))
    assert tables.content_keys(tmp_path, memo) == first and read == []  # nothing changed: nothing read
    edited = ResultStore(tmp_path).path("image/shapes", "good", METRIC)
    data = json.loads(edited.read_text())
    data["summary"]["mean"] = 0.123456789  # another size: its signature changes in any clock tick
    edited.write_text(json.dumps(data))
    again = tables.content_keys(tmp_path, memo)
    assert read == [edited.name] and again != first and again == tables.content_keys(tmp_path)


def test_a_file_changed_just_now_is_not_remembered(tmp_path):
    write_root(tmp_path, SHAPES)
    memo: tables.Digests = {}
    tables.content_keys(tmp_path, memo)
    assert memo == {}  # every file is younger than SETTLED_NS: a same-tick edit could go unseen

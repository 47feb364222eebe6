"""The Method page's example explanations and the Compare page (``AppTest``) on a constructed
results root: a toy run's records and image examples (written by the runner), plus hand-written
text and graph records and examples, a hostile token, a stale file and a broken one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_leaderboard import record
from test_runner import Counted, Gradient, KeepTop, Top1InGroundTruth, run_toy

from toy_task import ToyTask
from xaiboard.benchmark.examples import write_examples
from xaiboard.benchmark.stats import paired_permutation_pvalue
from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import aggregate, tables
from xaiboard.leaderboard.paired import P_COLUMN

APP = Path(aggregate.__file__).with_name("app.py")
SCRIPT = "<script>alert(1)</script>"
METHODS = ("test-gradient", "test-magnitude")
#: graph/ba-shapes' per-sample scores: test-gradient is better on every sample, by 0.34 on average
GRAPH_SCORES = ([0.9, 0.8, 0.7, 0.95, 0.85], [0.5, 0.6, 0.4, 0.55, 0.45])


def _meta(task: str, modality: str, method: str, method_hash: str) -> dict:
    return {"task": task, "task_version": "1.0", "task_fingerprint": "f", "modality": modality, "method": method,
            "method_hash": method_hash, "seed": 0, "batch_size": 32}  # fmt: skip


TEXT = {"sample_ids": np.array([3, 4]), "targets": np.array([1, 0]), "tokens": np.array([["[CLS]", SCRIPT, "good"], ["[CLS]", "bad", "film"]]),
        "valid": np.array([[False, True, True], [False, True, True]]), "scores": np.array([[0.0, 0.2, 0.9], [0.0, -0.5, 0.1]], dtype=np.float32),
        "ground_truth": np.array([[False, False, True], [False, True, False]])}  # fmt: skip
GRAPH = {"sample_ids": np.array([10]), "targets": np.array([1]), "valid": np.ones((1, 4), dtype=bool),
         "scores": np.array([[0.9, 0.8, 0.1, 0.0]], dtype=np.float32), "edge_index": np.array([[0, 1, 1, 2], [1, 0, 2, 1]]),
         "edge_sample": np.zeros(4, dtype=np.int64), "edge_slot": np.arange(4), "node_counts": np.array([3]),
         "center": np.array([0]), "ground_truth": np.array([[True, True, False, False]])}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy run (image examples by the runner), text/planted (both methods, one file broken)
    and graph/ba-shapes (test-gradient current, test-magnitude's made by other code)."""
    base = tmp_path_factory.mktemp("board")
    run_toy(ToyTask(), [Counted(), Gradient()], [KeepTop(), Top1InGroundTruth()], base)
    results = base / "results"
    store = ResultStore(results)
    for method, ci, scores in zip(METHODS, [(0.8, 0.9), (0.4, 0.5)], GRAPH_SCORES):
        store.write(record(method, ci, task="text/planted"))
        store.write(replace(record(method, ci, task="graph/ba-shapes"), scores=scores, sample_ids=list(range(5))))
    write_examples(store.examples_path("text/planted", "test-gradient"),
                   _meta("text/planted", "text", "test-gradient", "hash-test-gradient"), TEXT)  # fmt: skip
    store.examples_path("text/planted", "test-magnitude").write_bytes(b"PK\x03\x04 torn")
    for method, made_by in zip(METHODS, ["hash-test-gradient", "old-code"]):
        write_examples(store.examples_path("graph/ba-shapes", method), _meta("graph/ba-shapes", "graph", method, made_by), GRAPH)
    tables.build(results)
    return results


def open_page(root: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> AppTest:
    monkeypatch.setenv("XAIBOARD_SUBMISSIONS", str(root))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    return at.switch_page(page).run()


def images(at: AppTest) -> list:
    return at.get("image")


def htmls(at: AppTest) -> list[str]:
    return [element.proto.body for element in at.get("html")]


def test_method_page_draws_every_modality_and_reports_bad_and_stale_files(root, monkeypatch):
    at = open_page(root, monkeypatch, "views/method.py")
    at.sidebar.selectbox(key="method").set_value("test-magnitude").run()
    assert not at.exception
    assert len(images(at)) == 4  # the toy image examples; the graph's are stale
    broken = str(ResultStore(root).examples_path("text/planted", "test-magnitude"))
    lines = [c.value for c in at.code]
    assert any(line.startswith(f"{broken}: cannot read as .npz") for line in lines), lines
    assert any("graph/ba-shapes / test-magnitude: the examples were made by other code of the method (hash old-code)" in line
               for line in lines)  # fmt: skip

    at.sidebar.selectbox(key="method").set_value("test-gradient").run()
    assert not at.exception and not at.error
    assert len(images(at)) == 4 + 1  # toy/linear's and graph/ba-shapes' one sample
    (text, other) = htmls(at)
    assert "<script" not in text + other and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "border-bottom" in text  # the ground-truth token


def test_compare_page_shows_both_methods_and_the_paired_test(root, monkeypatch):
    at = open_page(root, monkeypatch, "views/compare.py")
    at.sidebar.selectbox(key="compare_task").set_value("toy/linear").run()
    at.sidebar.multiselect(key="compare_methods").set_value(list(METHODS)).run()
    assert not at.exception and not at.error
    assert len(images(at)) == 2 * 4  # one row of pictures per method, on the same samples
    (table,) = [frame.value for frame in at.dataframe if P_COLUMN in frame.value.columns]
    row = table.set_index("metric").loc["test-keep-top"]
    store = ResultStore(root)
    a, b = (store.find("toy/linear", m, "test-keep-top") for m in METHODS)
    difference = np.mean(np.asarray(a.scores) - np.asarray(b.scores))
    assert row["difference (test-gradient - test-magnitude)"] == pytest.approx(difference, rel=1e-12)  # float64 means
    assert row[P_COLUMN] == paired_permutation_pvalue(a.scores, b.scores, "higher", seed=0, two_sided=True)
    assert row["pairs"] == 16 and row["note"] == ""

    at.sidebar.selectbox(key="compare_task").set_value("graph/ba-shapes").run()
    (table,) = [frame.value for frame in at.dataframe if P_COLUMN in frame.value.columns]
    row = table.iloc[0]
    assert row["difference (test-gradient - test-magnitude)"] == pytest.approx(0.34, abs=1e-12)  # float64 sums
    assert row[P_COLUMN] == pytest.approx(2 / 2**5)  # exact test: only "all pairs as they are" and "all swapped" are as extreme
    assert row["better"] == "test-gradient" and row["pairs"] == 5

    at.sidebar.selectbox(key="compare_task").set_value("text/planted").run()
    assert not at.exception
    assert len(htmls(at)) == 2  # test-gradient's two texts; test-magnitude's file is broken (one line)
    (table,) = [frame.value for frame in at.dataframe if P_COLUMN in frame.value.columns]
    assert table["note"].tolist() == ["not scored on the same samples (task version, seed or sample count differ), or fewer than 2 finite pairs"]


def test_compare_page_asks_for_two_methods(root, monkeypatch):
    at = open_page(root, monkeypatch, "views/compare.py")
    at.sidebar.multiselect(key="compare_methods").set_value(["test-gradient"]).run()
    assert not at.exception and "Choose two or more methods" in at.info[-1].value

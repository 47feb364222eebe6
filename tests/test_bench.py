"""``xaiboard bench`` at tiny sizes: values agree with Quantus on an image, a text and a graph
task, rows that cannot agree say why and carry no ratio, the table has its columns.

Timings are printed, never asserted: they depend on the machine and its load.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import xaiboard.benchmark.metrics
import xaiboard.methods
import xaiboard.tasks  # noqa: F401
from click.testing import CliRunner
from xaiboard.benchmark.bench import (
    CASES,
    CORRELATION_TOLERANCE,
    COLUMNS,
    QUANTUS_BATCH,
    TASK_NAMES,
    TIE_BREAK,
    TOLERANCE,
    bench,
    curve_steps,
    same_size_batch,
    untied,
)
from xaiboard.benchmark.cli import main
from xaiboard.benchmark.registry import TASKS

METRICS = ["deletion_auc", "faithfulness_correlation", "max_sensitivity", "local_lipschitz", "mprt", "sparseness"]


@pytest.fixture(scope="module")
def table():
    return bench(sizes=[4], metrics=METRICS, repeats=1, progress=False)


def test_every_task_has_its_metrics_and_a_suite_line(table) -> None:
    assert list(table.columns) == COLUMNS
    assert table["task"].unique().tolist() == list(TASK_NAMES)
    for _, rows in table.groupby("task", sort=False):
        assert rows["metric"].tolist()[:-1] == METRICS
        assert rows["metric"].iloc[-1] == f"suite ({rows['equal'].iloc[:-1].sum()} metrics, saliency)"
    assert table.set_index("task")["view"].to_dict() == {
        "image/digits": "pixels", "text/planted@1": "presence", "graph/ba-2motifs@1": "presence"
    }


def test_values_agree_with_quantus_where_the_view_allows_it(table) -> None:
    compared = table[table["note"] == ""]
    assert compared["equal"].all()
    exact = compared[compared["metric"].map(lambda name: name in CASES and CASES[name].tolerance == TOLERANCE)]
    assert (exact["max_diff"] <= TOLERANCE).all()
    assert (compared["max_diff"] <= CORRELATION_TOLERANCE).all()
    assert (compared[["ours_s", "quantus_s", "quantus/ours"]] > 0).all().all()
    agreed = set(map(tuple, compared[["task", "metric"]].values))
    shared = {"deletion_auc", "faithfulness_correlation", "max_sensitivity", "sparseness"}
    assert {(task, metric) for task in TASK_NAMES for metric in shared} <= agreed
    assert ("image/digits", "local_lipschitz") in agreed


def test_rows_that_cannot_agree_say_why_and_have_no_ratio(table) -> None:
    rest = table[table["note"] != ""].set_index(["task", "metric"])
    assert not rest["equal"].any() and rest["quantus/ours"].isna().all()
    for task in ("text/planted@1", "graph/ba-2motifs@1"):
        assert "input change" in rest.loc[(task, "local_lipschitz"), "note"]
        assert np.isnan(rest.loc[(task, "local_lipschitz"), "quantus_s"])  # Quantus was not run
        assert "different cascade" in rest.loc[(task, "mprt"), "note"]


def test_passes_are_counted_and_only_model_free_metrics_have_no_floor(table) -> None:
    rows = table[table["task"] == "image/digits"].set_index("metric")
    assert rows.loc["deletion_auc", "fwd"] == 4 * 17  # 16 steps + the full input, per sample
    assert rows.loc["deletion_auc", "bwd"] == 0
    assert rows.loc["max_sensitivity", "bwd"] > 0  # re-explanations take gradients
    assert rows.loc["sparseness", "fwd"] == 0 and np.isnan(rows.loc["sparseness", "floor_s"])
    assert np.isfinite(table.loc[table["fwd"] > 0, "ours/floor"]).all()


def test_the_suite_shares_re_explanations() -> None:
    robustness = ["max_sensitivity", "avg_sensitivity"]
    rows = bench(tasks=["image/digits"], sizes=[4], metrics=robustness, repeats=1, progress=False).set_index("metric")
    suite = rows.loc["suite (2 metrics, saliency)"]
    assert suite["equal"] and suite["bwd"] == rows.loc["max_sensitivity", "bwd"]  # one set of noisy explanations


def test_batches_have_one_feature_count() -> None:
    for name in ("text/planted@1", "graph/ba-2motifs@1"):
        task = TASKS.create(name)
        batch = same_size_batch(task, 16, seed=0)
        counts = batch.valid.sum(1)
        assert len(batch) == 16 and (counts == counts[0]).all()
        assert batch.valid.shape == task.valid_features(batch.inputs).shape


def test_curve_steps_divide_the_feature_count() -> None:
    assert curve_steps(1024) == 16 and curve_steps(20) == 20 and curve_steps(48) == 16 and curve_steps(17) == 17


def test_tie_breaking_keeps_our_order_and_makes_it_strict() -> None:
    explanation = torch.tensor([[0.0, 0.0, 1.0, 0.5, 0.0]])
    broken = untied(explanation)
    assert len(set(broken[0].tolist())) == 5
    assert broken[0].argsort(descending=True).tolist() == [2, 3, 0, 1, 4]  # ties by index, as ours
    assert (broken - explanation).abs().max() <= 5 * TIE_BREAK


def test_cli_writes_the_table_and_its_markdown(tmp_path) -> None:
    out = tmp_path / "bench.md"
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(
            main,
            ["bench", "--tasks", "text/planted@1", "--n", "4", "--repeats", "1", "--metrics", "sparseness", "--quiet",
             "--threads", "1", "--markdown", str(out)],
        )
    finally:
        torch.set_num_threads(threads)  # process-wide: leave other tests as they were
    assert result.exit_code == 0, result.output
    assert "with 1 intra-op threads" in result.output.splitlines()[0]
    assert "quantus/ours" in result.output and "suite (1 metrics, saliency)" in result.output
    assert out.read_text().startswith("| task | n | metric |")


def test_cli_without_quantus_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "quantus", None)  # makes ``import quantus`` fail
    result = CliRunner().invoke(main, ["bench", "--quick"])
    assert result.exit_code != 0
    assert 'pip install -e ".[dev]"' in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_random_draws_and_rows_reach_quantus_batch_by_batch() -> None:
    """Past Quantus's batch of 64 (and with a partial last batch) our draws still line up, and
    the presence view finds each batch's samples."""
    metrics = ["insertion_auc", "faithfulness_correlation", "avg_sensitivity", "random_logit"]
    table = bench(sizes=[QUANTUS_BATCH + 3], metrics=metrics, repeats=1, progress=False)
    assert (table["n"] == QUANTUS_BATCH + 3).all()
    assert table["equal"].all(), table[["task", "metric", "max_diff"]]

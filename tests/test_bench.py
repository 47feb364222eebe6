"""``xaiboard bench`` at tiny sizes: values agree with Quantus, the table has its columns.

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
from xaiboard.benchmark.bench import COLUMNS, QUANTUS_BATCH, TOLERANCE, bench, untied
from xaiboard.benchmark.cli import main


@pytest.fixture(scope="module")
def table():
    return bench(sizes=[4], metrics=["deletion_auc", "max_sensitivity", "sparseness"], repeats=1, progress=False)


def test_values_agree_with_quantus_in_the_same_run(table) -> None:
    assert list(table.columns) == COLUMNS
    assert table["metric"].tolist() == ["deletion_auc", "max_sensitivity", "sparseness"]
    assert (table["max_diff"] <= TOLERANCE).all() and table["equal"].all()
    assert (table[["ours_s", "quantus_s", "quantus/ours"]] > 0).all().all()


def test_passes_are_counted_and_only_model_free_metrics_have_no_floor(table) -> None:
    rows = table.set_index("metric")
    assert rows.loc["deletion_auc", "fwd"] == 4 * 17  # 16 steps + the full input, per sample
    assert rows.loc["deletion_auc", "bwd"] == 0
    assert rows.loc["max_sensitivity", "bwd"] > 0  # re-explanations take gradients
    assert rows.loc["sparseness", "fwd"] == 0 and np.isnan(rows.loc["sparseness", "floor_s"])
    assert np.isfinite(rows.loc["deletion_auc", "ours/floor"])


def test_tie_breaking_keeps_the_order_of_distinct_scores() -> None:
    explanation = torch.tensor([[0.0, 0.0, 1.0, 0.5]])
    broken = untied(explanation, seed=0)
    assert len(set(broken[0].tolist())) == 4
    assert broken[0].argsort()[2:].tolist() == [3, 2]
    assert (broken - explanation).abs().max() <= 1e-6


def test_cli_writes_the_table_and_its_markdown(tmp_path) -> None:
    out = tmp_path / "bench.md"
    result = CliRunner().invoke(
        main, ["bench", "--n", "4", "--repeats", "1", "--metrics", "sparseness", "--quiet", "--markdown", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "quantus/ours" in result.output
    assert out.read_text().startswith("| task | n | metric |")


def test_cli_without_quantus_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "quantus", None)  # makes ``import quantus`` fail
    result = CliRunner().invoke(main, ["bench", "--quick"])
    assert result.exit_code != 0
    assert 'pip install -e ".[dev]"' in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_random_draws_reach_quantus_batch_by_batch() -> None:
    """Past Quantus's batch of 64 (and with a partial last batch) our draws still line up."""
    metrics = ["insertion_auc", "faithfulness_correlation", "avg_sensitivity", "random_logit"]
    table = bench(sizes=[QUANTUS_BATCH + 3], metrics=metrics, repeats=1, progress=False)
    assert table["equal"].all(), table[["metric", "max_diff"]]

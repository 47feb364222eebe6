"""End to end: the default suite through the CLI, and the committed baseline results.

``test_default_suite_small`` runs every built-in task x method x metric through
``xaiboard run`` on a few samples (the full suite, n = 64, is the README's second set-up
command and takes minutes). The ``committed`` tests read the baseline results under
``submissions/`` — the numbers the leaderboard shows — and check the claims we make about
them, so a regenerated board that breaks a claim fails CI.
"""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from xaiboard.benchmark.cli import main
from xaiboard.benchmark.paths import submissions_dir
from xaiboard.benchmark.registry import METHODS, METRICS, TASKS
from xaiboard.benchmark.store import ResultStore

DEFAULT_TASKS = ["image/shapes", "text/planted", "graph/ba-shapes"]


@pytest.mark.slow
def test_default_suite_small(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIBOARD_SUBMISSIONS", str(tmp_path / "results"))
    monkeypatch.setenv("XAIBOARD_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["run", "--n", "6", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    records, errors = ResultStore(tmp_path / "results").records()
    assert not errors
    failed = [(r.task, r.method, r.metric, r.error) for r in records if r.status != "ok"]
    assert not failed
    pairs = {(r.task, r.method) for r in records}
    for task in DEFAULT_TASKS:
        supported = [m for m in METHODS.names() if METHODS.create(m).supports(TASKS.create(task))]
        assert {(task, m) for m in supported} <= pairs
    assert {r.metric for r in records} == set(METRICS.names())


def _committed() -> dict[tuple[str, str, str], float]:
    records, errors = ResultStore(submissions_dir()).records()
    assert not errors, errors
    return {r.key: r.summary.mean for r in records if r.status == "ok"}


@pytest.fixture(scope="module")
def committed() -> dict[tuple[str, str, str], float]:
    return _committed()


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_committed_suite_is_complete(committed, task):
    """Every default (task, method, metric) has an ok record with at least 64 samples."""
    records, _ = ResultStore(submissions_dir()).records()
    ours = [r for r in records if r.task == task]
    assert ours and all(r.status == "ok" for r in ours)
    assert min(r.n_samples for r in ours) >= 64


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_committed_ground_truth_claims(committed, task):
    """Gradient methods find the planted evidence; the random control scores chance."""
    random_auroc = committed[(task, "random", "gt_auroc")]
    assert abs(random_auroc - 0.5) <= 0.05
    for method in ("saliency", "integrated_gradients"):
        assert committed[(task, method, "gt_auroc")] >= random_auroc + 0.15


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_committed_sanity_claims(committed, task):
    """The model-independent control fails MPRT (similarity ~1); saliency passes it clearly."""
    control = committed[(task, "input_magnitude", "mprt")]
    saliency = committed[(task, "saliency", "mprt")]
    assert control >= 0.9
    assert not math.isnan(saliency) and saliency <= control - 0.3

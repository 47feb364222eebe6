"""The full-suite estimate: per-pair costs from records, the list schedule, extrapolation, CLI."""

from dataclasses import replace

import pytest
from click.testing import CliRunner

from xaiboard.benchmark.cli import main
from xaiboard.benchmark.paths import submissions_dir
from xaiboard.benchmark.scaling import PairCost, estimate, extrapolate, longest_first, makespan, pair_costs
from xaiboard.benchmark.store import ResultStore

#: sums of a few binary fractions and small integers: exact in float64 up to ~1e-15, so 1e-9
#: only absorbs summation order
EXACT = 1e-9


@pytest.fixture
def template():
    """A real committed record to vary (any valid one will do)."""
    store = ResultStore(submissions_dir())
    return store.read(store.path("image/digits", "saliency", "complexity"))


def test_longest_first_schedule_known_answer():
    # Graham's example: longest-first puts 5|4, then 3s on 4, 5, 7 -> loads 8 and 10, while
    # the optimum {5, 4} | {3, 3, 3} is 9: the schedule is a 4/3-approximation, not the optimum
    assert makespan([3, 3, 5, 3, 4], 2) == 10
    assert makespan([3, 3, 5, 3, 4], 1) == 18
    assert makespan([3, 3, 5, 3, 4], 9) == 5  # the longest job is the critical path


def test_pairs_are_submitted_unknown_first_then_longest_first():
    recorded = [PairCost("t", "slow", 10.0, 90.0, 10), PairCost("t", "fast", 1.0, 4.0, 4)]
    works = [("t", "fast", 4), ("t", "slow", 1), ("t", "new", 3), ("t", "slow", 10)]
    ordered = longest_first(works, recorded, lambda w: w)
    # unknown first; "slow" with all 10 metrics missing: 100 s; with 1 of 10: 10 + 9 = 19 s; "fast": 5 s
    assert ordered == [("t", "new", 3), ("t", "slow", 10), ("t", "slow", 1), ("t", "fast", 4)]


def test_estimate_bounds_and_seeds():
    pairs = [PairCost("t", "a", 1.0, 3.0, 2), PairCost("t", "b", 0.0, 2.0, 2)]
    table = estimate(pairs, [1, 2, 8], seeds=3, overhead_s=1.0).set_index("workers")
    # 3 seeds x (5 + 3) s = 24 s of work in units of 5 and 3 s
    assert table.loc[1, "cpu_hours"] * 3600 == pytest.approx(24.0, abs=EXACT)
    # units 5, 5, 5, 3, 3, 3: no split gives 12 | 12 (5a + 3b is never 12), so 13 | 11 is the best
    assert table.loc[2, "wall_hours"] * 3600 == pytest.approx(13.0, abs=EXACT)
    assert table.loc[8, "lower_bound_hours"] * 3600 == pytest.approx(5.0, abs=EXACT)
    assert table.loc[8, "wall_hours"] * 3600 == pytest.approx(5.0, abs=EXACT)


def test_pair_costs_sum_the_explanation_once_and_every_metric(template):
    explained = replace(template, n_samples=4, cost={"seconds": 0.5, "forward_passes": 2.0})
    records = [
        replace(explained, metric="complexity", metric_cost={"seconds": 1.0}),
        replace(explained, metric="sparseness", metric_cost={"seconds": 2.25}),
        replace(template, method="random", cost={}, metric_cost={"seconds": 0.75}),
    ]
    pairs = {p.method: p for p in pair_costs(records)}
    assert pairs["saliency"].explain_s == pytest.approx(2.0, abs=EXACT)  # 0.5 s per sample x 4, once
    assert pairs["saliency"].seconds == pytest.approx(5.25, abs=EXACT)
    assert pairs["saliency"].forward_passes == 2.0 and pairs["saliency"].metrics == 2
    assert pairs["random"].seconds == pytest.approx(0.75, abs=EXACT)


def test_extrapolate_scales_the_reference_above_the_floor():
    floor = PairCost("t", "random", 0.0, 10.0, 3)
    reference = PairCost("t", "occlusion", 4.0, 20.0, 3, forward_passes=2.0)
    (lime,) = extrapolate([floor, reference], {"lime": 4.0})
    # twice occlusion's passes: twice its 4 s + 10 s above the floor, plus the floor's 10 s
    assert (lime.task, lime.method, lime.forward_passes) == ("t", "lime", 4.0)
    assert lime.explain_s == pytest.approx(8.0, abs=EXACT)
    assert lime.metrics_s == pytest.approx(30.0, abs=EXACT)
    assert extrapolate([reference], {"lime": 4.0}) == []  # no floor on the task: nothing to scale from


def test_scaling_command_reads_a_results_folder(template, tmp_path):
    store = ResultStore(tmp_path)
    for method, seconds in (("saliency", 30.0), ("random", 6.0)):
        spent = {"seconds": seconds, "forward_passes": 0, "backward_passes": 0}
        store.write(replace(template, method=method, cost={}, metric_cost=spent))
    result = CliRunner().invoke(main, ["scaling", "--results-dir", str(tmp_path), "--seeds", "2", "--workers", "1,4"])
    assert result.exit_code == 0, result.output
    assert "2 records (0 unreadable) in 2 (task, method) pairs" in result.output
    assert "| 4 | 4 | 0.02 | 0.008 | 0.008 |" in result.output  # 72 s in all; the 30 s pair bounds 4 workers

"""Leaderboard: rank groups, direction, error rows and the random check on hand-made records;
the Streamlit app end to end on a folder of synthetic result files (``AppTest``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from torch import Tensor

from xaiboard.benchmark.metric import Metric, MetricContext
from xaiboard.benchmark.record import ResultRecord, Summary
from xaiboard.benchmark.registry import METHODS, METRICS
from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import aggregate
from xaiboard.methods.base import Explainer

APP = Path(aggregate.__file__).with_name("app.py")
CONTROL = "lb_test_control"
METRIC = "lb_test_metric"


class _Control(Explainer):
    name = CONTROL
    control = True

    def explain(self, model, inputs, targets, task) -> Tensor:
        raise NotImplementedError


class _Metric(Metric):
    """Share of planted tokens the test explainer finds."""

    name = METRIC
    family = "faithfulness"
    direction = "higher"
    value_range = (0.0, 1.0)
    reference = "Test et al. 2024"

    def compute(self, ctx: MetricContext) -> Tensor:
        raise NotImplementedError


METHODS.register(CONTROL)(_Control)
METRICS.register(METRIC)(_Metric)


def record(
    method: str,
    ci: tuple[float, float] | None,
    metric: str = METRIC,
    direction: str = "higher",
    family: str = "faithfulness",
    task: str = "image/shapes",
) -> ResultRecord:
    """An ok record with mean = CI midpoint, or an error record when ``ci`` is None."""
    summary = None if ci is None else Summary(sum(ci) / 2, sum(ci) / 2, 0.1, ci[0], ci[1], 32)
    return ResultRecord(
        task=task, task_version="1.0", method=method, method_hash=f"hash-{method}", metric=metric,
        family=family, direction=direction, status="ok" if ci else "error", seed=0, n_samples=32,
        removal="zero", device="cpu (2 threads)", summary=summary,
        cost={"forward_passes": round(100 * ci[0]) if ci else 0, "backward_passes": 1, "seconds": 0.01,
              "peak_memory_mb": None},
        versions={"torch": "2.13.0"}, error=None if ci else f"{method} exploded",
    )  # fmt: skip


# image/shapes, higher is better: good and okay overlap (rank 1); weak overlaps okay but not
# good (rank 2) and overlaps random (does not beat it); the control and random are beaten by
# good and okay only (rank 3); broken failed (ranked after all 5 results: 6).
SHAPES = [
    record("weak", (0.45, 0.80)),
    record("random", (0.40, 0.60)),
    record("good", (0.85, 0.95)),
    record("broken", None),
    record("okay", (0.70, 0.88)),
    record(CONTROL, (0.42, 0.62)),
]
SHAPES_ORDER = ["good", "okay", "weak", CONTROL, "random", "broken"]


def test_rank_groups_tie_overlapping_intervals_and_put_errors_last():
    table = aggregate.leaderboard_table(SHAPES, "image/shapes", METRIC)
    assert table["method"].tolist() == SHAPES_ORDER
    assert table["rank"].tolist() == [1, 1, 2, 3, 3, 6]
    assert table["status"].tolist() == ["ok"] * 5 + ["error"]
    assert table["error"].iloc[-1] == "broken exploded"
    assert table.set_index("method")["mean"]["good"] == pytest.approx(0.90)  # (0.85 + 0.95) / 2 in floats
    controls = table.set_index("method")["is_control"].drop(index="random")
    assert controls.to_dict() == {m: m == CONTROL for m in SHAPES_ORDER if m != "random"}


def test_builtin_controls_are_controls_and_unknown_methods_are_not():
    assert aggregate.is_control("random") and aggregate.is_control("input_magnitude")
    assert not aggregate.is_control("my_submitted_method")


def test_direction_lower_reverses_the_ranking():
    intervals = {"a": (0.1, 0.2), "b": (0.15, 0.3), "c": (0.5, 0.6)}
    for direction, order, ranks in [("higher", "cba", [1, 2, 2]), ("lower", "abc", [1, 1, 3])]:
        records = [record(m, ci, direction=direction) for m, ci in intervals.items()]
        table = aggregate.leaderboard_table(records, "image/shapes", METRIC)
        assert table["method"].tolist() == list(order), direction
        assert table["rank"].tolist() == ranks, direction


def test_beats_random_flags_methods_whose_interval_overlaps_random():
    flags = aggregate.beats_random(SHAPES, "image/shapes", METRIC)
    assert flags.to_dict() == {"weak": False, "good": True, "okay": True, CONTROL: False}
    table = aggregate.leaderboard_table(SHAPES, "image/shapes", METRIC).set_index("method")
    assert table.loc["good", "beats_random"] and not table.loc["weak", "beats_random"]
    assert table["beats_random"][["random", "broken"]].isna().all()
    without_random = [r for r in SHAPES if r.method != "random"]
    assert aggregate.beats_random(without_random, "image/shapes", METRIC).empty


def test_p_vs_random_is_a_paired_test_over_the_same_samples():
    """A method that is random's scores plus a constant wins every pair (p = 1/2^6 exactly for
    6 samples); a method whose scores are random's, reordered, does not beat it; a record over
    other samples (another seed), or with fewer than two finite pairs, is not compared."""
    base = [0.2, 0.5, 0.3, 0.9, 0.4, 0.6]
    scored = lambda method, scores, seed=0: replace(record(method, (0.1, 0.9)), scores=scores, seed=seed)  # noqa: E731
    nan = float("nan")
    records = [scored("random", base), scored("good", [s + 0.01 for s in base]),
               scored("shuffled", base[::-1]), scored("okay", [s + 0.01 for s in base], seed=1),
               scored("mostly-nan", [0.9, nan, nan, nan, nan, nan])]  # fmt: skip
    p = aggregate.p_vs_random(records, "image/shapes", METRIC)
    assert p["good"] == pytest.approx(1 / 64, abs=1e-12)
    assert p["shuffled"] > 0.4
    assert "okay" not in p and "random" not in p and "mostly-nan" not in p  # one finite pair: no test
    table = aggregate.leaderboard_table(records, "image/shapes", METRIC).set_index("method")
    assert table.loc["good", "p_vs_random"] == pytest.approx(1 / 64, abs=1e-12)
    assert table["p_vs_random"][["random", "okay"]].isna().all()


def test_family_ranks_average_rank_groups_within_each_family():
    lower = [record(m, ci, metric="spread", direction="lower", family="robustness") for m, ci in
             [("good", (0.5, 0.6)), ("okay", (0.1, 0.2)), ("weak", (0.1, 0.3))]]  # fmt: skip
    second = [record(m, ci, metric="second") for m, ci in [("good", (0.1, 0.2)), ("okay", (0.5, 0.6))]]
    ranks = aggregate.family_ranks(SHAPES + lower + second, "image/shapes").set_index("method")
    assert list(ranks.columns) == ["is_control", "faithfulness", "robustness"]
    # faithfulness: good (1 + 2) / 2, okay (1 + 1) / 2; weak, control, random only have one metric
    assert ranks["faithfulness"].to_dict() == {
        "okay": 1.0, "good": 1.5, "weak": 2.0, CONTROL: 3.0, "random": 3.0, "broken": 6.0
    }  # fmt: skip
    assert ranks["robustness"].dropna().to_dict() == {"okay": 1.0, "weak": 1.0, "good": 3.0}
    assert ranks.index[0] == "okay" and ranks["is_control"][CONTROL]


def test_cost_and_provenance_tables():
    cost = aggregate.cost_table(SHAPES, "image/shapes").set_index("method")
    assert "broken" not in cost.index
    assert cost.index.tolist() == ["random", CONTROL, "weak", "okay", "good"]  # fewest passes first
    assert cost.loc["good", "passes"] == 86 and cost.loc["good", "seconds"] == 0.01
    assert cost["peak_memory_mb"].isna().all() and cost.loc[CONTROL, "is_control"]
    provenance = aggregate.provenance_table(SHAPES, "image/shapes")
    assert len(provenance) == len(SHAPES)
    assert provenance.set_index("method").loc["okay", "method_hash"] == "hash-okay"
    assert provenance["versions"].unique().tolist() == ["torch 2.13.0"]


def _write(root: Path, records: list[ResultRecord]) -> None:
    store = ResultStore(root)
    for r in records:
        store.write(r)


def _ranking_tables(at: AppTest) -> list[pd.DataFrame]:
    return [frame.value for frame in at.dataframe if "95% CI" in frame.value.columns]


# text/planted: weak is best here, so switching task must change the order.
PLANTED = [
    record("weak", (0.93, 0.97), task="text/planted"),
    record("good", (0.50, 0.70), task="text/planted"),
    record("random", (0.45, 0.55), task="text/planted"),
]


def test_app_shows_ranked_tables_and_switches_task(tmp_path, monkeypatch):
    _write(tmp_path, SHAPES + PLANTED)
    bad = tmp_path / "bad" / "results" / "image" / "shapes" / f"{METRIC}.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"task": ')
    monkeypatch.setenv("XAIBOARD_SUBMISSIONS", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "image/shapes"
    (table,) = _ranking_tables(at)
    assert table["method"].tolist() == SHAPES_ORDER
    assert table["rank"].tolist() == [1, 1, 2, 3, 3, 6]
    assert table["95% CI"].tolist()[:3] == ["[0.85, 0.95]", "[0.7, 0.88]", "[0.45, 0.8]"]
    assert table["control"].tolist() == [aggregate.is_control(m) for m in SHAPES_ORDER]
    assert table["control"].tolist()[3] and not any(table["control"].tolist()[:3])
    assert table["vs random"].tolist() == ["beats random", "beats random", "does not beat random",
                                           "does not beat random", "", ""]  # fmt: skip
    assert [e.value for e in at.error] == ["broken: broken exploded"]
    assert any("Share of planted tokens" in c.value and "higher is better" in c.value for c in at.caption)
    assert any(f"{bad}: invalid JSON" in m.value for m in at.markdown)

    at.sidebar.selectbox[0].set_value("text/planted").run()
    assert not at.exception
    (table,) = _ranking_tables(at)
    assert table["method"].tolist() == ["weak", "good", "random"]
    assert table["95% CI"].tolist() == ["[0.93, 0.97]", "[0.5, 0.7]", "[0.45, 0.55]"]
    assert not at.error


def test_app_without_results_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIBOARD_SUBMISSIONS", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert "No results found" in at.info[0].value
    assert not at.dataframe

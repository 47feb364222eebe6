"""Leaderboard aggregation: rank groups, direction, error and not-applicable rows, the random
check, family ranks, cost and the ``submit`` standings, on hand-made records and cards.

The helpers here (``record``, ``card``, ``write_root``) also build the results roots of the
board and app tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from torch import Tensor

from xaiboard.benchmark.card import MethodCard
from xaiboard.benchmark.metric import Metric, MetricContext
from xaiboard.benchmark.record import ResultRecord, Summary
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import aggregate
from xaiboard.leaderboard.board import Board, make_board

CONTROL = "lb_test_control"
METRIC = "lb_test_metric"


class _Metric(Metric):
    """Share of planted tokens the test explainer finds."""

    name = METRIC
    family = "faithfulness"
    direction = "higher"
    value_range = (0.0, 1.0)
    reference = "Test et al. 2024"

    def compute(self, ctx: MetricContext) -> Tensor:
        raise NotImplementedError


METRICS.register(METRIC)(_Metric)


def record(
    method: str,
    ci: tuple[float, float] | None,
    metric: str = METRIC,
    direction: str = "higher",
    family: str = "faithfulness",
    task: str = "image/shapes",
    reason: str | None = None,
) -> ResultRecord:
    """An ok record with mean = CI midpoint; without ``ci`` an error record, or a not-applicable
    one when ``reason`` is given."""
    summary = None if ci is None else Summary(sum(ci) / 2, sum(ci) / 2, 0.1, ci[0], ci[1], 32)
    status = "ok" if ci else ("not-applicable" if reason else "error")
    return ResultRecord(
        task=task, task_version="1.0", method=method, method_hash=f"hash-{method}", metric=metric,
        family=family, direction=direction, status=status, seed=0, n_samples=32,
        removal="zero", device="cpu (2 threads)", summary=summary,
        cost={"forward_passes": round(100 * ci[0]) if ci else 0, "backward_passes": 1, "seconds": 0.01,
              "peak_memory_mb": None},
        versions={"torch": "2.13.0"}, error=None if status != "error" else f"{method} exploded", reason=reason,
    )  # fmt: skip


def card(name: str, control_kind: str = "", **fields) -> MethodCard:
    """A card; a ``control_kind`` makes it a control."""
    return MethodCard(name=name, control=bool(control_kind), control_kind=control_kind, **fields)


#: the random reference and a model-independent control, as their cards say
CARDS = {"random": card("random", "random"), CONTROL: card(CONTROL, "model-independent"), "good": card("good")}


def board_of(records: list[ResultRecord], cards: dict[str, MethodCard] = CARDS) -> Board:
    board = make_board(records, cards)
    assert not board.problems, board.problems
    return board


def write_root(root: Path, records: list[ResultRecord], cards: dict[str, MethodCard] = CARDS) -> None:
    """A results root holding ``records`` and ``cards`` as the runner writes them."""
    store = ResultStore(root)
    for r in records:
        store.write(r)
    for c in cards.values():
        store.write_card(c)


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
    table = aggregate.leaderboard_table(board_of(SHAPES), "image/shapes", METRIC)
    assert table["method"].tolist() == SHAPES_ORDER
    assert table["rank"].tolist() == [1, 1, 2, 3, 3, 6]
    assert table["status"].tolist() == ["ok"] * 5 + ["error"]
    assert table["error"].iloc[-1] == "broken exploded"
    assert table.set_index("method")["mean"]["good"] == pytest.approx(0.90)  # (0.85 + 0.95) / 2 in floats
    controls = table.set_index("method")["is_control"]
    assert controls.to_dict() == {m: m in (CONTROL, "random") for m in SHAPES_ORDER}


def test_controls_and_the_random_reference_come_from_the_cards():
    board = board_of(SHAPES)
    assert board.controls == {"random", CONTROL} and board.reference == "random"
    assert board_of(SHAPES, {}).controls == frozenset() and board_of(SHAPES, {}).reference is None
    renamed = {"noise": card("noise", "random")}
    records = [replace(r, method="noise") if r.method == "random" else r for r in SHAPES]
    flags = aggregate.beats_random(board_of(records, renamed), "image/shapes", METRIC)
    assert flags.to_dict() == {"weak": False, "good": True, "okay": True, CONTROL: False}  # no name is special
    two = make_board(SHAPES, {**CARDS, "weak": card("weak", "random")})
    assert two.reference is None
    assert two.problems == ("several method cards claim control_kind 'random' (random, weak): no comparison with random is shown",)


def test_direction_lower_reverses_the_ranking():
    intervals = {"a": (0.1, 0.2), "b": (0.15, 0.3), "c": (0.5, 0.6)}
    for direction, order, ranks in [("higher", "cba", [1, 2, 2]), ("lower", "abc", [1, 1, 3])]:
        records = [record(m, ci, metric="spread", direction=direction) for m, ci in intervals.items()]
        table = aggregate.leaderboard_table(board_of(records), "image/shapes", "spread")
        assert table["method"].tolist() == list(order), direction
        assert table["rank"].tolist() == ranks, direction


def test_beats_random_flags_methods_whose_interval_overlaps_random():
    board = board_of(SHAPES)
    flags = aggregate.beats_random(board, "image/shapes", METRIC)
    assert flags.to_dict() == {"weak": False, "good": True, "okay": True, CONTROL: False}
    table = aggregate.leaderboard_table(board, "image/shapes", METRIC).set_index("method")
    assert table.loc["good", "beats_random"] and not table.loc["weak", "beats_random"]
    assert table["beats_random"][["random", "broken"]].isna().all()
    without_random = [r for r in SHAPES if r.method != "random"]
    assert aggregate.beats_random(board_of(without_random), "image/shapes", METRIC).empty


def test_p_vs_random_is_a_paired_test_over_the_same_samples():
    """A method that is random's scores plus a constant wins every pair (p = 1/2^6 exactly for
    6 samples); a method whose scores are random's, reordered, does not beat it; a record over
    other samples (another seed), or with fewer than two finite pairs, is not compared."""
    base = [0.2, 0.5, 0.3, 0.9, 0.4, 0.6]
    scored = lambda method, scores, seed=0: replace(record(method, (0.1, 0.9)), scores=scores, seed=seed)  # noqa: E731
    nan = float("nan")
    board = board_of([scored("random", base), scored("good", [s + 0.01 for s in base]),
                      scored("shuffled", base[::-1]), scored("okay", [s + 0.01 for s in base], seed=1),
                      scored("mostly-nan", [0.9, nan, nan, nan, nan, nan])])  # fmt: skip
    p = aggregate.p_vs_random(board, "image/shapes", METRIC)
    assert p["good"] == pytest.approx(1 / 64, abs=1e-12)
    assert p["shuffled"] > 0.4
    assert "okay" not in p and "random" not in p and "mostly-nan" not in p  # one finite pair: no test
    table = aggregate.leaderboard_table(board, "image/shapes", METRIC).set_index("method")
    assert table.loc["good", "p_vs_random"] == pytest.approx(1 / 64, abs=1e-12)
    assert table["p_vs_random"][["random", "okay"]].isna().all()


def test_family_ranks_average_rank_groups_within_each_family():
    lower = [record(m, ci, metric="spread", direction="lower", family="robustness") for m, ci in
             [("good", (0.5, 0.6)), ("okay", (0.1, 0.2)), ("weak", (0.1, 0.3))]]  # fmt: skip
    second = [record(m, ci, metric="second") for m, ci in [("good", (0.1, 0.2)), ("okay", (0.5, 0.6))]]
    ranks = aggregate.family_ranks(board_of(SHAPES + lower + second), "image/shapes").set_index("method")
    assert list(ranks.columns) == ["is_control", "faithfulness", "robustness"]
    # faithfulness: good (1 + 2) / 2, okay (1 + 1) / 2; weak, control, random only have one metric
    assert ranks["faithfulness"].to_dict() == {
        "okay": 1.0, "good": 1.5, "weak": 2.0, CONTROL: 3.0, "random": 3.0, "broken": 6.0
    }  # fmt: skip
    assert ranks["robustness"].dropna().to_dict() == {"okay": 1.0, "weak": 1.0, "good": 3.0}
    assert ranks.index[0] == "okay" and ranks["is_control"][CONTROL]


def test_not_applicable_rows_are_unranked_last_and_left_out_of_family_ranks():
    """A precomputed method cannot be re-run: its robustness record is not applicable. It is
    listed after the error row without a rank, and its robustness cell stays empty, whereas the
    method that crashed counts as last there."""
    spread = [record("good", (0.1, 0.2), metric="spread", family="robustness", direction="lower"),
              record("broken", None, metric="spread", family="robustness", direction="lower"),
              record("precomputed", None, metric="spread", family="robustness", direction="lower",
                     reason="needs to re-run the method")]  # fmt: skip
    board = board_of(SHAPES + spread)
    table = aggregate.leaderboard_table(board, "image/shapes", "spread")
    assert table["method"].tolist() == ["good", "broken", "precomputed"]
    assert table["rank"].tolist()[:2] == [1, 2] and pd.isna(table["rank"].iloc[2])
    assert table["status"].tolist() == ["ok", "error", "not-applicable"]
    assert table["reason"].iloc[2] == "needs to re-run the method" and pd.isna(table["beats_random"].iloc[2])
    ranks = aggregate.family_ranks(board, "image/shapes").set_index("method")["robustness"]
    assert ranks["good"] == 1.0 and ranks["broken"] == 2.0 and pd.isna(ranks["precomputed"])


def test_cost_and_provenance_tables():
    board = board_of(SHAPES)
    cost = aggregate.cost_table(board, "image/shapes").set_index("method")
    assert "broken" not in cost.index
    assert cost.index.tolist() == ["random", CONTROL, "weak", "okay", "good"]  # fewest passes first
    assert cost.loc["good", "passes"] == 86 and cost.loc["good", "seconds"] == 0.01
    assert cost["peak_memory_mb"].isna().all() and cost.loc[CONTROL, "is_control"]
    provenance = aggregate.provenance_table(board, "image/shapes")
    assert len(provenance) == len(SHAPES)
    assert provenance.set_index("method").loc["okay", "method_hash"] == "hash-okay"
    assert provenance["versions"].unique().tolist() == ["torch 2.13.0"]


def test_metric_cost_table_sums_each_metrics_own_cost_over_methods():
    def spent(method: str, metric: str, seconds: float, forward: int) -> ResultRecord:
        r = record(method, (0.4, 0.6), metric=metric)
        r.metric_cost = {"seconds": seconds, "forward_passes": forward, "backward_passes": 1}
        return r

    board = board_of([spent("good", METRIC, 1.0, 10), spent("weak", METRIC, 2.0, 20), spent("good", "spread", 1.0, 0)])
    table = aggregate.metric_cost_table(board, "image/shapes").set_index("metric")
    assert table.index.tolist() == [METRIC, "spread"]  # most expensive first
    assert table.loc[METRIC, "seconds"] == 3.0 and table.loc[METRIC, "passes"] == 32
    assert table.loc["spread", "passes"] == 1 and table["share"].tolist() == [0.75, 0.25]


def test_cards_table_shows_each_methods_card_or_its_absence():
    described = {**CARDS, "good": card("good", description="Gradients, but good.", authors="A. Author", paper="arXiv:1")}
    cards = aggregate.cards_table(board_of(SHAPES, described), "image/shapes").set_index("method")
    assert cards.loc["good", ["kind", "description", "authors", "paper"]].tolist() == [
        "baseline", "Gradients, but good.", "A. Author", "arXiv:1"
    ]  # fmt: skip
    assert cards.loc["random", "control"] == "random" and cards.loc["good", "control"] == ""
    assert cards.loc["weak", "kind"] == "no card"


def test_standings_give_every_methods_family_ranks_on_the_tasks_of_one_method(tmp_path):
    planted = [record("weak", (0.93, 0.97), task="text/planted"), record("random", (0.45, 0.55), task="text/planted")]
    write_root(tmp_path, SHAPES + planted + [record("good", (0.1, 0.2), task="graph/ba-shapes")])
    frame = aggregate.standings(tmp_path, "weak")
    assert list(frame.columns) == ["task", "method", "is_control", "faithfulness"]
    assert frame["task"].unique().tolist() == ["image/shapes", "text/planted"]  # not graph/ba-shapes
    mine = frame[frame["method"] == "weak"].set_index("task")["faithfulness"]
    assert mine.to_dict() == {"image/shapes": 2.0, "text/planted": 1.0}
    assert frame[frame["task"] == "image/shapes"]["method"].tolist() == ["good", "okay", "weak", CONTROL, "random", "broken"]
    assert aggregate.standings(tmp_path, "nobody").empty

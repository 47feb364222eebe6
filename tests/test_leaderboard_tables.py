"""The board's precomputed tables: family rank groups, caveats and the Pareto front on records
with known answers; ``build``/``load`` keyed by the records' content (a hand edit recomputes
exactly the edited task, a bad stored file is never trusted); ``xaiboard board build``."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from test_leaderboard import CARDS, CONTROL, METRIC, SHAPES, board_of, record, write_root

from xaiboard.benchmark.cli import main
from xaiboard.benchmark.paths import REPRODUCTIONS_FOLDER
from xaiboard.benchmark.store import ResultStore
from xaiboard.leaderboard import aggregate, tables

# Two metrics; twin_a and twin_b have identical records, best beats both on each metric,
# random is beaten by everyone on both.
IDENTICAL = [
    record(method, ci, metric=metric)
    for metric in (METRIC, "second")
    for method, ci in [("best", (0.90, 0.95)), ("twin_a", (0.50, 0.60)), ("twin_b", (0.50, 0.60)),
                       ("random", (0.10, 0.20))]  # fmt: skip
]


def groups_of(records: list, task: str = "image/shapes") -> pd.DataFrame:
    return aggregate.family_rank_groups(board_of(records), task).set_index("method")


def test_identical_methods_share_a_rank_group_and_a_clearly_better_one_has_its_own():
    board = board_of(IDENTICAL)
    for metric in (METRIC, "second"):
        ranks = aggregate.leaderboard_table(board, "image/shapes", metric).set_index("method")["rank"]
        assert ranks.to_dict() == {"best": 1, "twin_a": 2, "twin_b": 2, "random": 4}
    groups = groups_of(IDENTICAL)
    assert groups["rank_group"].to_dict() == {"best": 1, "twin_a": 2, "twin_b": 2, "random": 4}
    assert groups["mean_rank"].to_dict() == {"best": 1.0, "twin_a": 2.0, "twin_b": 2.0, "random": 4.0}
    assert groups["family"].unique().tolist() == ["faithfulness"] and groups.loc["random", "is_control"]


def test_on_one_metric_the_family_rank_group_is_the_metrics_rank_group():
    """Overlapping intervals (good, okay) share a group, the error row is behind every result."""
    board = board_of(SHAPES)
    groups = aggregate.family_rank_groups(board, "image/shapes").set_index("method")["rank_group"]
    ranks = aggregate.leaderboard_table(board, "image/shapes", METRIC).set_index("method")["rank"]
    assert groups.to_dict() == ranks.to_dict() == {"good": 1, "okay": 1, "weak": 2, CONTROL: 3, "random": 3, "broken": 6}


def test_a_method_is_behind_another_only_where_every_metric_of_the_family_separates_them():
    """twin_a now beats best on the second metric, so neither is behind the other: they share
    group 1; twin_b is behind best on both metrics, but ties twin_a on the first."""
    flipped = [r if (r.method, r.metric) != ("twin_a", "second") else record("twin_a", (0.97, 0.99), metric="second")
               for r in IDENTICAL]  # fmt: skip
    groups = groups_of(flipped)
    assert groups.loc["best", "rank_group"] == 1 and groups.loc["twin_a", "rank_group"] == 1
    assert groups.loc["twin_b", "rank_group"] == 2  # best beats it on both; twin_a only on the second
    assert groups.loc["twin_a", "mean_rank"] == pytest.approx(1.5)  # ranks 2 and 1: exact in floats


def test_a_control_that_ranks_first_makes_its_family_uninformative_but_not_on_cost():
    records = [record(m, ci) for m, ci in [(CONTROL, (0.9, 0.95)), ("good", (0.5, 0.6)), ("random", (0.1, 0.2))]]
    cost = [record(m, ci, metric="cost_passes", family="cost", direction="lower")
            for m, ci in [("random", (0.0, 0.0)), ("good", (1.0, 1.0))]]  # fmt: skip
    board = board_of(records + cost)
    reasons = aggregate.uninformative_families(board, aggregate.family_rank_groups(board, "image/shapes"))
    assert list(reasons) == ["faithfulness"]
    assert reasons["faithfulness"].startswith(f"uninformative for this task: the control {CONTROL} (ignores the model)")
    good_first = [record(m, ci) for m, ci in [("good", (0.9, 0.95)), (CONTROL, (0.5, 0.6))]]
    board = board_of(good_first)
    assert aggregate.uninformative_families(board, aggregate.family_rank_groups(board, "image/shapes")) == {}


def test_pareto_front_marks_the_methods_no_other_is_both_cheaper_and_better_than():
    frame = pd.DataFrame({"method": list("abcde"), "passes": [0, 1, 1, 32, float("nan")],
                          "rank": [5.0, 2.0, 3.0, 1.0, 1.0]})  # fmt: skip
    # a: cheapest; b: better than a at one pass; c: as cheap as b but worse; d: best; e: cost unknown
    assert aggregate.pareto_front(frame, "passes", "rank").tolist() == [True, True, False, True, False]


# Four methods with separated means on METRIC; "twin" scores them identically, "mirrored" gives
# each 1 - its mean (higher still better: the opposite order), "mirrored_lower" does the same but
# is lower-is-better (so it agrees on which method is better); "broken" failed everywhere and
# "late" has a result on "sparse" only, which two other methods share.
ORDERED = [("a", (0.10, 0.20)), ("b", (0.30, 0.40)), ("c", (0.50, 0.60)), ("d", (0.70, 0.80))]
AGREEMENT = [
    *(record(m, ci, metric=metric) for metric in (METRIC, "twin") for m, ci in ORDERED),
    *(record(m, (1 - ci[1], 1 - ci[0]), metric="mirrored") for m, ci in ORDERED),
    *(record(m, (1 - ci[1], 1 - ci[0]), metric="mirrored_lower", direction="lower") for m, ci in ORDERED),
    *(record("broken", None, metric=metric) for metric in (METRIC, "twin", "mirrored")),
    *(record(m, ci, metric="sparse") for m, ci in [("a", (0.1, 0.2)), ("b", (0.3, 0.4)), ("late", (0.5, 0.6))]),
]


def test_metric_agreement_is_1_for_identical_metrics_and_minus_1_for_a_reversed_one():
    """Spearman over the methods' means, each metric oriented so that larger is better; only
    methods with a result on both count, and fewer than three in common gives no value."""
    frame = aggregate.metric_agreement(board_of(AGREEMENT), "image/shapes")
    rho = frame.pivot(index="metric_a", columns="metric_b", values="spearman")
    n = frame.pivot(index="metric_a", columns="metric_b", values="n_methods")
    assert rho.loc[METRIC, "twin"] == rho.loc["twin", METRIC] == 1.0  # exact: identical ranks
    assert rho.loc[METRIC, "mirrored"] == rho.loc["twin", "mirrored"] == -1.0
    assert rho.loc[METRIC, "mirrored_lower"] == 1.0 and rho.loc["mirrored", "mirrored_lower"] == -1.0
    assert n.loc[METRIC, "twin"] == 4  # broken's error records do not count
    assert n.loc[METRIC, "sparse"] == 2 and pd.isna(rho.loc[METRIC, "sparse"])
    assert rho.loc["sparse", "sparse"] == 1.0 and n.loc["sparse", "sparse"] == 3
    assert set(frame["family_a"]) == {"faithfulness"} and len(frame) == 5 * 5


def test_the_stored_tables_hold_the_metric_agreement(tmp_path):
    write_root(tmp_path, AGREEMENT)
    tables.build(tmp_path)
    stored = tables.load(tmp_path)[0].tasks["image/shapes"].frames["metric_agreement"]
    pd.testing.assert_frame_equal(stored, aggregate.metric_agreement(board_of(AGREEMENT), "image/shapes"))


def test_built_tables_match_the_aggregation_and_are_read_back_without_recomputing(tmp_path):
    planted = [record("good", (0.5, 0.7), task="text/planted"), record("random", (0.45, 0.55), task="text/planted")]
    write_root(tmp_path, SHAPES + planted)
    path, recomputed = tables.build(tmp_path)
    assert path == tmp_path / tables.TABLES_FILE and recomputed == 2
    loaded, notice = tables.load(tmp_path)
    assert notice == ""
    board = board_of(SHAPES + planted)
    shapes = loaded.tasks["image/shapes"]
    pd.testing.assert_frame_equal(shapes.frames[f"metric:{METRIC}"], aggregate.leaderboard_table(board, "image/shapes", METRIC))
    pd.testing.assert_frame_equal(shapes.frames["family_ranks"], aggregate.family_ranks(board, "image/shapes"))
    assert shapes.directions == {METRIC: "higher"} and shapes.families == {"faithfulness": [METRIC]}
    assert loaded.reference == "random" and set(loaded.controls) == {"random", CONTROL}
    assert loaded.cards["good"]["name"] == "good"
    assert set(loaded.overview()["task"]) == {"image/shapes", "text/planted"}


def test_a_hand_edited_record_recomputes_its_task_only(tmp_path):
    """... and keeps the task cards the last build stored (the app cannot make them)."""
    planted = [record("good", (0.5, 0.7), task="text/planted"), record("random", (0.45, 0.55), task="text/planted")]
    write_root(tmp_path, SHAPES + planted)
    tables.build(tmp_path, {"text/planted": {"dataset": "planted sentences"}})
    edited = ResultStore(tmp_path).path("text/planted", "good", METRIC)
    data = json.loads(edited.read_text())
    data["summary"].update(mean=0.3, ci_low=0.25, ci_high=0.35)
    edited.write_text(json.dumps(data))
    loaded, notice = tables.load(tmp_path)
    assert notice.startswith("Statistics recomputed for 1 of 2 task(s): the records")
    table = loaded.tasks["text/planted"].frames[f"metric:{METRIC}"]
    assert table["method"].tolist() == ["random", "good"] and table["mean"].tolist()[1] == 0.3
    assert loaded.task_cards == {"text/planted": {"dataset": "planted sentences"}}
    assert tables.build(tmp_path)[1] == 1  # the unchanged task is reused
    assert tables.load(tmp_path)[1] == "" and tables.load(tmp_path)[0].task_cards == loaded.task_cards


def test_the_reproductions_folder_does_not_enter_the_board(tmp_path):
    """Its records are no method's: neither the content keys nor the tables see them."""
    write_root(tmp_path, SHAPES)
    before = tables.content_keys(tmp_path)
    folder = tmp_path / REPRODUCTIONS_FOLDER
    ResultStore(tmp_path).write(record(REPRODUCTIONS_FOLDER, (0.9, 1.0)))
    (folder / "method.json").write_text(json.dumps({"name": REPRODUCTIONS_FOLDER}))
    (folder / "sanity-checks.json").write_text(json.dumps({"schema": 1, "rows": []}))
    assert tables.content_keys(tmp_path) == before
    loaded = tables.load(tmp_path)[0]
    assert REPRODUCTIONS_FOLDER not in loaded.tasks["image/shapes"].frames[f"metric:{METRIC}"]["method"].tolist()
    assert loaded.problems == () and REPRODUCTIONS_FOLDER not in loaded.cards


@pytest.mark.parametrize(
    "content, reason",
    [("{not json", "could not be read (JSONDecodeError)"), ('{"format": 999}', "in another format")],
)
def test_a_bad_stored_file_is_recomputed_and_says_why(tmp_path, content, reason):
    write_root(tmp_path, SHAPES)
    (tmp_path / tables.TABLES_FILE).write_text(content)
    loaded, notice = tables.load(tmp_path)
    assert reason in notice and "1 of 1 task(s)" in notice
    assert loaded.tasks["image/shapes"].frames[f"metric:{METRIC}"]["method"].iloc[0] == "good"


def test_a_stored_table_with_a_column_type_the_board_never_writes_is_not_trusted(tmp_path):
    write_root(tmp_path, SHAPES)
    path, _ = tables.build(tmp_path)
    data = json.loads(path.read_text())
    data["tasks"]["image/shapes"]["frames"]["cost"]["dtypes"][0] = "category"
    path.write_text(json.dumps(data))
    assert "could not be read (ValueError)" in tables.load(tmp_path)[1]


def test_board_build_command_writes_the_tables(tmp_path):
    write_root(tmp_path, SHAPES, CARDS)
    result = CliRunner().invoke(main, ["board", "build", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output == f"board statistics: {tmp_path / tables.TABLES_FILE} (1 task(s) recomputed)\n"
    loaded, notice = tables.load(tmp_path)
    assert notice == "" and loaded.task_cards["image/shapes"]["dataset"]  # the registered task's card

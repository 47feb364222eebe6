"""The result store: atomic JSON round trips and one-line errors for bad files."""

import json
import math

import pytest

from xaiboard.benchmark.paths import REPRODUCTIONS_FOLDER
from xaiboard.benchmark.record import RecordError, ResultRecord, Summary
from xaiboard.benchmark.store import ResultStore


def make_record(metric: str = "deletion_auc", status: str = "ok") -> ResultRecord:
    ok = status == "ok"
    return ResultRecord(
        task="image/shapes",
        task_version="1",
        method="saliency",
        method_hash="abc123",
        metric=metric,
        family="faithfulness",
        direction="lower",
        status=status,
        seed=0,
        n_samples=3,
        removal="zero",
        device="cpu (2 threads)",
        metric_params={"steps": 10, "order": "most"},
        summary=Summary(0.5, 0.5, 0.1, 0.4, 0.6, 2, 1) if ok else None,
        scores=[0.4, math.nan, 0.6] if ok else [],
        cost={"forward_passes": 1.0, "peak_memory_mb": None},
        versions={"torch": "2.13.0"},
        error=None if ok else "method saliency failed: boom",
        created="2025-01-01T00:00:00+00:00",
    )


def test_round_trip_layout_and_strict_json(tmp_path):
    store = ResultStore(tmp_path)
    record = make_record()
    path = store.write(record)
    assert path == tmp_path / "saliency" / "results" / "image" / "shapes" / "deletion_auc.json"
    assert json.loads(path.read_text())["scores"] == [0.4, None, 0.6]  # NaN is not JSON: null
    back = store.find("image/shapes", "saliency", "deletion_auc")
    assert math.isnan(back.scores[1])
    back.scores[1] = record.scores[1] = 0.0  # NaN != NaN, so compare the rest exactly
    assert back == record
    assert store.find("image/shapes", "saliency", "insertion_auc") is None


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    store = ResultStore(tmp_path)
    store.write(make_record(status="error"))
    store.write(make_record())
    folder = tmp_path / "saliency" / "results" / "image" / "shapes"
    assert [p.name for p in folder.iterdir()] == ["deletion_auc.json"]
    assert store.find("image/shapes", "saliency", "deletion_auc").status == "ok"


def test_truncated_file_names_the_file(tmp_path):
    store = ResultStore(tmp_path)
    path = store.write(make_record())
    path.write_text(path.read_text()[:40])
    with pytest.raises(RecordError) as info:
        store.read(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid JSON") and "\n" not in message


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.pop("seed"), "'seed'"),
        (lambda d: d.update(n_samples="3"), "'n_samples'"),
        (lambda d: d["summary"].pop("ci_low"), "'summary.ci_low'"),
        (lambda d: d["summary"].update(extra=1), "'summary.extra'"),
            (lambda d: d.update(direction="sideways"), "'direction'"),
            (lambda d: d.update(scores=["0.4", 0.1, 0.6]), "'scores'"),
            (lambda d: d.update(status="not-applicable"), "'reason'"),
        (lambda d: d.update(status="done"), "'status'"),
    ],
)
def test_schema_violation_names_the_field(tmp_path, edit, field):
    store = ResultStore(tmp_path)
    path = store.write(make_record())
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=f"^{path}: .*{field}"):
        store.read(path)


def test_records_collects_errors_without_crashing(tmp_path):
    store = ResultStore(tmp_path)
    good = store.write(make_record("deletion_auc"))
    store.write(make_record("insertion_auc", status="error"))
    bad = store.write(make_record("sparseness"))
    bad.write_text("{not json")
    records, errors = store.records()
    assert sorted((r.metric, r.status) for r in records) == [("deletion_auc", "ok"), ("insertion_auc", "error")]
    assert len(errors) == 1 and str(bad) in str(errors[0])
    assert good.exists()


def test_names_cannot_escape_the_root(tmp_path):
    with pytest.raises(ValueError, match="path component"):
        ResultStore(tmp_path).path("../etc", "saliency", "x")


def test_the_reproductions_folder_is_not_a_method_folder(tmp_path):
    """``xaiboard reproduce`` writes its records to ``<root>/reproductions/``: the store reads no
    record or card there, even files laid out as a method's, and reports none of them."""
    store = ResultStore(tmp_path)
    store.write(make_record())
    planted = ResultStore(tmp_path).write(
        ResultRecord.from_dict({**make_record().to_dict(), "method": REPRODUCTIONS_FOLDER}, "test")
    )
    (tmp_path / REPRODUCTIONS_FOLDER / "method.json").write_text('{"name": "reproductions"}')
    (tmp_path / REPRODUCTIONS_FOLDER / "sanity-checks.json").write_text('{"schema": 1}')
    records, errors = store.records()
    assert planted.is_relative_to(tmp_path / REPRODUCTIONS_FOLDER)
    assert [r.method for r in records] == ["saliency"] and errors == []
    assert store.cards() == ({}, [])

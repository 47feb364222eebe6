"""Offline mirrors of the text tasks' hub datasets, built from the copies in ``../shared/data/``.

Each mirror is laid out like the hub repository (parquet shards with the hub's columns and feature
types), so the tasks load it through the same ``datasets.load_dataset`` call that real users run
against the hub. The copies are test inputs only: mirrors are written to temporary folders.
"""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write(rows: dict[str, list], features: Features, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=features).to_parquet(str(path))


def _tsv(path: Path) -> list[tuple[str, int]]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [(sentence, int(label)) for sentence, label in reader]


def sst2_mirror(mirror: Path) -> Path:
    """``stanfordnlp/sst2`` as the hub lays it out: ``data/{train,validation}-00000-of-00001.parquet``.

    The copy's train + dev files together are the hub's 67,349 train phrases (in another order),
    its test file is the hub's 872-sentence validation split; the hub's unlabelled test split is
    not mirrored (no task reads it).
    """
    features = Features(
        {
            "idx": Value("int32"),
            "sentence": Value("string"),
            "label": ClassLabel(names=["negative", "positive"]),
        }
    )
    source = SHARED_DATA / "sst2"
    splits = {
        "train": _tsv(source / "train.tsv") + _tsv(source / "dev.tsv"),
        "validation": _tsv(source / "test.tsv"),
    }
    for split, rows in splits.items():
        columns = {
            "idx": list(range(len(rows))),
            "sentence": [s for s, _ in rows],
            "label": [y for _, y in rows],
        }
        _write(
            columns,
            features,
            mirror
            / "stanfordnlp"
            / "sst2"
            / "data"
            / f"{split}-00000-of-00001.parquet",
        )
    return mirror


def eraser_movies(
    archive: Path = SHARED_DATA / "eraser-movies" / "movies.tar.gz",
) -> dict[str, list[dict]]:
    """The ERASER movies split files as ``{split: [row]}``, each row with its document's text
    under ``"review"`` (the hub's loader reads the same files the same way)."""
    with tarfile.open(
        archive
    ) as tar:  # one sequential pass: random access into a .tar.gz re-reads it
        files = {
            m.name.split("movies/", 1)[-1]: tar.extractfile(m).read().decode()
            for m in tar
            if m.isfile()
        }
    splits = {}
    for split, name in (
        ("train", "train.jsonl"),
        ("validation", "val.jsonl"),
        ("test", "test.jsonl"),
    ):
        rows = [json.loads(line) for line in files[name].splitlines() if line.strip()]
        for row in rows:
            row["review"] = files[f"docs/{row['annotation_id']}"]
        splits[split] = rows
    return splits


def movie_rationales_mirror(mirror: Path) -> Path:
    """``eraser-benchmark/movie_rationales`` as its parquet export (``refs/convert/parquet``) lays it
    out: ``default/{train,validation,test}/0000.parquet`` with ``review``, ``label`` (NEG/POS) and
    ``evidences`` (the rationale strings, in the annotation's order)."""
    features = Features(
        {
            "review": Value("string"),
            "label": ClassLabel(names=["NEG", "POS"]),
            "evidences": Sequence(Value("string")),
        }
    )
    for split, rows in eraser_movies().items():
        columns = {
            "review": [r["review"] for r in rows],
            "label": [r["classification"] for r in rows],
            "evidences": [
                [e["text"] for group in r["evidences"] for e in group] for r in rows
            ],
        }
        _write(
            columns,
            features,
            mirror
            / "eraser-benchmark"
            / "movie_rationales"
            / "default"
            / split
            / "0000.parquet",
        )
    return mirror


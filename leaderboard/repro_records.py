"""The records ``xaiboard reproduce`` writes, read for the board's Reproductions page.

A reproduction run writes ``<results root>/reproductions/NAME.json`` (``benchmark/reproductions/
base.py``: the protocol, seeds, time, versions and one row per table cell: paper, ours as mean and
std over seeds, difference, verdict, reason, per-seed values and evidence) and its plots beside
it as ``NAME.png`` or ``NAME-PART.png``. The board imports no reproduction code (reproductions
import PyG and the methods), so the record's shape is checked here; a file that does not pass is
one problem line naming the file and field, and is not shown.

Everything in a record is submitted text: the page shows it only as dataframe cells or code
(``plain.py``). Names are the only exception, and a record's name must be a plain name
(``card.NAME_PATTERN``) equal to its file's stem. A plot is shown only when it is a PNG file
(by its signature) of at most ``MAX_PLOT_BYTES``, named after a record.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from xaiboard.benchmark.atomic import read_json
from xaiboard.benchmark.card import NAME_PATTERN
from xaiboard.benchmark.paths import REPRODUCTIONS_FOLDER

#: ``benchmark.reproductions.base.RECORD_SCHEMA`` (a test checks that they agree)
SCHEMA = 1
PROTOCOL_FIELDS = ("paper", "table", "data", "model", "samples", "metric", "tolerance")
ROW_TEXT = ("method", "metric", "table", "paper", "verdict", "reason")
ROW_NUMBERS = ("ours_mean", "ours_std", "difference")
TABLE_COLUMNS = ["method", "metric", "paper", "ours (mean ± std)", "difference", "verdict", "reason", "table"]
MAX_PLOT_BYTES = 5_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ReproductionRecordError(ValueError):
    """One line naming the record file and what is wrong with it."""


@dataclass(frozen=True)
class ReproductionRecord:
    """One checked record: its protocol as (field, text) pairs, the paper-vs-ours table, the
    per-row seed values and evidence, and the plots beside it."""

    name: str
    protocol: dict[str, str]
    seeds: int
    quick: bool
    seconds: float
    versions: str
    table: pd.DataFrame
    evidence: list[dict[str, Any]]
    plots: tuple[Path, ...] = ()


def read_all(root: Path | str) -> tuple[list[ReproductionRecord], list[str]]:
    """The checked records under ``<root>/reproductions/`` by name, each with its plots, and one
    problem line per file that is not shown."""
    folder = Path(root) / REPRODUCTIONS_FOLDER
    records, problems = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(read_record(path))
        except ReproductionRecordError as exc:
            problems.append(str(exc))
    plots = _plots(folder, [r.name for r in records])
    return [replace(r, plots=plots.get(r.name, ())) for r in records], problems


def read_record(path: Path) -> ReproductionRecord:
    """The record in ``path``, or ``ReproductionRecordError`` naming the file and field."""
    data = read_json(path, ReproductionRecordError)
    if not isinstance(data, dict):
        raise ReproductionRecordError(f"{path}: not a JSON object")
    if data.get("schema") != SCHEMA:
        raise ReproductionRecordError(f"{path}: field 'schema' is {data.get('schema')!r}, not {SCHEMA}")
    name = _field(path, data, "name", str)
    if not NAME_PATTERN.match(name) or name != path.stem:
        raise ReproductionRecordError(f"{path}: field 'name' {name!r} is not a plain name equal to the file's name")
    protocol = _field(path, data, "protocol", dict)
    shown = {key: _text(_field(path, protocol, key, (str, int, float), "protocol.")) for key in PROTOCOL_FIELDS}
    rows = [_row(path, i, row) for i, row in enumerate(_field(path, data, "rows", list))]
    versions = _field(path, data, "versions", dict) if "versions" in data else {}
    return ReproductionRecord(
        name=name, protocol=shown, seeds=_field(path, data, "seeds", int), quick=_field(path, data, "quick", bool),
        seconds=float(_field(path, data, "seconds", (int, float))),
        versions=", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        table=pd.DataFrame([r for r, _ in rows], columns=TABLE_COLUMNS), evidence=[e for _, e in rows],
    )  # fmt: skip


def _field(path: Path, data: dict, name: str, kinds: type | tuple[type, ...], prefix: str = "") -> Any:
    """``data[name]`` if it has one of the types ``kinds`` (a bool is no number here)."""
    value = data.get(name)
    allowed = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise ReproductionRecordError(f"{path}: field '{prefix}{name}' is missing or has type {type(value).__name__}")
    return value


def _row(path: Path, index: int, row: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """One table row as shown, and its per-seed values and evidence."""
    where = f"rows[{index}]"
    if not isinstance(row, dict):
        raise ReproductionRecordError(f"{path}: field '{where}' is not an object")
    for key in ROW_TEXT:
        if not isinstance(row.get(key, ""), str):
            raise ReproductionRecordError(f"{path}: field '{where}.{key}' is not text")
    for key in ROW_NUMBERS:
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ReproductionRecordError(f"{path}: field '{where}.{key}' is not a number")
    mean, std = row.get("ours_mean"), row.get("ours_std")
    ours = "—" if mean is None else f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"
    shown = {key: row.get(key, "") for key in ROW_TEXT}
    difference = row.get("difference")
    shown.update({"ours (mean ± std)": ours, "difference": math.nan if difference is None else float(difference)})
    return shown, {"method": shown["method"], "metric": shown["metric"], "values": row.get("values", []),
                   "evidence": row.get("evidence", {})}  # fmt: skip


def _text(value: str | int | float) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def _plots(folder: Path, names: list[str]) -> dict[str, tuple[Path, ...]]:
    """Per record name, the PNG files named ``NAME.png`` or ``NAME-PART.png`` beside it; a file
    whose name fits several records goes to the longest name."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.png")):
        owners = [n for n in names if path.stem == n or path.stem.startswith(f"{n}-")]
        if owners and NAME_PATTERN.match(path.stem) and _is_png(path):
            found.setdefault(max(owners, key=len), []).append(path)
    return {name: tuple(paths) for name, paths in found.items()}


def _is_png(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return path.stat().st_size <= MAX_PLOT_BYTES and file.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError:
        return False


def summary(records: list[ReproductionRecord]) -> pd.DataFrame:
    """One row per reproduction: its paper and table, seeds, time and how many cells got each verdict."""
    return pd.DataFrame(
        [{"reproduction": r.name, "verdicts": _verdict_counts(r.table), "seeds": r.seeds, "seconds": round(r.seconds),
          "quick": r.quick, "paper": r.protocol["paper"], "table": r.protocol["table"]} for r in records],
        columns=["reproduction", "verdicts", "seeds", "seconds", "quick", "paper", "table"],
    )  # fmt: skip


def _verdict_counts(table: pd.DataFrame) -> str:
    counts = table["verdict"].value_counts(sort=False)
    return ", ".join(f"{verdict}: {count}" for verdict, count in counts.items())


def protocol_frame(record: ReproductionRecord) -> pd.DataFrame:
    """The protocol as (field, value) rows of plain text, with the run's seeds, time and versions."""
    fields = {**record.protocol, "seeds": str(record.seeds), "quick run": "yes" if record.quick else "no",
              "time": f"{record.seconds:.0f} s", "versions": record.versions}  # fmt: skip
    return pd.DataFrame({"field": list(fields), "value": list(fields.values())})


def evidence_text(record: ReproductionRecord) -> str:
    """Each row's per-seed values and evidence, as indented JSON (shown as code)."""
    return json.dumps(record.evidence, indent=1, default=str)

"""The result store: one JSON file per (task, method, metric), written atomically.

Layout: ``<root>/<method>/results/<task>/<metric>.json`` (task names such as ``image/shapes``
become nested folders), so a submission's folder holds its own results and the leaderboard
reads every method's folder. Files are plain JSON (NaN scores are written as ``null``) and
are validated by ``record.validate`` on read, so a hand-edited or truncated file is reported
as one line naming the file and field instead of breaking the board.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .paths import submissions_dir
from .record import RecordError, ResultRecord


class ResultStore:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else submissions_dir()

    def path(self, task: str, method: str, metric: str) -> Path:
        for part in (*task.split("/"), method, metric):
            if part in ("", ".", "..") or "\\" in part:
                raise ValueError(f"name part {part!r} cannot be a path component (task {task!r})")
        if "/" in method or "/" in metric:
            raise ValueError(f"method and metric names cannot contain '/': {method!r}, {metric!r}")
        return self.root / method / "results" / task / f"{metric}.json"

    def write(self, record: ResultRecord) -> Path:
        """Write ``record`` atomically: a reader sees the old file or the new one, never half."""
        target = self.path(record.task, record.method, record.metric)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_strict_json(record.to_dict()), indent=2, sort_keys=True, allow_nan=False) + "\n"
        with tempfile.NamedTemporaryFile(
            "w", dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False, encoding="utf-8"
        ) as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, target)
        return target

    def read(self, path: Path | str) -> ResultRecord:
        """The record in ``path``; ``RecordError`` (one line, naming the file) if it is bad."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        if isinstance(data, dict) and isinstance(data.get("scores"), list):
            data["scores"] = [math.nan if s is None else s for s in data["scores"]]
        try:
            return ResultRecord.from_dict(data, str(path))
        except TypeError as exc:
            raise RecordError(f"{path}: field 'summary': {exc}") from None

    def records(self) -> tuple[list[ResultRecord], list[RecordError]]:
        """Every readable record under the root, and an error for each file that is not."""
        records, errors = [], []
        for path in sorted(self.root.glob("*/results/**/*.json")):
            try:
                records.append(self.read(path))
            except RecordError as exc:
                errors.append(exc)
        return records, errors

    def find(self, task: str, method: str, metric: str) -> ResultRecord | None:
        """The stored record for this key, ``None`` if there is none (``RecordError`` if bad)."""
        path = self.path(task, method, metric)
        return self.read(path) if path.exists() else None


def _strict_json(value: Any) -> Any:
    """Replace non-finite floats by ``None``: standard JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value

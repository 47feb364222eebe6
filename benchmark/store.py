"""The result store: one JSON file per (task, method, metric), written atomically.

Layout: ``<root>/<method>/results/<task>/<metric>.json`` (task names such as ``image/shapes``
become nested folders), so a submission's folder holds its own results and the leaderboard
reads every method's folder. Files are plain JSON (NaN scores are written as ``null``) and
are validated by ``record.validate`` on read, so a hand-edited or truncated file is reported
as one line naming the file and field instead of breaking the board. A record must also sit
where its own fields put it: a file under ``saliency/`` that claims another method (or task or
metric) is reported, never shown, so one folder cannot speak for another method.

Beside a (task, method)'s records lies its ``examples.npz`` (``examples.py``: the method's
explanations of a few fixed samples, for the board's pictures); it is not JSON, so it is never
read as a record.

Each method folder also holds its card (``method.json``, see ``card.py``). Folders whose name
starts with a dot (``xaiboard submit``'s staging folders) or an underscore (``_tasks``, the task
checks of ``task_check.py``; no method name can start with either) are not method folders, nor is
``reproductions/`` (``paths.REPRODUCTIONS_FOLDER``: ``xaiboard reproduce``'s records).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text, read_json
from .card import CARD_FILE, CardError, MethodCard, read_card, write_card
from .examples import EXAMPLES_FILE
from .paths import REPRODUCTIONS_FOLDER, results_dir
from .record import RecordError, ResultRecord


class ResultStore:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else results_dir()

    def path(self, task: str, method: str, metric: str) -> Path:
        for part in (*task.split("/"), method, metric):
            if part in ("", ".", "..") or "\\" in part:
                raise ValueError(f"name part {part!r} cannot be a path component (task {task!r})")
        if "/" in method or "/" in metric:
            raise ValueError(f"method and metric names cannot contain '/': {method!r}, {metric!r}")
        return self.root / method / "results" / task / f"{metric}.json"

    def examples_path(self, task: str, method: str) -> Path:
        """Where the (task, method)'s example explanations lie: beside its records."""
        return self.path(task, method, "examples").with_name(EXAMPLES_FILE)

    def write(self, record: ResultRecord) -> Path:
        """Write ``record`` atomically: a reader sees the old file or the new one, never half."""
        text = json.dumps(_strict_json(record.to_dict()), indent=2, sort_keys=True, allow_nan=False) + "\n"
        return atomic_write_text(self.path(record.task, record.method, record.metric), text)

    def read(self, path: Path | str) -> ResultRecord:
        """The record in ``path``; ``RecordError`` (one line, naming the file) if it is bad."""
        path = Path(path)
        data = read_json(path, RecordError)
        if isinstance(data, dict) and isinstance(data.get("scores"), list):
            data["scores"] = [math.nan if s is None else s for s in data["scores"]]
        try:
            return ResultRecord.from_dict(data, str(path))
        except TypeError as exc:
            raise RecordError(f"{path}: field 'summary': {exc}") from None

    def read_in_place(self, path: Path) -> ResultRecord:
        """``read``, plus the check that the record names the method, task and metric of its path."""
        record = self.read(path)
        expected = self.path(record.task, record.method, record.metric)
        if path != expected:
            relative = path.relative_to(self.root)
            raise RecordError(
                f"{path}: fields 'method', 'task', 'metric' ({record.method}, {record.task}, {record.metric}) "
                f"do not match the file's place {relative}"
            )
        return record

    def records(self) -> tuple[list[ResultRecord], list[RecordError]]:
        """Every readable record under the root, and one error for each file that is not.

        A file is bad when it is unreadable, fails the schema, or claims a method, task or
        metric other than its place in the tree says (one folder speaking for another method).
        """
        records, errors = [], []
        for path in self._record_paths():
            try:
                records.append(self.read_in_place(path))
            except (RecordError, ValueError) as exc:
                errors.append(exc if isinstance(exc, RecordError) else RecordError(f"{path}: {exc}"))
        return records, errors

    def cards(self) -> tuple[dict[str, MethodCard], list[CardError]]:
        """Every readable method card under the root (by method name), and one error per bad one."""
        cards, errors = {}, []
        for path in sorted(self.root.glob(f"*/{CARD_FILE}")):
            if not is_method_folder(path.parent.name):
                continue
            try:
                card = read_card(path)
            except CardError as exc:
                errors.append(exc)
            else:
                cards[card.name] = card
        return cards, errors

    def card(self, method: str) -> MethodCard | None:
        """The card of ``method``, ``None`` if it has none (``CardError`` if it is bad)."""
        path = self.root / method / CARD_FILE
        return read_card(path) if path.exists() else None

    def write_card(self, card: MethodCard) -> Path:
        return write_card(self.root / card.name, card)

    def _record_paths(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*/results/**/*.json") if is_method_folder(p.relative_to(self.root).parts[0]))

    def find(self, task: str, method: str, metric: str) -> ResultRecord | None:
        """The stored record for this key, ``None`` if there is none (``RecordError`` if bad)."""
        path = self.path(task, method, metric)
        return self.read(path) if path.exists() else None


def is_method_folder(name: str) -> bool:
    """Whether the folder ``name`` at a results root's top is a method's: not a dot folder
    (staging), not an underscore folder (``_tasks``) and not the reproductions' records."""
    return not name.startswith((".", "_")) and name != REPRODUCTIONS_FOLDER


def _strict_json(value: Any) -> Any:
    """Replace non-finite floats by ``None``: standard JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value

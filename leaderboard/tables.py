"""Precomputed board tables: every table the app shows, computed once per content of a results root.

The statistics behind the board (bootstrap intervals are in the records, but rank groups,
paired permutation tests against random, family ranks) take tens of seconds over the
committed results, far too long to redo on every page view. ``build(root)`` computes them
all and writes them to ``<root>/_board-tables.json`` (a file at the root, where the store only
looks for method folders), keyed by ``content_keys(root)``: hashes of every record and card file's
path and bytes, plus the source of the code that computes the tables (the board's key also covers
the task checks under ``<root>/_tasks/``, which the tables carry as read, see ``task_check_record.py``). ``load(root)`` returns
the stored tables when the key still matches, and otherwise recomputes the tasks whose records
changed and says so, so a results folder edited by hand (or new code) is never shown with stale
numbers. ``build`` reuses the stored tables of unchanged tasks too, which keeps it cheap at the
end of ``xaiboard run`` and ``submit``.

The stored file is plain JSON (never pickle: a results root is written by others), read back
with a fixed set of column types; a file that does not parse is treated as absent. Its tables
are checked when read but made into data frames only when first shown (``StoredFrames``): a
page shows a few of the hundreds a board holds, and making them all took a second.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xaiboard.benchmark.atomic import atomic_write_text
from xaiboard.benchmark.card import CARD_FILE
from xaiboard.benchmark.store import is_method_folder
from xaiboard.benchmark.task_check_record import CHECKS_FOLDER, read_checks
from xaiboard.leaderboard import aggregate, board as board_module
from xaiboard.leaderboard.board import Board, load_board

TABLES_FILE = "_board-tables.json"  # a leading "_": no method name (card.NAME_PATTERN) can take it
FORMAT = 1
#: the column types a stored table may have (anything else means the file is not ours)
DTYPES = frozenset({"float64", "int64", "Int64", "boolean", "bool", "object", "str"})
TASK_CARD_COLUMNS = ["task", "modality", "task_version", "task_fingerprint", "removal", "n_samples", "seed", "metrics", "methods"]


@dataclass(frozen=True)
class TaskTables:
    """One task's tables by name (``family_ranks``, ``family_groups``, ``metric_agreement``, ``cost``,
    ``metric_cost``, ``provenance``, ``cards``, ``card``, and ``metric:<name>`` per metric), the metrics by family
    with their directions, the families where a control ranks first (with the reason), and one
    line per table that could not be computed."""

    families: dict[str, list[str]]
    directions: dict[str, str]
    frames: Mapping[str, pd.DataFrame]
    caveats: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BoardTables:
    """Everything the app shows, for the records whose content hashes to ``keys``."""

    keys: Keys
    problems: tuple[str, ...]
    controls: tuple[str, ...]
    reference: str | None
    cards: dict[str, dict[str, Any]]
    tasks: dict[str, TaskTables]
    #: per task, its registered card (data, model, accuracy, removal, ground truth) as ``build``
    #: was given it; the app cannot import tasks, so it only has what was stored
    task_cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per task, its ``xaiboard task check`` record (``<root>/_tasks/``): shortcut scores and the
    #: ground-truth faithfulness check
    task_checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def task_check(self, task: str) -> tuple[dict[str, Any] | None, str]:
        """``task``'s check, and ``""`` if it was made for the version and fingerprint its records
        carry, else a sentence saying it is stale (``None, ""`` without a check)."""
        check = self.task_checks.get(task)
        settings = self.tasks[task].frames.get("card") if task in self.tasks else None
        if check is None or settings is None or settings.empty:
            return check, ""
        made = (check["task_version"], check["task_fingerprint"])
        recorded = set(zip(settings["task_version"], settings["task_fingerprint"]))
        if made in recorded:
            return check, ""
        return check, (f"the task check was made for version {made[0]} (fingerprint {made[1]}), not the version and "
                       f"fingerprint of the records shown")  # fmt: skip

    def flagged(self, task: str) -> list[str]:
        """Why ``task``'s ground-truth numbers need care: its current check is flagged (a model-free prior
        finds the truth) or failed (the model does not read the truth); empty when neither."""
        check, stale = self.task_check(task)
        if check is None or stale:
            return []
        lines = []
        if check["flagged"] and check.get("best_prior"):
            best = check["best_prior"]
            reversed_ = ", reversed," if best["auroc"] < 0.5 else ""
            lines.append(f"{task}: ground truth reachable without the model (model-free prior {best['prior']}{reversed_} "
                         f"has ground-truth AUROC {best['reach']:.2f})")  # fmt: skip
        if check["faithfulness"].get("passed") is False:
            lines.append(f"{task}: its model does not read the ground truth (removing it drops the target "
                         f"probability less than twice as much as removing as many random features outside it)")  # fmt: skip
        return lines

    def overview(self) -> pd.DataFrame:
        """Every task's family rank groups in one frame, with ``task`` and ``modality`` columns."""
        blocks = [
            t.frames["family_groups"].assign(task=name, modality=name.split("/")[0])
            for name, t in self.tasks.items()
            if "family_groups" in t.frames
        ]
        if not blocks:
            return pd.DataFrame(columns=["task", "modality", "method", "is_control", "family", "mean_rank", "rank_group"])
        frame = pd.concat(blocks, ignore_index=True)
        return frame[["task", "modality", "method", "is_control", "family", "mean_rank", "rank_group"]]


#: per file path, its signature (inode, size, mtime, ctime in ns) and the SHA-256 of its bytes
Digests = dict[str, tuple[tuple[int, int, int, int], bytes]]
#: how long after its last change a file's hash may be remembered (see ``_digest``)
SETTLED_NS = 2_000_000_000


@dataclass(frozen=True)
class Keys:
    """The content hash of a results root (``board``) and of each task's share of it (``tasks``)."""

    board: str
    tasks: dict[str, str]


def content_keys(root: Path | str, digests: Digests | None = None) -> Keys:
    """Hashes of every record and card under ``root`` (paths and bytes) and of the table code.

    A task's key covers its own record files, every card (cards say which methods are
    controls) and the code; the board's key covers every task's key, so a hand edit changes
    the board's key and exactly the edited task's. ``digests`` (the app keeps one per process)
    remembers each file's hash with its signature, so an unchanged file is not read again.
    """
    root = Path(root)
    common = hashlib.sha256(f"format {FORMAT}\n".encode())
    for path in (Path(aggregate.__file__), Path(board_module.__file__), Path(__file__)):
        common.update(path.read_bytes())
    per_task: dict[str, Any] = {}
    for path in _data_files(root):
        parts = path.relative_to(root).parts
        entry = b"/".join(p.encode() for p in parts) + b"\0" + _digest(path, digests)
        if parts[1:] == (CARD_FILE,):
            common.update(entry)
        else:
            per_task.setdefault("/".join(parts[2:-1]), hashlib.sha256()).update(entry)
    prefix = common.hexdigest()
    tasks = {task: hashlib.sha256((prefix + digest.hexdigest()).encode()).hexdigest() for task, digest in per_task.items()}
    board = hashlib.sha256((prefix + json.dumps(sorted(tasks.items())) + _checks_digest(root, digests)).encode()).hexdigest()
    return Keys(board, tasks)


def _checks_digest(root: Path, digests: Digests | None) -> str:
    """Hash of the task checks' paths and bytes: part of the board's key only (a check changes no
    task's statistics, so editing one recomputes nothing but the check's own display). Each file's
    hash comes from ``digests`` like the records', so an app rerun reads no unchanged check."""
    digest = hashlib.sha256()
    for path in sorted((root / CHECKS_FOLDER).glob("*.json")):
        digest.update(path.name.encode() + b"\0" + _digest(path, digests))
    return digest.hexdigest()


def _digest(path: Path, digests: Digests | None) -> bytes:
    """The SHA-256 of ``path``'s bytes, from ``digests`` when its signature is the one stored there.

    The signature (inode, size, modification and change time) changes on every write; the change
    time cannot be set back by any tool (``touch``, ``cp -p``, ``rsync`` only set the modification
    time). A file changed within ``SETTLED_NS`` is not remembered, as a second write in the same
    clock tick would leave its signature as it was (git's "racy clean" rule).
    """
    if digests is None:
        return hashlib.sha256(path.read_bytes()).digest()
    stat = path.stat()
    signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    known = digests.get(str(path))
    if known is not None and known[0] == signature:
        return known[1]
    digest = hashlib.sha256(path.read_bytes()).digest()
    if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > SETTLED_NS:
        digests[str(path)] = (signature, digest)
    return digest


def _data_files(root: Path) -> list[Path]:
    """The files the board reads: records and cards in method folders (as ``ResultStore``)."""
    found = [*root.glob("*/results/**/*.json"), *root.glob(f"*/{CARD_FILE}")]
    return sorted(p for p in found if is_method_folder(p.relative_to(root).parts[0]))


def compute(board: Board, keys: Keys, previous: BoardTables | None = None) -> BoardTables:
    """Every table over ``board``; a table that fails becomes one line in its task's ``errors``.

    A task whose key is the same in ``previous`` keeps its tables from there (its records and
    the cards are byte for byte the same, so its statistics are too).
    """
    reused = previous.tasks if previous is not None else {}
    same = {t for t, key in keys.tasks.items() if previous is not None and previous.keys.tasks.get(t) == key}
    tasks = {t: reused[t] if t in same and t in reused else _task_tables(board, t) for t in aggregate.task_names(board)}
    cards = {name: card.to_dict() for name, card in sorted(board.cards.items())}
    task_cards = previous.task_cards if previous is not None else {}
    return BoardTables(keys, board.problems, tuple(sorted(board.controls)), board.reference, cards, tasks, task_cards)


def _task_tables(board: Board, task: str) -> TaskTables:
    families = aggregate.metrics_by_family(board, task)
    frames: dict[str, pd.DataFrame] = {}
    errors: dict[str, str] = {}
    directions: dict[str, str] = {}

    def attempt(name: str, what: str, make: Callable[[], pd.DataFrame]) -> None:
        try:
            frames[name] = make()
        except Exception as exc:  # noqa: BLE001  (a record may be malformed in a way no check foresaw)
            errors[name] = f"{what}: {type(exc).__name__}: {exc}"

    for metric in (m for metrics in families.values() for m in metrics):
        attempt(f"metric:{metric}", f"{task}/{metric}", lambda m=metric: aggregate.leaderboard_table(board, task, m))
        directions[metric] = _direction(board, task, metric)
    tables = {name.removeprefix("metric:"): frame for name, frame in frames.items()}
    attempt("family_groups", f"{task}: family ranks", lambda: _groups(board, task, families, tables))
    if "family_groups" in frames:
        frames["family_ranks"] = _family_ranks(frames["family_groups"], list(families))
    attempt("metric_agreement", f"{task}: metric agreement", lambda: aggregate.metric_agreement(board, task, tables))
    for name, what, make in (
        ("cards", "method cards", aggregate.cards_table),
        ("cost", "cost", aggregate.cost_table),
        ("metric_cost", "metric cost", aggregate.metric_cost_table),
        ("provenance", "provenance", aggregate.provenance_table),
        ("card", "task card", task_card),
    ):
        attempt(name, f"{task}: {what}", lambda make=make: make(board, task))
    caveats = aggregate.uninformative_families(board, frames["family_groups"]) if "family_groups" in frames else {}
    return TaskTables(families, directions, frames, caveats, errors)


def _direction(board: Board, task: str, metric: str) -> str:
    try:
        return aggregate.direction_of(board, task, metric)
    except ValueError:
        return ""


def _groups(board: Board, task: str, families: dict[str, list[str]], tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``family_rank_groups`` from the already computed tables; a missing one fails it as it failed."""
    missing = [m for metrics in families.values() for m in metrics if m not in tables]
    if missing:
        return aggregate.family_rank_groups(board, task)  # raises what the missing table raised
    return aggregate.family_rank_groups(board, task, tables)


def _family_ranks(groups: pd.DataFrame, families: list[str]) -> pd.DataFrame:
    """``aggregate.family_ranks`` from the family rank groups (same rows, columns and order)."""
    ranks = groups.pivot(index="method", columns="family", values="mean_rank")
    ranks = ranks.reindex(columns=[f for f in families if f in ranks.columns])
    ranks = ranks.sort_values(list(ranks.columns)).reset_index()
    controls = groups.drop_duplicates("method").set_index("method")["is_control"]
    ranks.insert(1, "is_control", ranks["method"].map(controls).astype(bool))
    ranks.columns.name = None
    return ranks


def task_card(board: Board, task: str) -> pd.DataFrame:
    """What the records say about ``task``: one row per distinct version, fingerprint, removal,
    sample count and seed they were produced under (one row when the board is consistent)."""
    frame = pd.DataFrame(
        [{"task": r.task, "modality": task.split("/")[0], "task_version": r.task_version,
          "task_fingerprint": r.task_fingerprint, "removal": r.removal, "n_samples": r.n_samples, "seed": r.seed,
          "metric": r.metric, "method": r.method}
         for r in board.records if r.task == task]
    )  # fmt: skip
    keys = TASK_CARD_COLUMNS[:-2]
    counts = frame.groupby(keys, as_index=False).agg(metrics=("metric", "nunique"), methods=("method", "nunique"))
    return counts[TASK_CARD_COLUMNS]


def build(root: Path | str, task_cards: dict[str, dict[str, Any]] | None = None) -> tuple[Path, int]:
    """Compute the tables over ``root`` (reusing the stored ones of unchanged tasks) and write
    them beside the records, with ``task_cards`` when given (else the stored ones); the file's
    path and how many tasks were recomputed."""
    root = Path(root)
    tables, recomputed, _ = _fresh(root)
    if task_cards is not None:
        tables = replace(tables, task_cards=task_cards)
    text = json.dumps(to_dict(tables), allow_nan=False, default=plain_value) + "\n"
    return atomic_write_text(root / TABLES_FILE, text), recomputed


def load(root: Path | str) -> tuple[BoardTables, str]:
    """The tables over ``root`` and how they were obtained: ``""`` when the stored file matches
    the records, otherwise a sentence saying what was recomputed and why."""
    tables, recomputed, why = _fresh(Path(root))
    if not why:
        return tables, ""
    return tables, f"Statistics recomputed for {recomputed} of {len(tables.tasks)} task(s): {why}."


def _fresh(root: Path) -> tuple[BoardTables, int, str]:
    """Up-to-date tables, how many tasks had to be recomputed, and why (``""``: none)."""
    keys = content_keys(root)
    stored, why = read_stored(root / TABLES_FILE)
    if stored is not None and stored.keys == keys:
        return stored, 0, ""
    why = why or "the records, task checks (or the board's code) changed since `xaiboard board build`"
    checks, unreadable = read_checks(root)
    tables = compute(load_board(root), keys, stored)
    tables = replace(tables, task_checks=checks, problems=(*tables.problems, *unreadable))
    unchanged = sum(1 for t in tables.tasks if stored is not None and tables.tasks[t] is stored.tasks.get(t))
    return tables, len(tables.tasks) - unchanged, why


def read_stored(path: Path) -> tuple[BoardTables | None, str]:
    """The tables stored in ``path``; ``None`` and why when there are none or they are unreadable."""
    if not path.exists():
        return None, "there are no precomputed statistics (`xaiboard board build` writes them)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            return None, f"the precomputed statistics are in another format than {FORMAT}"
        return from_dict(data), ""
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return None, f"the precomputed statistics could not be read ({type(exc).__name__})"


def to_dict(tables: BoardTables) -> dict[str, Any]:
    """``tables`` as JSON-ready data (frames as columns, types and rows; NaN and NA as null)."""
    return {
        "format": FORMAT,
        "keys": {"board": tables.keys.board, "tasks": tables.keys.tasks},
        "problems": list(tables.problems),
        "controls": list(tables.controls),
        "reference": tables.reference,
        "cards": tables.cards,
        "task_cards": tables.task_cards,
        "task_checks": tables.task_checks,
        "tasks": {
            name: {"families": t.families, "directions": t.directions, "caveats": t.caveats, "errors": t.errors,
                   "frames": {k: frame_to_dict(f) for k, f in t.frames.items()}}
            for name, t in tables.tasks.items()
        },  # fmt: skip
    }


class StoredFrames(Mapping[str, pd.DataFrame]):
    """A task's stored tables (``frame_to_dict`` form), checked now and each made into a data
    frame when first asked for (then kept: the tables of one content never change)."""

    def __init__(self, stored: dict[str, dict[str, Any]]) -> None:
        for data in stored.values():
            check_frame(data)
        self._stored = stored
        self._made: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._made:
            self._made[name] = frame_from_dict(self._stored[name])
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)


def from_dict(data: dict[str, Any]) -> BoardTables:
    tasks = {
        name: TaskTables(t["families"], t["directions"], StoredFrames(t["frames"]), t["caveats"], t["errors"])
        for name, t in data["tasks"].items()
    }
    keys = Keys(str(data["keys"]["board"]), {str(t): str(k) for t, k in data["keys"]["tasks"].items()})
    return BoardTables(keys, tuple(data["problems"]), tuple(data["controls"]), data["reference"],
                       data["cards"], tasks, data.get("task_cards", {}), data.get("task_checks", {}))  # fmt: skip


def frame_to_dict(frame: pd.DataFrame) -> dict[str, Any]:
    values = frame.astype(object).where(frame.notna(), None)
    return {"columns": list(frame.columns), "dtypes": [str(t) for t in frame.dtypes], "data": values.to_numpy().tolist()}


def check_frame(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless ``data`` is a table as ``frame_to_dict`` writes it."""
    unknown = set(data["dtypes"]) - DTYPES
    if unknown:
        raise ValueError(f"column type {sorted(unknown)[0]!r} is not one the board writes")
    width = len(data["columns"])
    if len(data["dtypes"]) != width or any(len(row) != width for row in data["data"]):
        raise ValueError("a stored table's rows, columns and column types do not match")


def frame_from_dict(data: dict[str, Any]) -> pd.DataFrame:
    check_frame(data)
    frame = pd.DataFrame(data["data"], columns=data["columns"], dtype=object)
    return frame.astype(dict(zip(data["columns"], data["dtypes"])))


def plain_value(value: object) -> object:
    """numpy scalars as Python numbers for ``json.dumps`` (NaN ones as null)."""
    if isinstance(value, np.generic):
        item = value.item()
        return None if isinstance(item, float) and np.isnan(item) else item
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

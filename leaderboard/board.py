"""What the board shows: the records and cards of a results root that pass every check.

The board reads data, never code: it imports no method (so no Captum or PyG), and learns
from the cards (``method.json``) which methods are controls and which one is the random
reference. A results root is written by untrusted submitters, so on top of the store's own
checks (schema, a record sitting where its fields put it) a record is kept only if

- its task, method and metric are plain names (``card.NAME_PATTERN``, tasks one such name per
  ``/``-separated part), so a name can never carry markup or a path;
- its family and direction are the registered metric's (for a metric the registry does not
  know: those most of its records on the task carry), so one file cannot flip a ranking;
- no other record has the same (task, method, metric) (the tables assume one row per method).

Everything rejected becomes one line in ``Board.problems`` (naming the file, or the key for
duplicates), so each bad file is listed exactly once and nothing rejected is shown.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xaiboard.benchmark.card import NAME_PATTERN, MethodCard
from xaiboard.benchmark.record import ResultRecord
from xaiboard.benchmark.registry import METRICS
from xaiboard.benchmark.store import ResultStore

#: names the file a record came from, for problem lines
Source = Callable[[ResultRecord], str]
#: the problem line of a record, ``None`` if it passes
Check = Callable[[ResultRecord], str | None]


@dataclass(frozen=True)
class Board:
    """Checked records, the methods' cards, and one line per thing that could not be shown."""

    records: tuple[ResultRecord, ...]
    cards: dict[str, MethodCard] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def controls(self) -> frozenset[str]:
        """Methods whose card says they are a control (``control``, or any ``control_kind``)."""
        return frozenset(name for name, card in self.cards.items() if card.control or card.control_kind)

    @property
    def reference(self) -> str | None:
        """The random control every method is compared with; ``None`` unless exactly one card claims it."""
        claims = _random_claims(self.cards)
        return claims[0] if len(claims) == 1 else None


def load_board(root: Path | str) -> Board:
    """The board over the results root ``root`` (see the module docstring for what is checked)."""
    store = ResultStore(root)
    records, record_errors = store.records()
    cards, card_errors = store.cards()
    unreadable = [str(error) for error in (*record_errors, *card_errors)]
    return make_board(records, cards, unreadable, source=lambda r: str(store.path(r.task, r.method, r.metric)))


def make_board(
    records: Iterable[ResultRecord],
    cards: dict[str, MethodCard] | None = None,
    problems: Sequence[str] = (),
    source: Source | None = None,
) -> Board:
    """Check ``records`` and ``cards``; ``source(record)`` names a record's file in problem lines."""
    cards = dict(cards or {})
    source = source or _key_name
    found = list(problems)
    named = _keep(records, lambda r: _name_problem(r, source(r)), found)
    agreeing = _keep(named, _disagreement_check(named, source), found)
    unique = _without_duplicates(agreeing, found)
    claims = _random_claims(cards)
    if len(claims) > 1:
        names = ", ".join(claims)
        found.append(f"several method cards claim control_kind 'random' ({names}): no comparison with random is shown")
    return Board(tuple(unique), cards, tuple(found))


def _key_name(record: ResultRecord) -> str:
    return f"{record.task}/{record.method}/{record.metric}"


def _keep(records: Iterable[ResultRecord], problem_of: Check, found: list[str]) -> list[ResultRecord]:
    """The records without a problem; the problems go to ``found``."""
    kept = []
    for record in records:
        problem = problem_of(record)
        if problem:
            found.append(problem)
        else:
            kept.append(record)
    return kept


def _name_problem(record: ResultRecord, source: str) -> str | None:
    parts = {"task": record.task.split("/"), "method": [record.method], "metric": [record.metric]}
    for name, values in parts.items():
        if not all(NAME_PATTERN.match(value) for value in values):
            return f"{source}: field '{name}' {getattr(record, name)!r} is not a valid name"
    return None


def _disagreement_check(records: Sequence[ResultRecord], source: Source) -> Check:
    """A check that names a record whose family or direction differ from its metric's."""
    expected = _expected_definitions(records)

    def problem(record: ResultRecord) -> str | None:
        family, direction = expected[(record.task, record.metric)]
        for name, value, want in (("family", record.family, family), ("direction", record.direction, direction)):
            if value != want:
                return f"{source(record)}: field '{name}' is {value!r} but metric {record.metric!r} has {want!r}"
        return None

    return problem


def _expected_definitions(records: Sequence[ResultRecord]) -> dict[tuple[str, str], tuple[str, str]]:
    """Per (task, metric), the (family, direction) its records must carry: the registry's, else the majority's."""
    import xaiboard.benchmark.metrics  # noqa: F401  (registers the built-in metrics; imported here, not at the top, so the app can show precomputed tables without loading torch)

    votes: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in records:
        votes[(r.task, r.metric)][(r.family, r.direction)] += 1
    expected = {}
    for (task, metric), counts in votes.items():
        if metric in METRICS:
            cls = METRICS.factory(metric)
            expected[(task, metric)] = (cls.family, cls.direction)
        else:
            expected[(task, metric)] = max(sorted(counts), key=counts.__getitem__)
    return expected


def _without_duplicates(records: Sequence[ResultRecord], found: list[str]) -> list[ResultRecord]:
    """Records whose (task, method, metric) is unique; a duplicated key shows none of its records."""
    counts = Counter(r.key for r in records)
    for (task, method, metric), count in sorted(counts.items()):
        if count > 1:
            found.append(f"{task}/{method}/{metric}: {count} records for one task, method and metric; none is shown")
    return [r for r in records if counts[r.key] == 1]


def _random_claims(cards: dict[str, MethodCard]) -> list[str]:
    return sorted(name for name, card in cards.items() if card.control_kind == "random")

"""Method cards: ``<results root>/<method>/method.json``, what the board knows about a method.

The leaderboard reads cards, never a method's code: whether a row is a control, which control
is the ``random`` reference, the description and paper a reader sees, and the code hash the
records must match all come from here. Baselines get a card when the runner evaluates them;
``xaiboard submit`` writes one for a submitted method from ``--card`` or the card flags.

Cards are data from untrusted submitters: ``validate`` checks every field's type and
``read_card`` raises ``CardError`` naming the file and field, so one bad card is one line in
the board's "could not be read" list.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_write_text, read_json

if TYPE_CHECKING:  # the board reads cards without importing any method code
    from xaiboard.methods.base import Explainer

CARD_FILE = "method.json"
#: what a control is a control for; the board compares every method against the ``random`` kind
CONTROL_KINDS: tuple[str, ...] = ("", "random", "model-independent")
#: how a method works, as the board groups methods ("" = not declared, e.g. a submission)
FAMILIES: tuple[str, ...] = ("", "gradient", "perturbation", "surrogate", "attention", "graph-specific", "amortised", "control")
#: how its cost grows, per explained sample ("" = not declared)
COST_CLASSES: tuple[str, ...] = (
    "", "no model pass", "one pass", "k passes", "one pass per feature", "optimisation per sample",
    "trained per task",
)
#: a method name is one path component a URL, a shell and a filesystem all take as is
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class CardError(ValueError):
    """A method card that cannot be read or does not match the schema."""


@dataclass
class MethodCard:
    """Everything the board shows about a method, independent of its results.

    ``kind`` is ``baseline`` (shipped with xaiboard), ``submission`` (run by ``xaiboard submit``
    in the sandbox) or ``precomputed`` (explanations computed outside the harness, so metrics
    that re-run the method are not applicable).
    """

    name: str
    description: str = ""
    authors: str = ""
    paper: str = ""
    url: str = ""
    licence: str = ""
    modalities: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    code_hash: str = ""
    control: bool = False
    control_kind: str = ""
    family: str = ""
    cost_class: str = ""
    passes: str = ""
    kind: str = "baseline"
    submitted_at: str = ""
    xaiboard_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<card>") -> MethodCard:
        validate_card(data, source)
        return cls(**data)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "authors": str,
    "paper": str,
    "url": str,
    "licence": str,
    "modalities": list,
    "parameters": dict,
    "code_hash": str,
    "control": bool,
    "control_kind": str,
    "family": str,
    "cost_class": str,
    "passes": str,
    "kind": str,
    "submitted_at": str,
    "xaiboard_version": str,
}
KINDS: tuple[str, ...] = ("baseline", "submission", "precomputed")


def validate_card(data: Any, source: str) -> None:
    """Raise ``CardError("<source>: field '<f>' ...")`` unless ``data`` is a valid card."""
    if not isinstance(data, dict):
        raise CardError(f"{source}: expected a JSON object, got {type(data).__name__}")
    unknown = set(data) - {f.name for f in fields(MethodCard)}
    if unknown:
        raise CardError(f"{source}: unknown field '{sorted(unknown)[0]}'")
    if "name" not in data:
        raise CardError(f"{source}: missing field 'name'")
    for name, value in data.items():
        if not isinstance(value, _TYPES[name]):
            raise CardError(f"{source}: field '{name}' has type {type(value).__name__}")
    if not NAME_PATTERN.match(data["name"]):
        raise CardError(f"{source}: field 'name' {data['name']!r} is not a valid method name")
    if data.get("control_kind", "") not in CONTROL_KINDS:
        raise CardError(f"{source}: field 'control_kind' must be one of {CONTROL_KINDS}; got {data['control_kind']!r}")
    for name, allowed in (("family", FAMILIES), ("cost_class", COST_CLASSES)):
        if data.get(name, "") not in allowed:
            raise CardError(f"{source}: field '{name}' must be one of {allowed}; got {data[name]!r}")
    if data.get("kind", "baseline") not in KINDS:
        raise CardError(f"{source}: field 'kind' must be one of {KINDS}; got {data['kind']!r}")
    if not all(isinstance(m, str) for m in data.get("modalities", [])):
        raise CardError(f"{source}: field 'modalities' must hold strings")


def read_card(path: Path | str) -> MethodCard:
    """The card in ``path``; ``CardError`` (one line, naming the file) if it is bad."""
    path = Path(path)
    card = MethodCard.from_dict(read_json(path, CardError), str(path))
    if card.name != path.parent.name:
        raise CardError(f"{path}: field 'name' is {card.name!r} but the folder is {path.parent.name!r}")
    return card


def write_card(folder: Path | str, card: MethodCard) -> Path:
    """Write ``folder/method.json`` atomically (temp file + ``os.replace``)."""
    validate_card(card.to_dict(), f"card of {card.name!r}")
    text = json.dumps(card.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write_text(Path(folder) / CARD_FILE, text)


def baseline_card(explainer: Explainer) -> MethodCard:
    """The card of a method the harness imports itself (a baseline, a control, a ``--plugin``).

    Read off the class: ``description``, ``paper`` and ``authors`` (when it declares them), its
    modalities and parameters, the control flag, ``control_kind`` (a control's kind; ``random``
    marks the reference every method is tested against), its family, cost class and model
    passes per explained sample. No timestamp, so
    regenerating the committed baselines rewrites identical cards.
    """
    return MethodCard(
        name=explainer.name,
        description=explainer.description,
        authors=explainer.authors,
        paper=explainer.paper,
        modalities=sorted(explainer.modalities),
        parameters=json.loads(json.dumps(explainer.params, sort_keys=True, default=str)),
        code_hash=explainer.code_hash(),
        control=bool(explainer.control),
        control_kind=explainer.control_kind,
        family=explainer.family,
        cost_class=explainer.cost_class,
        passes=explainer.passes_per_sample(),
        kind="baseline",
        xaiboard_version=xaiboard_version(),
    )


def xaiboard_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xaiboard")
    except PackageNotFoundError:
        return "unknown"

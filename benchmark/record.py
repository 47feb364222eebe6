"""Result records: one per (task, method, metric), with everything needed to trust and redo it.

A record is a result (``status == "ok"``: per-sample summary with a bootstrap CI), an error
(``status == "error"``: the message and traceback, so a crashing or NaN-producing method shows
up on the board instead of silently vanishing), or ``"not-applicable"`` (the metric cannot be
computed for this method, e.g. it must re-run a method that was submitted as precomputed
explanations; ``reason`` says why, and the board shows it as such rather than as a gap).

Besides what was computed, a record carries what it was computed *from*: the evaluated
split and sample ids, the task's fingerprint (code, removal and the model's parameters as loaded) and the
metric's code hash. Resume recomputes a record when any of them differs, so a fixed metric bug
or a retrained model never leaves stale numbers behind.

Two costs are recorded: ``cost``, what one explanation of the method cost (per sample), and
``metric_cost``, what computing this metric cost over the whole batch (seconds and model
passes). Work that several metrics share (removal curves, re-explanations) is charged to the
metric that needed it first, so summing ``metric_cost`` over a pair's metrics counts every
pass once.

A metric may report values that qualify its scores in ``details`` (a flat mapping of names to
numbers, e.g. MPRT's share of features left out as zero in both maps); records written before
the field existed read back with ``{}``, so adding it changed no stored file.

``validate`` is the schema: reading a file that does not satisfy it raises ``RecordError``
naming the file and the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

SCHEMA_VERSION = 3

Status = Literal["ok", "error", "not-applicable"]
#: what ``metric_cost`` records: the metric's own work over the whole batch (``Cost.spent``)
METRIC_COST_FIELDS: tuple[str, ...] = ("seconds", "forward_passes", "backward_passes")
STATUSES: tuple[str, ...] = ("ok", "error", "not-applicable")
DIRECTIONS: tuple[str, ...] = ("higher", "lower")
FAMILIES: tuple[str, ...] = ("faithfulness", "robustness", "user_proxy", "sanity", "cost")
#: the model passes' precisions (``precision.py``)
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


class RecordError(ValueError):
    """A result file that cannot be read or does not match the schema."""


class NotApplicable(Exception):
    """Raised by a task hook or a method when the method cannot apply to the task (a CAM method
    on a model without a convolution): the runner records every metric of the pair as
    ``not-applicable`` with the message as the reason, instead of an error."""


@dataclass
class Summary:
    mean: float
    median: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    n_nan: int = 0
    confidence: float = 0.95


@dataclass
class ResultRecord:
    task: str
    task_version: str
    method: str
    method_hash: str
    metric: str
    family: str
    direction: str
    status: Status
    seed: int
    n_samples: int
    removal: str
    device: str
    task_fingerprint: str = ""
    metric_hash: str = ""
    sample_ids: list[int] = field(default_factory=list)
    metric_params: dict[str, Any] = field(default_factory=dict)
    method_params: dict[str, Any] = field(default_factory=dict)
    summary: Summary | None = None
    scores: list[float] = field(default_factory=list)
    cost: dict[str, Any] = field(default_factory=dict)
    metric_cost: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRIC_COST_FIELDS, 0))
    details: dict[str, float | None] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    traceback: str | None = None
    created: str = ""
    #: the evaluated split; records written before the field existed read as ``"test"``
    split: str = "test"
    #: the model passes' precision (``precision.py``); records written before the field existed
    #: were computed in float32 and read as ``"fp32"``
    precision: str = "fp32"
    schema_version: int = SCHEMA_VERSION

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.task, self.method, self.metric)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<record>") -> ResultRecord:
        validate(data, source)
        payload = dict(data)
        if payload.get("summary") is not None:
            payload["summary"] = Summary(**payload["summary"])
        return cls(**payload)


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "task": str,
    "task_version": str,
    "method": str,
    "method_hash": str,
    "metric": str,
    "family": str,
    "direction": str,
    "status": str,
    "seed": int,
    "n_samples": int,
    "removal": str,
    "device": str,
    "task_fingerprint": str,
    "metric_hash": str,
    "sample_ids": list,
    "metric_params": dict,
    "method_params": dict,
    "scores": list,
    "cost": dict,
    "metric_cost": dict,
    "versions": dict,
    "schema_version": int,
}
_SUMMARY: dict[str, type | tuple[type, ...]] = {
    "mean": (int, float),
    "median": (int, float),
    "std": (int, float),
    "ci_low": (int, float),
    "ci_high": (int, float),
    "n": int,
}


def validate(data: Any, source: str) -> None:
    """Raise ``RecordError("<source>: field '<f>' ...")`` unless ``data`` is a valid record."""
    if not isinstance(data, dict):
        raise RecordError(f"{source}: expected a JSON object, got {type(data).__name__}")
    for name, kind in _REQUIRED.items():
        if name not in data:
            raise RecordError(f"{source}: missing field '{name}'")
        if not isinstance(data[name], kind):
            raise RecordError(f"{source}: field '{name}' has type {type(data[name]).__name__}")
    unknown = set(data) - {f.name for f in fields(ResultRecord)}
    if unknown:
        raise RecordError(f"{source}: unknown field '{sorted(unknown)[0]}'")
    _check_values(data, source)
    if data["status"] == "ok":
        _check_summary(data, source)


def _check_values(data: dict[str, Any], source: str) -> None:
    """The fields whose *values*, not only types, the board relies on."""
    for name, allowed in (("status", STATUSES), ("direction", DIRECTIONS), ("family", FAMILIES)):
        if data[name] not in allowed:
            raise RecordError(f"{source}: field '{name}' must be one of {', '.join(allowed)}; got {data[name]!r}")
    if data["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"{source}: field 'schema_version' is {data['schema_version']}, expected {SCHEMA_VERSION}")
    if not isinstance(data.get("split", "test"), str):
        raise RecordError(f"{source}: field 'split' has type {type(data['split']).__name__}")
    if data.get("precision", "fp32") not in PRECISIONS:
        raise RecordError(f"{source}: field 'precision' must be one of {', '.join(PRECISIONS)}; got {data['precision']!r}")
    for name in ("error", "reason", "traceback", "created"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise RecordError(f"{source}: field '{name}' has type {type(data[name]).__name__}")
    required_text = {"error": "error", "not-applicable": "reason"}.get(data["status"])
    if required_text and not data.get(required_text):
        raise RecordError(f"{source}: field '{required_text}' is required when status is {data['status']!r}")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in data["sample_ids"]):
        raise RecordError(f"{source}: field 'sample_ids' must hold integers")
    if not all(_is_number(s) or s is None for s in data["scores"]):
        raise RecordError(f"{source}: field 'scores' must hold numbers (null for NaN)")
    _check_metric_cost(data["metric_cost"], source)
    _check_details(data.get("details", {}), source)


def _check_metric_cost(spent: dict[str, Any], source: str) -> None:
    """``metric_cost`` holds exactly ``METRIC_COST_FIELDS``, each a number >= 0."""
    for name in METRIC_COST_FIELDS:
        if not _is_number(spent.get(name)) or spent[name] < 0:
            raise RecordError(f"{source}: field 'metric_cost.{name}' is missing or not a number >= 0")
    unknown = set(spent) - set(METRIC_COST_FIELDS)
    if unknown:
        raise RecordError(f"{source}: unknown field 'metric_cost.{sorted(unknown)[0]}'")


def _check_details(details: Any, source: str) -> None:
    """``details`` (optional) maps names to numbers, ``null`` standing for NaN as in ``scores``."""
    if not isinstance(details, dict):
        raise RecordError(f"{source}: field 'details' has type {type(details).__name__}")
    for name, value in details.items():
        if not (_is_number(value) or value is None):
            raise RecordError(f"{source}: field 'details.{name}' must be a number (null for NaN)")


def _check_summary(data: dict[str, Any], source: str) -> None:
    summary = data.get("summary")
    if not isinstance(summary, dict):
        raise RecordError(f"{source}: field 'summary' is required when status is 'ok'")
    for name, kind in _SUMMARY.items():
        value = summary.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RecordError(f"{source}: field 'summary.{name}' is missing or not a number")
    unknown = set(summary) - {f.name for f in fields(Summary)}
    if unknown:
        raise RecordError(f"{source}: unknown field 'summary.{sorted(unknown)[0]}'")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

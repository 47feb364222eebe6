"""Result records: one per (task, method, metric), with everything needed to trust and redo it.

A record is either a result (``status == "ok"``: per-sample summary with a bootstrap CI) or an
error (``status == "error"``: the message and traceback, so a crashing or NaN-producing method
shows up on the board instead of silently vanishing). ``validate`` is the schema: reading a
file that does not satisfy it raises ``RecordError`` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

SCHEMA_VERSION = 1

Status = Literal["ok", "error"]


class RecordError(ValueError):
    """A result file that cannot be read or does not match the schema."""


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
    metric_params: dict[str, Any] = field(default_factory=dict)
    method_params: dict[str, Any] = field(default_factory=dict)
    summary: Summary | None = None
    scores: list[float] = field(default_factory=list)
    cost: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    created: str = ""
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
    "metric_params": dict,
    "method_params": dict,
    "scores": list,
    "cost": dict,
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
    if data["status"] not in ("ok", "error"):
        raise RecordError(f"{source}: field 'status' must be 'ok' or 'error', got {data['status']!r}")
    if data["status"] == "error" and not data.get("error"):
        raise RecordError(f"{source}: field 'error' is required when status is 'error'")
    if data["status"] == "ok":
        summary = data.get("summary")
        if not isinstance(summary, dict):
            raise RecordError(f"{source}: field 'summary' is required when status is 'ok'")
        for name, kind in _SUMMARY.items():
            if not isinstance(summary.get(name), kind):
                raise RecordError(f"{source}: field 'summary.{name}' is missing or not a number")

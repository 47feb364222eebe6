"""A reproduction: a published table rerun on our harness, the paper's number beside ours.

Published numbers for explainers are hard to reproduce (which samples are scored, which
checkpoint, which sign convention), so a reproduction is a *declared protocol*: the data, the
model, the samples scored, the metric as the paper defines it, the seeds, and the published
numbers with their table id and the tolerance we hold ourselves to. Running it measures every
(method, metric) cell once per seed and gives each a verdict:

- ``within the paper's spread``: the paper reports a spread (a std over its seeds) and our mean
  is inside it;
- ``within tolerance``: our mean is within the reproduction's stated tolerance;
- ``holds`` / ``fails``: for qualitative claims (a curve decays, another stays high);
- ``off``: neither, with the reproduction's reason for the gap;
- ``skipped``: a method the protocol names by registry name is not registered here.

A run is written as one JSON record per reproduction (``<results>/reproductions/<name>.json``),
atomically, so a board page can read it; plots a reproduction draws go beside it.

With ``--executor ray`` each seed is measured on its own (``measure([seed], ...)``, one Ray
task each) and :meth:`Reproduction.merge` puts the seeds' cells together as ``measure(seeds)``
would have measured them, so the record is the serial one (timings aside).
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..atomic import atomic_write_text
from ..environment import versions
from ..paths import REPRODUCTIONS_FOLDER
from ..registry import METHODS, Registry

REPRODUCTIONS: Registry = Registry("reproduction")
RECORD_FOLDER = REPRODUCTIONS_FOLDER
RECORD_SCHEMA = 1
#: a table's cells: (method, metric) -> what was measured
Cells = dict[tuple[str, str], "Measured"]


class SeedFailed(RuntimeError):
    """A seed measured apart (``--executor ray``) failed; the message says which and why."""


class SeedExecutor(Protocol):
    """Measures a reproduction's seeds apart and merges them (``distributed.RayExecutor``)."""

    def measure(self, repro: Reproduction, seeds: Sequence[int], quick: bool, out_dir: Path) -> Cells:
        ...


@dataclass(frozen=True)
class Published:
    """One cell of the paper's table: a number (``value``, with the paper's own ``spread`` if it
    gives one) or a qualitative ``claim`` whose check the reproduction supplies."""

    method: str
    metric: str
    table: str
    value: float | None = None
    spread: float | None = None
    claim: str = ""


@dataclass
class Measured:
    """What a run measured for one cell: one value per seed, plus evidence (a distribution test,
    a curve) and, for claims, whether the claim held."""

    values: list[float] = field(default_factory=list)
    holds: bool | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    #: why the cell is skipped or off, where a reproduction knows it per cell (a protocol run on two
    #: models); replaces the method's ``known_gaps`` entry
    reason: str = ""


@dataclass
class Row:
    """One printed and recorded line: paper vs ours and the verdict."""

    method: str
    metric: str
    table: str
    paper: str
    ours_mean: float | None
    ours_std: float | None
    difference: float | None
    verdict: str
    reason: str = ""
    values: list[float] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


class Reproduction(ABC):
    """Subclasses declare the protocol as class attributes and implement ``measure``."""

    name: str
    paper: str
    table: str
    data: str
    model: str
    samples: str
    metric: str
    published: tuple[Published, ...]
    #: registry names of the board's methods the protocol needs (skipped when absent)
    registry_methods: tuple[str, ...] = ()
    default_seeds: int = 3
    #: absolute difference to the paper's value that still counts as reproduced
    tolerance: float = 0.03
    #: why a cell may be off, by method (shown with an ``off`` verdict)
    known_gaps: dict[str, str] = {}

    def unavailable(self) -> str | None:
        """Why the reproduction cannot run here (missing data), or ``None``."""
        return None

    def skipped_methods(self) -> dict[str, str]:
        """Methods the protocol names by registry name that are not registered here."""
        return {m: f"method {m!r} is not registered (not on this branch yet)" for m in self.registry_methods if m not in METHODS}

    @abstractmethod
    def measure(self, seeds: Sequence[int], quick: bool, progress: bool, out_dir: Path) -> dict[tuple[str, str], Measured]:
        """Measure every (method, metric) cell for every seed; ``quick`` runs a tiny size (tests).
        Plots go into ``out_dir``."""

    def merge(self, parts: Sequence[Cells], quick: bool, out_dir: Path) -> Cells:
        """The cells of ``measure(seeds)`` from ``parts[i] = measure([seeds[i]])`` (seeds run apart).

        The default is exact for a reproduction whose seeds are independent runs and whose claims
        and evidence are per seed: values concatenated in seed order; a claim holds when it held
        for every seed (``None`` when no seed checked it); evidence equal in every seed is kept,
        other evidence becomes the list of the seeds' under ``"per_seed"``; a cell's ``reason`` is
    the first seed's (it says why a cell is off on this protocol, not on a seed). A reproduction that
        pools its seeds (a claim on their mean, an averaged curve, a plot, a cell measured once)
        overrides it.
        """
        keys = list(dict.fromkeys(key for part in parts for key in part))
        return {key: merged_cell([part[key] for part in parts if key in part]) for key in keys}

    def protocol(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("paper", "table", "data", "model", "samples", "metric", "tolerance")}


def merged_cell(cells: Sequence[Measured]) -> Measured:
    """:meth:`Reproduction.merge`'s default for one cell measured by several seeds apart."""
    checked = [cell.holds for cell in cells if cell.holds is not None]
    first = cells[0].evidence
    same = all(_equal(cell.evidence, first) for cell in cells)
    return Measured(values=[v for cell in cells for v in cell.values], holds=all(checked) if checked else None,
                    evidence=first if same else {"per_seed": [cell.evidence for cell in cells]}, reason=cells[0].reason)


def _equal(a: Any, b: Any) -> bool:
    """Equality of evidence, which may hold numpy arrays."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


def verdict(cell: Published, got: Measured | None, tolerance: float, gap: str) -> Row:
    """Compare one measured cell with the published one."""
    gap = got.reason if got is not None and got.reason else gap
    paper = cell.claim if cell.value is None else _paper_text(cell)
    base = {"method": cell.method, "metric": cell.metric, "table": cell.table, "paper": paper}
    if got is None or not got.values:
        return Row(**base, ours_mean=None, ours_std=None, difference=None, verdict="skipped", reason=gap)
    mean, std = float(np.mean(got.values)), float(np.std(got.values))
    measured = {"ours_mean": mean, "ours_std": std, "values": got.values, "evidence": got.evidence}
    if cell.value is None:
        held = bool(got.holds)
        return Row(**base, **measured, difference=None, verdict="holds" if held else "fails", reason="" if held else gap)
    diff = mean - cell.value
    if cell.spread is not None and abs(diff) <= cell.spread:
        return Row(**base, **measured, difference=diff, verdict="within the paper's spread")
    if abs(diff) <= tolerance:
        return Row(**base, **measured, difference=diff, verdict="within tolerance")
    return Row(**base, **measured, difference=diff, verdict="off", reason=gap or "no known protocol difference")


def _paper_text(cell: Published) -> str:
    return f"{cell.value:.3f}" + (f" ± {cell.spread:.3f}" if cell.spread is not None else "")


def run_reproduction(
    repro: Reproduction, seeds: int, quick: bool, results_dir: Path, progress: bool = True, log: Callable[[str], None] = print,
    executor: SeedExecutor | None = None,
) -> dict[str, Any]:
    """Measure (here, or each seed apart on ``executor``), compare, write the record; returns it."""
    out_dir = results_dir / RECORD_FOLDER
    skipped = repro.skipped_methods()
    for method, why in skipped.items():
        log(f"skip {method}: {why}")
    start = time.perf_counter()
    if executor is None:
        measured = repro.measure(list(range(seeds)), quick, progress, out_dir)
    else:
        measured = executor.measure(repro, list(range(seeds)), quick, out_dir)
    seconds = time.perf_counter() - start
    rows = [
        verdict(cell, measured.get((cell.method, cell.metric)), repro.tolerance, skipped.get(cell.method) or repro.known_gaps.get(cell.method, ""))
        for cell in repro.published
    ]
    rows += [_extra_row(key, got) for key, got in measured.items() if key not in {(c.method, c.metric) for c in repro.published}]
    record = {
        "schema": RECORD_SCHEMA,
        "name": repro.name,
        "protocol": repro.protocol(),
        "seeds": seeds,
        "quick": quick,
        "seconds": seconds,
        "versions": versions(),
        "rows": [asdict(r) for r in rows],
    }
    atomic_write_text(out_dir / f"{repro.name}.json", json.dumps(record, indent=1, default=_jsonable))
    return record


def _extra_row(key: tuple[str, str], got: Measured) -> Row:
    """A cell the paper has no number for (our convention beside the paper's)."""
    mean, std = float(np.mean(got.values)), float(np.std(got.values))
    return Row(method=key[0], metric=key[1], table="", paper="—", ours_mean=mean, ours_std=std, difference=None,
               verdict="ours only", values=got.values, evidence=got.evidence)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The printed table: method, metric, paper, ours (mean ± std), difference, verdict."""
    lines = [("method", "metric", "paper", "ours", "diff", "verdict")]
    for r in rows:
        ours = "—" if r["ours_mean"] is None else f"{r['ours_mean']:.3f} ± {r['ours_std']:.3f}"
        diff = "" if r["difference"] is None or math.isnan(r["difference"]) else f"{r['difference']:+.3f}"
        lines.append((r["method"], r["metric"], r["paper"], ours, diff, r["verdict"] + (f" ({r['reason']})" if r["reason"] else "")))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line[:5], widths)) + "  " + line[5] for line in lines)

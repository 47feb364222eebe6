"""Device choice and the removal engine's chunk size.

Chunk size is a measured, per-device choice, not "as large as fits": on a 2-core CPU a small
CNN ran ~3x faster in chunks of 64 rows than of 4,096 (cache-friendly), while a GPU wants
large chunks to fill its cores. How an engine's size is settled when its caller gives none,
first match wins:

1. ``XAIBOARD_CHUNK_ROWS`` (an integer) fixes it for every engine.
2. The size measured earlier in this process for the same task, model (class and parameter
   count) and device type.
3. A measurement (:class:`ChunkSize`): the first chunks of the engines of this task and model
   run at each candidate size of the device, in rising then falling order, and the fastest per
   row wins. The timed chunks are the engines' real work, so measuring costs no extra model
   pass and leaves every pass count as it was; the model runs per row, so the size changes no
   value, only the speed (checked bit for bit on the built-in image, text and graph tasks; see
   :mod:`.removal` on one-row calls). The measurement under way is the process's
   (:data:`PENDING`), not one engine's: the runner builds an engine per (task, method) pair and
   the bench one per metric run, and an engine whose calls end before the schedule (a deletion
   curve on a CNN: 5 chunks of the 8) used to start it again, so the size never settled and
   every engine kept running the 512-row chunks that a small CNN runs 1.2-1.9x slower per row.

Code that plans its own batches by an engine's ``chunk_rows`` gets a deterministic number
instead, the device's default, per modality on a CPU (a measured size would make such plans,
and the draws of a stochastic explainer grouped by them, vary from run to run).

The CPU defaults, measured on this 2-core CPU (1 torch thread, min of 5 interleaved runs of
2,048 removal rows, time relative to 256 rows per call; a shared machine, so +-15 %): image
CNNs 0.57-0.78 at 64-128 rows and 1.2-1.9 at 512-1,024; text (planted) 1.0-1.1 at 64-256 and
1.3-1.6 at 512-1,024; graphs (BA-Shapes GCN) ~1.0 at 64-256 and 1.6-2.6 at 512-1,024. Hence
64 rows for images and 256 for text and graphs, and CPU candidates of 64-512 rows; GPU
candidates are large (1,024-8,192 rows).
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from .task import Task

DEFAULT_CHUNK_ROWS = {"cpu": 256, "cuda": 8192, "mps": 2048}
#: CPU defaults per modality (the measurements above)
CPU_MODALITY_ROWS = {"image": 64, "text": 256, "graph": 256}
#: sizes a measurement tries per device type; other devices keep their default
CANDIDATES = {"cpu": (64, 128, 256, 512), "cuda": (1024, 2048, 4096, 8192), "mps": (512, 1024, 2048)}
#: measured sizes of this process, per :func:`size_key`
MEASURED: dict[Hashable, int] = {}


@dataclass
class Measurement:
    """A size measurement under way: the candidate sizes still to time (the next first) and the
    fastest per-row time of each size timed so far."""

    schedule: list[int]
    fastest: dict[int, float] = field(default_factory=dict)


#: measurements under way in this process, per :func:`size_key`, carried on by every engine
PENDING: dict[Hashable, Measurement] = {}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def chunk_rows(device: torch.device, task: Task | None = None, model: nn.Module | None = None) -> int:
    """Rows per model call: the override, else the size measured for ``(task, model)`` on this
    device, else the default (per modality on a CPU when ``task`` is given)."""
    return settled_rows(device, task, size_key(task, model, device) if task is not None and model is not None else None)


def settled_rows(device: torch.device, task: Task | None, key: Hashable | None) -> int:
    """:func:`chunk_rows` for a :func:`size_key` computed once: a :class:`ChunkSize` asks per
    chunk, and summing the parameter counts each time (~20 us on a 3-layer GIN) added up on
    models whose chunks take a millisecond."""
    override = os.environ.get("XAIBOARD_CHUNK_ROWS")
    if override:
        return int(override)
    if key is not None and key in MEASURED:
        return MEASURED[key]
    if task is not None and device.type == "cpu":
        return CPU_MODALITY_ROWS.get(task.modality, DEFAULT_CHUNK_ROWS["cpu"])
    return DEFAULT_CHUNK_ROWS.get(device.type, 1024)


def size_key(task: Task, model: nn.Module, device: torch.device) -> Hashable:
    """What a measured size is cached under: a randomised copy of a model (MPRT) reuses it."""
    return task.name, type(model).__qualname__, sum(p.numel() for p in model.parameters()), device.type


def clock(device: torch.device) -> float:
    """Seconds for timing chunks: on a GPU wall time after its queued work; on a CPU this
    process's CPU time, which other processes on a shared machine do not inflate."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.process_time() if device.type == "cpu" else time.perf_counter()


class ChunkSize:
    """One engine's chunk size on one device: settled, or measured on the chunks of this task's
    and model's engines (:data:`PENDING`).

    ``rows()`` is the size for the next chunk; the engine reports each chunk's time with
    ``record`` while ``measuring`` is true. A call's first chunk counts for its candidate even
    when the call is smaller (where calls are that small, the candidate's size is never
    reached); the rest of a longer call is not timed, since it would credit a smaller, faster
    size to the candidate (a deletion curve's last 2 of 17 masks made 512 rows win on the
    image CNN, which runs them 1.6x slower per row than 64).
    """

    def __init__(self, task: Task, model: nn.Module, device: torch.device) -> None:
        self.task, self.model, self.device = task, model, device

    @cached_property
    def key(self) -> Hashable:
        """:func:`size_key`, on first use: every metric context builds an engine, and most never
        run it (a transformer's parameter count is ~50 us, a sub-millisecond metric's whole cost)."""
        return size_key(self.task, self.model, self.device)

    @property
    def measuring(self) -> bool:
        return bool(CANDIDATES.get(self.device.type)) and not os.environ.get("XAIBOARD_CHUNK_ROWS") and self.key not in MEASURED

    def rows(self) -> int:
        return self._pending().schedule[0] if self.measuring else settled_rows(self.device, self.task, self.key)

    def start(self) -> float:
        return clock(self.device)

    def record(self, rows: int, n_rows: int, started: float) -> None:
        """Keep the fastest per-row time of ``rows``; after the last scheduled chunk, settle."""
        per_row = (clock(self.device) - started) / max(n_rows, 1)
        pending = self._pending()
        pending.fastest[rows] = min(per_row, pending.fastest.get(rows, float("inf")))
        pending.schedule.pop(0)
        if not pending.schedule:
            MEASURED[self.key] = min(pending.fastest, key=pending.fastest.__getitem__)
            del PENDING[self.key]

    def _pending(self) -> Measurement:
        candidates = CANDIDATES[self.device.type]
        return PENDING.setdefault(self.key, Measurement([*candidates, *reversed(candidates)]))

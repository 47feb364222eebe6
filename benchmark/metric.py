"""The metric interface: metadata every leaderboard column needs, and one ``compute`` call.

A metric is written once against the task interface (removal engine, feature space), so it
works on every modality where it is meaningful. Every hyperparameter is a constructor keyword
with a pinned default; ``params`` is recorded in each result.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import Tensor, nn

from .cost import Cost
from .removal import RemovalEngine
from .task import Batch, Modality, Task, source_hash

Family = Literal["faithfulness", "robustness", "user_proxy", "sanity", "cost"]
Direction = Literal["higher", "lower"]
T = TypeVar("T")


@dataclass
class MetricContext:
    """Everything a metric may read for one (task, method) batch.

    ``explain(model, inputs)`` re-runs the method (robustness, sanity metrics); it is ``None``
    for precomputed explanations, and the runner then records such metrics as not applicable.

    Work that several metrics need is computed once through ``shared``: into ``memo``, owned by
    this one (task, method) pair's context, or, for work that does not depend on the method
    (``per_task=True``: e.g. infidelity's removals), into ``task_memo``, which the runner shares
    between the pairs of one task within one run. Both live and die with the contexts, so
    nothing leaks across pairs, tasks or runs, whatever objects the runner reuses.
    """

    task: Task
    model: nn.Module
    batch: Batch
    explanation: Tensor
    engine: RemovalEngine
    seed: int
    device: torch.device
    explain: Callable[[nn.Module, Any, Tensor], Tensor] | None = None
    cost: Cost = field(default_factory=Cost)
    memo: dict[Hashable, Any] = field(default_factory=dict)
    task_memo: dict[Hashable, Any] = field(default_factory=dict)

    def shared(self, key: Hashable, compute: Callable[[], T], per_task: bool = False) -> T:
        """``compute()``'s result under ``key``, computed on first use only.

        ``key`` must hold every value the result depends on beyond the context itself (the
        metric's parameters that shape it); the seed, batch, model and method are the context's.
        """
        memo = self.task_memo if per_task else self.memo
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def generator(self, salt: int = 0) -> torch.Generator:
        """A seeded generator on the context's device, so stochastic metrics are reproducible."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + salt)


class Metric(ABC):
    name: ClassVar[str]
    family: ClassVar[Family]
    direction: ClassVar[Direction]
    value_range: ClassVar[tuple[float, float]]
    modalities: ClassVar[frozenset[Modality]] = frozenset({"image", "text", "graph"})
    needs_ground_truth: ClassVar[bool] = False
    needs_explainer: ClassVar[bool] = False
    reference: ClassVar[str] = ""
    #: the reference implementation our tests compare against (e.g. ``quantus.AUC``)
    checked_against: ClassVar[str] = ""
    #: how and why we deliberately differ from the reference (empty: we do not); the tests
    #: check the documented relation, and the docs table shows it
    deviation: ClassVar[str] = ""
    #: pinned defaults; the constructor may override them
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"metric {self.name!r} has no parameter(s) {sorted(unknown)}")
        self.params = {**self.defaults, **params}

    @abstractmethod
    def compute(self, ctx: MetricContext) -> Tensor:
        """Per-sample scores ``[B]`` (NaN where the metric is undefined for a sample)."""

    def applies_to(self, task: Task) -> str | None:
        """``None`` if the metric applies to ``task``, else the reason it does not."""
        if task.modality not in self.modalities:
            return f"{self.name} is not defined for {task.modality} tasks"
        if self.needs_ground_truth and not task.has_ground_truth:
            return f"{self.name} needs ground truth, which {task.name} does not have"
        return None

    def code_hash(self) -> str:
        """Hash of the metric's code (its module and its bases') and parameters, recorded in
        every result: resume recomputes a record whose metric changed since, so a fixed bug is
        never silently skipped."""
        blob = source_hash(type(self)) + json.dumps(self.params, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"<Metric {self.name} {self.params}>"

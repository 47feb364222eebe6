"""Does a ground-truth task need its model? Two checks per task (``xaiboard task check``).

**Shortcut scores.** The ground-truth AUROC (``metrics/ground_truth.gt_auroc``, per sample, then
averaged over the samples where it is defined) of the ``input_magnitude`` control and of the
modality's model-free priors (``priors.py``), on the task's evaluation samples (``test`` split,
``n`` and ``seed`` as ``xaiboard run``). A prior is oriented (higher = "ground truth"), but a
prior reversed is a model-free prior too, so a prior's *reach* is ``max(AUROC, 1 - AUROC)``.
Rule: the task is **flagged** ("ground truth reachable without the model") when the best
reach exceeds ``FLAG_AUROC`` (0.65).

**Ground-truth faithfulness.** Through the task's own ``remove``: the drop of the target-class
probability (``p(full) - p(removed)``, target = the label the ground truth belongs to) when a
sample's ground-truth features are removed, and when as many of its other valid features, chosen
uniformly at random outside the ground truth (all of them where there are fewer), are removed,
averaged over ``RANDOM_DRAWS`` seeded draws. Both are averaged over the samples whose ground
truth is defined (non-empty, not every valid feature). Rule: **pass** iff the ground-truth drop
is positive and at least ``PASS_RATIO`` (2) times the random drop. A model that does not read
the ground truth makes the task's user-proxy numbers meaningless; this says so.

The random features are the control, so they are drawn outside the ground truth: drawn among
all valid features, a set as large as the ground truth hits it with probability
``1 - C(E-g, g) / C(E, g)`` (``g`` of ``E`` features), which is small where the truth is a few
pixels or tokens but 0.79-0.97 on the graph v2 tasks, whose motif is 10-12 of a sample's 49-105
edges on average (measured over 8 draws on their test samples). The control then removes part
of the truth itself, and a model that reads nothing but the truth fails: on ``graph/tree-cycles`` v2 (n = 51), draws that missed the cycle dropped the
target probability by 0.001 and draws that hit it by 0.97, so "random" removal dropped it by 0.76
against 0.98 for the cycle. Drawn outside the truth, the control asks what the check means to
ask: does the model depend on the ground truth more than on as much of the rest of the input?

The result is a small JSON record (``check_path``: ``<results root>/_tasks/<quoted name>.json``,
written atomically, outside the method folders the store reads) carrying the task's name,
version and fingerprint, so the board shows a check only beside records of the same task.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .atomic import atomic_write_text
from .environment import versions
from .metrics.ground_truth import gt_auroc
from .priors import priors
from .registry import METHODS
from .removal import RemovalEngine
from .task import Batch, Task

from .task_check_record import (
    FLAG_AUROC, FLAG_RULE, FORMAT, PASS_RATIO, PASS_RULE, RANDOM_DRAWS, check_path,
)


@dataclass(frozen=True)
class PriorScore:
    """One prior's mean ground-truth AUROC (``None`` and a reason where it does not apply)."""

    prior: str
    auroc: float | None
    se: float | None = None
    samples: int = 0
    reason: str = ""

    @property
    def reach(self) -> float | None:
        return None if self.auroc is None else max(self.auroc, 1.0 - self.auroc)


@dataclass(frozen=True)
class Faithfulness:
    """Mean target-probability drops when the ground truth / as many random features go."""

    applicable: bool
    reason: str = ""
    gt_drop: float | None = None
    gt_se: float | None = None
    random_drop: float | None = None
    random_se: float | None = None
    full_probability: float | None = None
    samples: int = 0
    draws: int = RANDOM_DRAWS
    passed: bool | None = None
    rule: str = PASS_RULE


@dataclass(frozen=True)
class TaskCheck:
    task: str
    task_version: str
    task_fingerprint: str
    n_samples: int
    seed: int
    priors: list[PriorScore]
    faithfulness: Faithfulness
    has_ground_truth: bool = True
    flag_threshold: float = FLAG_AUROC
    flag_rule: str = FLAG_RULE
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def best_prior(self) -> PriorScore | None:
        scored = [p for p in self.priors if p.reach is not None]
        return max(scored, key=lambda p: p.reach) if scored else None

    @property
    def flagged(self) -> bool:
        best = self.best_prior
        return best is not None and best.reach > self.flag_threshold

    def to_dict(self) -> dict[str, Any]:
        best = self.best_prior
        return {"format": FORMAT, **asdict(self), "flagged": self.flagged,
                "best_prior": None if best is None else {"prior": best.prior, "auroc": best.auroc, "reach": best.reach}}  # fmt: skip


def check_task(task: Task, n: int = 64, seed: int = 0, device: torch.device | str = "cpu",
               draws: int = RANDOM_DRAWS) -> TaskCheck:  # fmt: skip
    """Both checks on ``n`` test samples of ``task`` (the samples ``xaiboard run`` evaluates)."""
    start = time.perf_counter()
    model = task.model(device)
    batch = task.samples("test", n, seed).to(device)
    fields = dict(task=task.name, task_version=task.version, task_fingerprint=task.fingerprint(model),
                  n_samples=len(batch), seed=seed, versions=versions())  # fmt: skip
    if not task.has_ground_truth or batch.ground_truth is None:
        why = f"{task.name} has no ground truth: there is nothing to remove and no AUROC to compute"
        return TaskCheck(priors=[], faithfulness=Faithfulness(False, why), has_ground_truth=False,
                         seconds=round(time.perf_counter() - start, 1), **fields)  # fmt: skip
    scores = shortcut_scores(task, model, batch)
    faithful = faithfulness(task, model, batch, draws, seed)
    return TaskCheck(priors=scores, faithfulness=faithful, seconds=round(time.perf_counter() - start, 1), **fields)


def shortcut_scores(task: Task, model: torch.nn.Module, batch: Batch) -> list[PriorScore]:
    """The ground-truth AUROC of ``input_magnitude`` and of each prior of the task's modality."""
    control = METHODS.create("input_magnitude")
    found: dict[str, Any] = {"input_magnitude": lambda t, x: control.explain(model, x, batch.targets, t).abs()}
    found.update(priors(task, batch.inputs))
    return [_score(name, prior, task, batch) for name, prior in found.items()]


def _score(name: str, prior: Any, task: Task, batch: Batch) -> PriorScore:
    if isinstance(prior, str):
        return PriorScore(name, None, reason=prior)
    with torch.no_grad():
        values = gt_auroc(prior(task, batch.inputs), batch.ground_truth, batch.valid)
    mean, se, count = _mean_se(values)
    return PriorScore(name, mean, se, count, "" if count else "no sample has a defined ground truth")


def faithfulness(task: Task, model: torch.nn.Module, batch: Batch, draws: int, seed: int) -> Faithfulness:
    """Target-probability drops for removing the ground truth and ``draws`` random sets of its size
    drawn outside it."""
    valid = batch.valid.bool()
    truth = batch.ground_truth.bool() & valid
    size = truth.flatten(1).sum(1)
    defined = (size > 0) & (size < valid.flatten(1).sum(1))
    if not bool(defined.any()):
        return Faithfulness(False, "no evaluated sample has a ground truth that is non-empty and not every feature")
    keep = torch.cat([(~truth).unsqueeze(1), ~random_sets(valid & ~truth, size, draws, seed)], dim=1)
    engine = RemovalEngine(task, model)
    full = engine.full(batch.inputs, batch.targets)
    drops = (full.unsqueeze(1) - engine.scores(batch.inputs, keep, batch.targets))[defined]
    gt_drop, gt_se, count = _mean_se(drops[:, 0])
    random_drop, random_se, _ = _mean_se(drops[:, 1:].mean(1))
    passed = gt_drop > 0 and gt_drop >= PASS_RATIO * random_drop
    return Faithfulness(True, "", gt_drop, gt_se, random_drop, random_se, float(full[defined].mean()), count, draws, passed)


def random_sets(valid: Tensor, size: Tensor, draws: int, seed: int) -> Tensor:
    """Bool ``[B, draws, *F]``: per sample and draw, ``size[b]`` of the features ``valid`` allows
    (at most as many as it allows) chosen uniformly at random (the ``size[b]`` lowest of seeded
    uniform scores; other slots never)."""
    generator = torch.Generator().manual_seed(seed)
    flat = valid.flatten(1).cpu()
    scores = torch.rand(flat.shape[0], draws, flat.shape[1], generator=generator)
    scores = scores.masked_fill(~flat.unsqueeze(1), 2.0)  # above every uniform score: never chosen
    rank = scores.argsort(dim=-1).argsort(dim=-1)
    chosen = (rank < size.cpu().view(-1, 1, 1)) & flat.unsqueeze(1)  # all it allows where size is larger
    return chosen.view(valid.shape[0], draws, *valid.shape[1:]).to(valid.device)


def _mean_se(values: Tensor) -> tuple[float | None, float | None, int]:
    """Mean, standard error and count of the finite ``values`` (``None`` where there are none)."""
    values = values.double()
    values = values[values.isfinite()]
    count = int(values.numel())
    if count == 0:
        return None, None, 0
    se = float(values.std() / math.sqrt(count)) if count > 1 else None
    return float(values.mean()), se, count


def write_check(root: Path, check: TaskCheck) -> Path:
    """Write ``check`` atomically to its place under ``root``."""
    text = json.dumps(check.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_text(check_path(root, check.task), text)



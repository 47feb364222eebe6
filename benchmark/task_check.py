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
sample's ground-truth features are removed, and when as many of its valid features, chosen
uniformly at random (ground truth included), are removed, averaged over ``RANDOM_DRAWS`` seeded
draws. Both are averaged over the samples whose ground truth is defined (non-empty, not every
valid feature). Rule: **pass** iff the ground-truth drop is positive and at least
``PASS_RATIO`` (2) times the random drop. A model that does not read the ground truth makes the
task's user-proxy numbers meaningless; this says so.

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
from urllib.parse import quote

import pandas as pd
import torch
from torch import Tensor

from .atomic import atomic_write_text, read_json
from .environment import versions
from .metrics.ground_truth import gt_auroc
from .priors import priors
from .registry import METHODS
from .removal import RemovalEngine
from .task import Batch, Task

FLAG_AUROC = 0.65
PASS_RATIO = 2.0
RANDOM_DRAWS = 8
CHECKS_FOLDER = "_tasks"  # a leading "_": no method name (card.NAME_PATTERN) can take it
FORMAT = 1
FLAG_LINE = "ground truth reachable without the model"
PASS_RULE = f"pass iff ground-truth drop > 0 and ground-truth drop >= {PASS_RATIO:g} x random drop"
FLAG_RULE = f"flagged iff the best prior's max(AUROC, 1 - AUROC) > {FLAG_AUROC}"


class TaskCheckError(ValueError):
    """A task-check file that cannot be read, in one line naming the file."""


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
    """Target-probability drops for removing the ground truth and ``draws`` random sets of its size."""
    valid = batch.valid.bool()
    truth = batch.ground_truth.bool() & valid
    size = truth.flatten(1).sum(1)
    defined = (size > 0) & (size < valid.flatten(1).sum(1))
    if not bool(defined.any()):
        return Faithfulness(False, "no evaluated sample has a ground truth that is non-empty and not every feature")
    keep = torch.cat([(~truth).unsqueeze(1), ~random_sets(valid, size, draws, seed)], dim=1)
    engine = RemovalEngine(task, model)
    full = engine.full(batch.inputs, batch.targets)
    drops = (full.unsqueeze(1) - engine.scores(batch.inputs, keep, batch.targets))[defined]
    gt_drop, gt_se, count = _mean_se(drops[:, 0])
    random_drop, random_se, _ = _mean_se(drops[:, 1:].mean(1))
    passed = gt_drop > 0 and gt_drop >= PASS_RATIO * random_drop
    return Faithfulness(True, "", gt_drop, gt_se, random_drop, random_se, float(full[defined].mean()), count, draws, passed)


def random_sets(valid: Tensor, size: Tensor, draws: int, seed: int) -> Tensor:
    """Bool ``[B, draws, *F]``: per sample and draw, ``size[b]`` of its valid features chosen
    uniformly at random (the ``size[b]`` lowest of seeded uniform scores; invalid slots never)."""
    generator = torch.Generator().manual_seed(seed)
    flat = valid.flatten(1).cpu()
    scores = torch.rand(flat.shape[0], draws, flat.shape[1], generator=generator)
    scores = scores.masked_fill(~flat.unsqueeze(1), 2.0)  # above every uniform score: never chosen
    rank = scores.argsort(dim=-1).argsort(dim=-1)
    chosen = rank < size.cpu().view(-1, 1, 1)
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


# ---- the record ---------------------------------------------------------------------------
def check_path(root: Path, task: str) -> Path:
    """Where ``task``'s check goes under a results root (``/`` quoted, so names never collide)."""
    return Path(root) / CHECKS_FOLDER / f"{quote(task, safe='')}.json"


def write_check(root: Path, check: TaskCheck) -> Path:
    """Write ``check`` atomically to its place under ``root``."""
    text = json.dumps(check.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_text(check_path(root, check.task), text)


def read_checks(root: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every readable task check under ``root`` by task name, and one line per file that is not
    (unreadable, not a check record, or sitting where another task's check belongs)."""
    checks, problems = {}, []
    for path in sorted((Path(root) / CHECKS_FOLDER).glob("*.json")):
        try:
            data = _validated(read_json(path, TaskCheckError), path)
            if check_path(root, data["task"]) != path:
                raise TaskCheckError(f"{path}: field 'task' {data['task']!r} does not match the file's name")
        except TaskCheckError as exc:
            problems.append(str(exc))
        else:
            checks[data["task"]] = data
    return checks, problems


REQUIRED = {"task": str, "task_version": str, "task_fingerprint": str, "n_samples": int, "flagged": bool,
            "priors": list, "faithfulness": dict}  # fmt: skip


def _validated(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TaskCheckError(f"{path}: not a task check record of format {FORMAT}")
    for name, kind in REQUIRED.items():
        if not isinstance(data.get(name), kind):
            raise TaskCheckError(f"{path}: field {name!r} is missing or not a {kind.__name__}")
    for prior in data["priors"]:
        if not isinstance(prior, dict) or not isinstance(prior.get("prior"), str) or not _number(prior.get("auroc")):
            raise TaskCheckError(f"{path}: field 'priors' holds an entry without a name and a numeric or null auroc")
    faithful, best = data["faithfulness"], data.get("best_prior")
    drops = [faithful.get(k) for k in ("gt_drop", "random_drop")]
    if not all(map(_number, drops)) or (faithful.get("applicable") is True and None in drops):
        raise TaskCheckError(f"{path}: field 'faithfulness' drops are not numbers")
    if faithful.get("passed") not in (True, False, None):
        raise TaskCheckError(f"{path}: field 'faithfulness.passed' is not true, false or null")
    if best is not None and not (isinstance(best, dict) and isinstance(best.get("prior"), str)
                                 and all(_number(best.get(k)) and best.get(k) is not None for k in ("auroc", "reach"))):
        raise TaskCheckError(f"{path}: field 'best_prior' is not a prior name with its auroc and reach")
    return data


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


# ---- the printout -------------------------------------------------------------------------
def prior_frame(priors_: list[dict[str, Any]]) -> pd.DataFrame:
    """The shortcut scores as a table (one row per prior)."""
    return pd.DataFrame([{"prior": p["prior"], "gt_auroc": _fmt(p.get("auroc")), "± se": _fmt(p.get("se")),
                          "samples": p.get("samples", 0), "note": p.get("reason", "")} for p in priors_])  # fmt: skip


def faithfulness_frame(faithful: dict[str, Any]) -> pd.DataFrame:
    """The faithfulness check as a table (ground truth removed vs random features removed)."""
    draws = faithful.get("draws", RANDOM_DRAWS)
    return pd.DataFrame([
        {"removed": "ground-truth features", "mean drop of p(target)": _fmt(faithful.get("gt_drop")),
         "± se": _fmt(faithful.get("gt_se")), "samples": faithful.get("samples", 0)},
        {"removed": f"as many random valid features ({draws} draws)", "mean drop of p(target)": _fmt(faithful.get("random_drop")),
         "± se": _fmt(faithful.get("random_se")), "samples": faithful.get("samples", 0)},
    ])  # fmt: skip


def verdicts(record: dict[str, Any]) -> list[str]:
    """One line per check: flagged or not (with the best prior), passed or not (with the rule)."""
    best, faithful = record.get("best_prior"), record["faithfulness"]
    if best is None:
        shortcut = "shortcut scores: not applicable (no ground truth)" if not record.get("has_ground_truth", True) else (
            "shortcut scores: no prior could be scored")
    else:
        state = f"FLAGGED: {FLAG_LINE}" if record["flagged"] else "not flagged"
        shortcut = (f"shortcut: best prior {best['prior']} AUROC {best['auroc']:.3f} (reach {best['reach']:.3f}); "
                    f"{state} ({record.get('flag_rule', FLAG_RULE)})")  # fmt: skip
    if not faithful.get("applicable"):
        return [shortcut, f"faithfulness: not applicable: {faithful.get('reason', '')}"]
    outcome = "PASS" if faithful.get("passed") else "FAIL"
    ratio = faithful["gt_drop"] / faithful["random_drop"] if faithful["random_drop"] else math.inf
    return [shortcut, f"faithfulness: {outcome}: ground-truth drop {faithful['gt_drop']:.3f} vs random drop "
            f"{faithful['random_drop']:.3f} (ratio {ratio:.2g}); {faithful.get('rule', PASS_RULE)}"]  # fmt: skip


def report(record: dict[str, Any]) -> str:
    """The whole check as text for the terminal."""
    head = (f"{record['task']} version {record['task_version']} (fingerprint {record['task_fingerprint']}), "
            f"{record['n_samples']} test samples, seed {record.get('seed', 0)}")  # fmt: skip
    parts = [head]
    if record["priors"]:
        parts += ["", "shortcut scores: ground-truth AUROC of model-free priors (0.5 = chance)",
                  prior_frame(record["priors"]).to_string(index=False)]  # fmt: skip
    if record["faithfulness"].get("applicable"):
        parts += ["", "ground-truth faithfulness: drop of the target-class probability when features are removed",
                  faithfulness_frame(record["faithfulness"]).to_string(index=False)]  # fmt: skip
    return "\n".join([*parts, "", *verdicts(record)])


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"

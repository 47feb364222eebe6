"""The explanation cache: each (task, method, seed, n) batch is explained once, then reused.

Explaining is usually the expensive step (Integrated Gradients, SmoothGrad, GNNExplainer), and
every metric of a run reads the same explanation; re-running a metric, adding a metric or
resuming a crashed run then costs no explanation at all. The key holds everything that
changes the explanation: the task's name, version and fingerprint (code, removal, the model's
parameters as loaded) and the method's
name and code hash (source + parameters), the seed, the sample count, the split and the model
passes' precision (each only when it is not the default, ``test`` and ``fp32``, so that keys
made before either could be chosen stay valid). The Cost of the
original computation is stored alongside, so cost metrics stay truthful on a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from xaiboard.methods.base import Explainer

from .atomic import atomic_write
from .cost import Cost
from .paths import cache_dir
from .task import Task


@dataclass
class CachedExplanation:
    explanation: Tensor
    cost: Cost


class ExplanationCache:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def path(self, task: Task, fingerprint: str, explainer: Explainer, seed: int, n: int, split: str = "test",
             precision: str = "fp32") -> Path:
        key = {
            "task": task.name,
            "task_version": task.version,
            "task_fingerprint": fingerprint,
            "method": explainer.name,
            "method_hash": explainer.code_hash(),
            "seed": seed,
            "n": n,
            **({"split": split} if split != "test" else {}),
            **({"precision": precision} if precision != "fp32" else {}),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        return self.root / task.name / explainer.name / f"{digest}.pt"

    def load(self, task: Task, fingerprint: str, explainer: Explainer, seed: int, n: int,
             split: str = "test", precision: str = "fp32") -> CachedExplanation | None:
        """The cached explanation (on CPU), or ``None`` if absent or unreadable (then recomputed)."""
        path = self.path(task, fingerprint, explainer, seed, n, split, precision)
        if not path.exists():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return CachedExplanation(blob["explanation"], Cost(**blob["cost"]))
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError):
            return None

    def save(self, task: Task, fingerprint: str, explainer: Explainer, seed: int, n: int, entry: CachedExplanation,
             split: str = "test", precision: str = "fp32") -> Path:
        """Store atomically (temp file + ``os.replace``) so a crash never leaves half a file."""
        path = self.path(task, fingerprint, explainer, seed, n, split, precision)
        blob = {"explanation": entry.explanation.detach().cpu(), "cost": entry.cost.as_dict()}
        return atomic_write(path, lambda f: torch.save(blob, f))

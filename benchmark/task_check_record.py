"""Task-check records (``task_check.py`` computes them): where they live, how they are read and
validated, and how they print. Kept apart from the computation so that the leaderboard, which
only shows them, imports no torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from .atomic import read_json

FLAG_AUROC = 0.65
PASS_RATIO = 2.0
RANDOM_DRAWS = 8
CHECKS_FOLDER = "_tasks"  # a leading "_": no method name (card.NAME_PATTERN) can take it
FORMAT = 1
FLAG_LINE = "ground truth reachable without the model"
PASS_RULE = (f"pass iff ground-truth drop > 0 and ground-truth drop >= {PASS_RATIO:g} x random drop "
             "(as many random features outside the ground truth)")
FLAG_RULE = f"flagged iff the best prior's max(AUROC, 1 - AUROC) > {FLAG_AUROC}"


class TaskCheckError(ValueError):
    """A task-check file that cannot be read, in one line naming the file."""


def check_path(root: Path, task: str) -> Path:
    """Where ``task``'s check goes under a results root (``/`` quoted, so names never collide)."""
    return Path(root) / CHECKS_FOLDER / f"{quote(task, safe='')}.json"


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
        {"removed": f"as many random valid features outside it ({draws} draws)", "mean drop of p(target)": _fmt(faithful.get("random_drop")),
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

"""Publishing a method: validate, smoke-check, run into a staging folder, then move it in place.

``xaiboard submit`` is the one path by which outside code reaches the board, so every step
is built so that a bad submission changes nothing that is already published:

1. **Name**: one path component (``card.NAME_PATTERN``), never ``reproductions`` (the folder of
   ``xaiboard reproduce``'s records), not a baseline's or an existing submission's name unless
   ``--overwrite``.
2. **Smoke check**: a small batch of every task the method claims, explained twice under the
   same seed: the right shape, finite on every valid feature, the same both times (to
   ``DETERMINISM_RTOL``), within the sandbox's time and memory budget. The first failure ends
   the submission with one line naming the task and the problem, before anything is written.
3. **Run** into ``<root>/.staging-<name>-*`` (dot folders are not part of the board), with the
   method in its sandboxed worker (``sandbox.SandboxedExplainer``) or read from files
   (``precomputed.PrecomputedExplainer``); only this parent process writes.
4. **Publish**: the staging folder is renamed to ``<root>/<name>`` (an old one is moved aside
   first and removed after), so the board sees the old submission or the new one, never half.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from xaiboard.methods.base import Explainer

from .cache import ExplanationCache
from .card import NAME_PATTERN, MethodCard, xaiboard_version
from .metric import Metric
from .record import ResultRecord
from .runner import Executor, InvalidExplanation, checked_explanation, run
from .sandbox import SubmissionError
from .store import ResultStore, is_method_folder
from .task import Task

#: samples per task in the smoke check: enough to catch shape and batching bugs, cheap to run twice
SMOKE_N = 4
#: two runs under one seed must agree to this relative tolerance (scaled by the explanation's
#: largest magnitude): float sums in PyG's CPU scatter-add run in a non-deterministic order, which
#: moves graph attributions by ~1e-6 relative; a method that draws unseeded randomness moves them
#: by orders of magnitude more
DETERMINISM_RTOL = 1e-4


class SubmissionRejected(ValueError):
    """A one-line reason why a submission was refused; nothing was written."""


def check_name(name: str, root: Path, reserved: Sequence[str], overwrite: bool) -> None:
    """Refuse names that are not one plain path component, or that clash without ``overwrite``."""
    if not NAME_PATTERN.match(name):
        raise SubmissionRejected(
            f"--name {name!r}: use 1-64 letters, digits, '_', '.', '+' or '-', starting with a letter or digit"
        )
    if not is_method_folder(name):
        raise SubmissionRejected(f"--name {name!r} is the results folder of `xaiboard reproduce`'s records; pick another name")
    if overwrite:
        return
    if name in reserved:
        raise SubmissionRejected(f"--name {name!r} is a baseline or control; pick another name (or --overwrite)")
    if (root / name).exists():
        raise SubmissionRejected(f"--name {name!r} is already on the board under {root / name}; pass --overwrite to replace it")


def smoke_check(explainer: Explainer, tasks: Sequence[Task], device: torch.device, seed: int) -> None:
    """Explain ``SMOKE_N`` samples of each task twice under ``seed``; ``SubmissionRejected`` on the first problem."""
    for task in tasks:
        try:
            model = task.model(device)
            batch = task.samples("test", SMOKE_N, seed).to(device)
            first, second = (_explain_seeded(explainer, model, batch, task, seed) for _ in range(2))
        except Exception as exc:
            raise SubmissionRejected(f"smoke check on {task.name}: {_problem(explainer.name, exc)}") from None
        if not _close(first, second):
            raise SubmissionRejected(
                f"smoke check on {task.name}: {explainer.name} is not deterministic under a fixed seed "
                f"(two runs differ by up to {float((first - second).abs().max()):.3g})"
            )


def _explain_seeded(explainer: Explainer, model, batch, task: Task, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return checked_explanation(explainer.explain_batch(model, batch, task), batch, explainer.name)


def _problem(name: str, exc: Exception) -> str:
    """The failure in one line: the shape/NaN checks and the sandbox name the method themselves
    ("m exceeded its time budget of 5 s"); anything else (a task failing to load) names its type."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, (InvalidExplanation, SubmissionError)):
        return text
    return f"{name} raised {type(exc).__name__}: {text}"


def _close(first: torch.Tensor, second: torch.Tensor) -> bool:
    scale = float(first.abs().max()) if first.numel() else 0.0
    return bool(torch.allclose(first, second, rtol=0.0, atol=DETERMINISM_RTOL * max(scale, 1e-12)))


def submission_card(card: MethodCard, explainer: Explainer, kind: str) -> MethodCard:
    """The card as published: the submitter's text fields, the harness's facts.

    A submission is never a control (it could otherwise make itself the ``random`` reference
    every method is tested against); modalities, parameters and code hash are what the harness
    ran, not what the card claims.
    """
    return replace(
        card,
        name=explainer.name,
        modalities=sorted(explainer.modalities),
        parameters=dict(explainer.params),
        code_hash=explainer.code_hash(),
        control=False,
        control_kind="",
        kind=kind,
        submitted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        xaiboard_version=xaiboard_version(),
    )


def run_and_publish(
    explainer: Explainer,
    card: MethodCard,
    tasks: Sequence[Task],
    metrics: Sequence[Metric],
    root: Path,
    n: int,
    seed: int,
    device: torch.device,
    progress: bool = True,
    executor: Executor | None = None,
) -> list[ResultRecord]:
    """Run every metric into a staging folder under ``root``, then move it to ``root/<name>``
    (``executor``: who computes the pairs, as in ``runner.run``; this process writes)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".staging-{explainer.name}-"))
    try:
        store = ResultStore(staging)
        records = run(tasks, [explainer], metrics, n=n, seed=seed, device=device, store=store,
                      cache=ExplanationCache(), progress=progress, card=lambda _: card, executor=executor)
        _publish(staging / explainer.name, root / explainer.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return records


def _publish(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; an existing ``target`` is moved aside first, then removed."""
    aside = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".replaced-{target.name}-")) / target.name
        target.rename(aside)
    staged.rename(target)
    if aside is not None:
        shutil.rmtree(aside.parent, ignore_errors=True)

"""``xaiboard submit`` end to end, as a user runs it: a good method is published and ranked; every
kind of bad method is refused with one line, a non-zero exit, and the board byte-for-byte
unchanged; precomputed explanations are scored, with re-run metrics marked not applicable."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xaiboard.benchmark.card import read_card
from xaiboard.benchmark.store import ResultStore
from xaiboard.benchmark.submit import SubmissionRejected, check_name
from xaiboard.benchmark.sandbox import sandbox_unavailable
from xaiboard.leaderboard.aggregate import standings

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.slow
#: where the kernel has no Landlock, submit runs unconfined only when told so; the write tests skip
NO_SANDBOX = sandbox_unavailable()


def xaiboard(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XAIBOARD_CACHE": str(cache)}
    quiet = ["--quiet"] if args[0] in ("run", "submit") else []
    unconfined = ["--unsafe-no-sandbox"] if args[0] == "submit" and NO_SANDBOX else []
    command = [sys.executable, "-m", "xaiboard.benchmark.cli", *args, *quiet, *unconfined]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the set of paths, folders included)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> tuple[Path, Path]:
    """A results root holding baselines on image/shapes and graph/ba-shapes (n = 8), and a cache."""
    tmp = tmp_path_factory.mktemp("board")
    root, cache = tmp / "board", tmp / "cache"
    result = xaiboard(
        "run", "--tasks", "image/shapes,graph/ba-shapes", "--methods", "saliency,random,input_magnitude",
        "--metrics", "gt_auroc,deletion_auc,max_sensitivity,mprt,cost_passes", "--n", "8", "--device", "cpu",
        "--results-dir", str(root), cache=cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, cache


def test_readme_method_is_published_and_ranked(board, tmp_path):
    root, cache = board
    example = re.search(r"```python\n(# my_method.py\n.*?)```", README.read_text(), re.S).group(1)
    source = tmp_path / "my_method.py"  # outside the repository, as a user's file is
    source.write_text(example)
    result = xaiboard(
        "submit", str(source), "--name", "grad-squared", "--tasks", "image/shapes,graph/ba-shapes",
        "--metrics", "gt_auroc,deletion_auc,max_sensitivity,mprt,cost_passes", "--n", "8", "--device", "cpu",
        "--results-dir", str(root), "--description", "squared gradient", "--authors", "A. User", cache=cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    card = read_card(root / "grad-squared" / "method.json")
    assert (card.kind, card.control, card.authors) == ("submission", False, "A. User")
    assert card.modalities == ["graph", "image", "text"] and len(card.code_hash) == 12
    records, errors = ResultStore(root).records()
    mine = {r.key for r in records if r.method == "grad-squared"}
    assert not errors and len(mine) == 2 * 5
    assert all(r.status == "ok" for r in records if r.method == "grad-squared")
    # re-explanations in the sandboxed worker are metered like in-process ones: the squared
    # gradient costs what saliency costs (one forward and one backward per explanation)
    passes = {(r.method, r.task, r.metric): r.metric_cost for r in records}
    for task in ("image/shapes", "graph/ba-shapes"):
        for metric in ("max_sensitivity", "mprt"):
            mine, theirs = passes["grad-squared", task, metric], passes["saliency", task, metric]
            assert mine["backward_passes"] == theirs["backward_passes"] > 0, (task, metric)
            assert mine["forward_passes"] == theirs["forward_passes"], (task, metric)
    ranks = standings(root, "grad-squared")
    assert set(ranks["task"]) == {"image/shapes", "graph/ba-shapes"}
    assert {"grad-squared", "saliency", "random"} <= set(ranks["method"])
    assert "> grad-squared" in result.stdout and "* random" in result.stdout and "user_proxy" in result.stdout
    assert f"published grad-squared: card {root / 'grad-squared' / 'method.json'}" in result.stdout
    assert f"board statistics: {root / '_board-tables.json'} (2 task(s) recomputed)" in result.stdout
    # no staging folder is left behind, and re-submitting the name needs --overwrite
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    again = xaiboard("submit", str(source), "--name", "grad-squared", "--tasks", "image/shapes",
                     "--results-dir", str(root), cache=cache)
    assert again.returncode != 0 and "--overwrite" in again.stderr


BAD_METHODS = {
    "raises": ("raise RuntimeError('planted failure')", "raised RuntimeError: planted failure"),
    "sleeps": ("time.sleep(120)", "exceeded its time budget of 3 s"),
    "allocates": ("torch.empty(4 * 2**30).fill_(1.0)", "exceeded its memory cap of 3000 MB"),
    "nan": ("return torch.full(valid.shape, float('nan'))", "returned NaN/inf attributions"),
    "wrong-shape": ("return valid[:, :3].float()", "returned shape"),
    "nondeterministic": ("return torch.full(valid.shape, random.random())", "is not deterministic under a fixed seed"),
    "deletes": ("Path({victim!r}).unlink()", "raised PermissionError"),
    "writes": ("Path({victim!r}).with_name('planted.json').write_text('{{}}')", "raised PermissionError"),
}

BAD_TEMPLATE = """
import random
import time
from pathlib import Path

import torch

from xaiboard.methods.base import Explainer


class Bad(Explainer):
    name = "bad"

    def explain(self, model, inputs, targets, task):
        valid = task.valid_features(inputs)
        {body}
        return valid.float()
"""


@pytest.mark.parametrize("kind", sorted(BAD_METHODS))
def test_bad_methods_are_refused_and_change_nothing(board, tmp_path, kind):
    if kind in ("deletes", "writes") and NO_SANDBOX:
        pytest.skip(f"no sandbox here: {NO_SANDBOX}")
    root, cache = board
    victim = next(root.glob("saliency/results/image/shapes/*.json"))
    body, expected = BAD_METHODS[kind]
    source = tmp_path / f"{kind}.py"
    source.write_text(BAD_TEMPLATE.format(body=body.format(victim=str(victim))))
    before = tree_digest(root)
    # only the sleeper gets the short budget: every other bad method must fail for its own reason,
    # not for a slow call on a loaded machine
    budget = ["--time-budget", "3"] if kind == "sleeps" else []
    result = xaiboard(
        "submit", str(source), "--name", f"bad-{kind}", "--tasks", "image/shapes", "--n", "8", "--device", "cpu",
        "--results-dir", str(root), "--memory-mb", "3000", *budget, cache=cache,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: smoke check on image/shapes: "), result.stderr[-2000:]
    assert f"bad-{kind} {expected}" in lines[0]
    assert tree_digest(root) == before


def test_precomputed_explanations_are_scored(board, tmp_path):
    root, cache = board
    folder = tmp_path / "precomputed"
    for task in ("image/shapes", "graph/ba-shapes"):
        result = xaiboard("export-samples", task, "--n", "8", "--seed", "0", "--out", str(folder), cache=cache)
        assert result.returncode == 0, result.stderr[-3000:]
    write_explanations_outside_the_harness(folder)
    result = xaiboard("submit", "--precomputed", str(folder), "--name", "outside",
                      "--metrics", "gt_auroc,deletion_auc,max_sensitivity,mprt,cost_passes",
                      "--device", "cpu", "--results-dir", str(root), cache=cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_card(root / "outside" / "method.json").kind == "precomputed"
    records = [r for r in ResultStore(root).records()[0] if r.method == "outside"]
    status = {(r.task, r.metric): (r.status, r.reason) for r in records}
    for task in ("image/shapes", "graph/ba-shapes"):
        assert status[(task, "gt_auroc")][0] == status[(task, "deletion_auc")][0] == "ok"
        for metric in ("max_sensitivity", "mprt"):
            assert status[(task, metric)] == ("not-applicable", f"{metric} re-runs the method, and precomputed explanations cannot be re-run")
        assert status[(task, "cost_passes")][0] == "not-applicable"
    ranks = standings(root, "outside")
    assert set(ranks[ranks["method"] == "outside"]["task"]) == {"image/shapes", "graph/ba-shapes"}
    assert "> outside" in result.stdout


def write_explanations_outside_the_harness(folder: Path) -> None:
    """numpy only, from the exported files: images score pixel brightness (summed over channels),
    graphs score every existing edge slot by its position."""
    images = np.load(folder / "image__shapes" / "samples.npz")
    scores = images["inputs"].sum(axis=1)
    np.savez(folder / "image__shapes" / "explanations.npz", ids=images["ids"][::-1], explanations=scores[::-1])
    graphs = np.load(folder / "graph__ba-shapes" / "samples.npz")
    valid = graphs["valid"]
    scores = np.where(valid, np.arange(valid.shape[1], dtype=np.float32)[None, :], 0.0).astype(np.float32)
    np.savez(folder / "graph__ba-shapes" / "explanations.npz", ids=graphs["ids"], explanations=scores)


def test_no_submission_can_take_the_reproductions_folder(tmp_path):
    """Not even with --overwrite: publishing would replace ``xaiboard reproduce``'s records."""
    with pytest.raises(SubmissionRejected, match="reproduce"):
        check_name("reproductions", tmp_path, [], overwrite=True)


def test_submit_refuses_a_bad_name_and_a_baseline_name(board, tmp_path):
    root, cache = board
    source = tmp_path / "ok.py"
    source.write_text(textwrap.dedent(BAD_TEMPLATE.format(body="pass")))
    before = tree_digest(root)
    for name, expected in (("../evil", "--name '../evil'"), ("saliency", "is a baseline or control")):
        result = xaiboard("submit", str(source), "--name", name, "--tasks", "image/shapes",
                          "--results-dir", str(root), cache=cache)
        assert result.returncode != 0 and expected in result.stderr, result.stderr
    assert tree_digest(root) == before

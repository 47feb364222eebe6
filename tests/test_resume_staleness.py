"""Results and explanations never go stale: resume recomputes exactly what a code or model change
affects, a retrained model is never explained from the cache, and records say how many samples
were really evaluated."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

import xaiboard.benchmark.metrics  # noqa: F401  (registers the built-in metrics)
import xaiboard.methods  # noqa: F401
import xaiboard.tasks  # noqa: F401
from xaiboard.benchmark.cache import ExplanationCache
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.runner import run
from xaiboard.benchmark.store import ResultStore

from toy_task import ToyModel

TESTS = Path(__file__).resolve().parent

TASK_PLUGIN = """
from pathlib import Path

import torch

from toy_task import ToyTask
from xaiboard.benchmark.registry import TASKS

HERE = Path(__file__).parent


class FolderTask(ToyTask):
    '''The toy task with its checkpoint in the plugin's own folder, as a user's task would keep it.'''

    weights_file = ""

    def model(self, device="cpu"):
        model = self.build_model()
        model.load_state_dict(torch.load(HERE / self.weights_file))
        return model.eval().to(device)


@TASKS.register("stale/a")
class TaskA(FolderTask):
    name, weights_file = "stale/a", "a.pt"


@TASKS.register("stale/b")
class TaskB(FolderTask):
    name, weights_file = "stale/b", "b.pt"
"""

METRIC_PLUGIN = """
from xaiboard.benchmark.metric import Metric
from xaiboard.benchmark.registry import METRICS

SCALE = {scale}


@METRICS.register("{name}")
class Summed(Metric):
    '''The explanation's sum per sample, times SCALE.'''

    name, family, direction, value_range = "{name}", "faithfulness", "higher", (-1e9, 1e9)

    def compute(self, ctx):
        return ctx.explanation.flatten(1).sum(dim=1) * SCALE
"""


def save_weights(path: Path, seed: int) -> None:
    """A "retrained" toy model: the toy task's architecture with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    torch.save(ToyModel().state_dict(), path)


def setup_plugins(folder: Path) -> list[Path]:
    folder.mkdir()
    (folder / "tasks.py").write_text(TASK_PLUGIN)
    save_weights(folder / "a.pt", seed=1)
    save_weights(folder / "b.pt", seed=2)
    for name in ("plugin-a", "plugin-b"):
        (folder / f"{name}.py").write_text(METRIC_PLUGIN.format(name=name, scale=1.0))
    return [folder / "tasks.py", folder / "plugin-a.py", folder / "plugin-b.py"]


def xaiboard_run(plugins: list[Path], results: Path, cache: Path) -> None:
    env = {**os.environ, "XAIBOARD_CACHE": str(cache), "PYTHONPATH": str(TESTS)}
    command = [
        sys.executable, "-m", "xaiboard.benchmark.cli", "run", "--tasks", "stale/a,stale/b",
        "--methods", "saliency,input_x_gradient", "--metrics", "plugin-a,plugin-b,gt_auroc",
        "--n", "8", "--device", "cpu", "--results-dir", str(results), "--quiet",
    ]
    command += [arg for path in plugins for arg in ("--plugin", str(path))]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def snapshot(results: Path) -> dict[tuple[str, str, str], tuple[int, float]]:
    """(task, method, metric) -> (file mtime in ns, mean): which records a run rewrote, and to what."""
    store = ResultStore(results)
    records, errors = store.records()
    assert not errors
    return {
        r.key: (store.path(*r.key).stat().st_mtime_ns, r.summary.mean)
        for r in records
    }


def test_resume_recomputes_exactly_what_changed(tmp_path):
    plugins = setup_plugins(tmp_path / "plugins")
    results, cache = tmp_path / "results", tmp_path / "cache"
    xaiboard_run(plugins, results, cache)
    first = snapshot(results)
    assert len(first) == 2 * 2 * 3

    (tmp_path / "plugins" / "plugin-a.py").write_text(METRIC_PLUGIN.format(name="plugin-a", scale=2.0))
    xaiboard_run(plugins, results, cache)
    second = snapshot(results)
    changed = {key for key in first if second[key][0] != first[key][0]}
    assert changed == {key for key in first if key[2] == "plugin-a"}
    for key in changed:  # and the recomputed values are the edited metric's
        assert abs(second[key][1] - 2.0 * first[key][1]) <= 1e-6 * max(1.0, abs(first[key][1]))

    save_weights(tmp_path / "plugins" / "a.pt", seed=3)  # retrain task a's model in its own folder
    xaiboard_run(plugins, results, cache)
    third = snapshot(results)
    changed = {key for key in second if third[key][0] != second[key][0]}
    assert changed == {key for key in second if key[0] == "stale/a"}


def test_retrained_model_is_never_explained_from_the_cache(tmp_path):
    plugins = setup_plugins(tmp_path / "plugins")
    cache = tmp_path / "cache"
    xaiboard_run(plugins, tmp_path / "before", cache)
    save_weights(tmp_path / "plugins" / "a.pt", seed=3)
    xaiboard_run(plugins, tmp_path / "after", cache)  # fresh results folder, shared cache
    xaiboard_run(plugins, tmp_path / "clean", tmp_path / "empty-cache")  # nothing cached at all
    before, after, clean = (snapshot(tmp_path / name) for name in ("before", "after", "clean"))
    key = ("stale/a", "saliency", "plugin-a")
    assert after[key][1] != before[key][1]  # saliency of a linear model is its weights: they changed
    for key in clean:  # the shared cache served nothing of the old model: every number as if fresh
        assert after[key][1] == clean[key][1], key
    ids = {r.task_fingerprint for r in ResultStore(tmp_path / "after").records()[0] if r.task == "stale/a"}
    old = {r.task_fingerprint for r in ResultStore(tmp_path / "before").records()[0] if r.task == "stale/a"}
    assert len(ids) == len(old) == 1 and ids != old


def test_records_carry_the_number_of_samples_really_evaluated(tmp_path, caplog):
    task = TASKS.create("graph/ba-shapes@1")
    available = len(task.samples("test", 100_000, 0))
    assert available < 100_000
    with caplog.at_level(logging.WARNING):
        records = run(
            ["graph/ba-shapes@1"], ["random"], ["sparseness", "gt_auroc"], n=100_000, device="cpu",
            store=ResultStore(tmp_path / "results"), cache=ExplanationCache(tmp_path / "cache"), progress=False,
        )
    assert {r.status for r in records} == {"ok"}
    assert {r.n_samples for r in records} == {available}
    assert all(len(r.sample_ids) == available == r.summary.n + r.summary.n_nan for r in records)
    warnings = [m for m in caplog.messages if "graph/ba-shapes@1 has only" in m]
    assert len(warnings) == 1 and f"evaluating {available}" in warnings[0]


def test_fingerprint_tracks_model_code_outside_the_task_module(monkeypatch):
    """The GIN lives in ``tasks/gin.py``, not in the task's modules: editing it must still make
    stored results and cached explanations of every GIN task stale."""
    import inspect

    import xaiboard.tasks.gin as gin

    task = TASKS.create("graph/ba-2motifs@1")
    model = task.model()
    before = task.fingerprint(model)
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: real(obj) + ("\n# edited" if obj is gin else ""))
    assert task.fingerprint(model) != before

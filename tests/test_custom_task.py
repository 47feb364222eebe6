"""A task of one's own: the README's example file, copied outside the package, runs end to end.

``examples/custom_task.py`` defines data, model and ground truth from scratch (8x8 bar images,
a fixed line detector) on top of ``ImageTask``; nothing in the package knows it. The test
drives it through the CLI in a fresh process, as a user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import xaiboard.benchmark.metrics  # noqa: F401  (registers the built-in metrics)
import xaiboard.methods  # noqa: F401
from xaiboard.benchmark.registry import METHODS, METRICS
from xaiboard.benchmark.store import ResultStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_task.py"


def _xaiboard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "xaiboard.benchmark.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_custom_task_from_a_file_runs_every_method_and_metric(tmp_path):
    plugin = shutil.copy(EXAMPLE, tmp_path / "my_task.py")
    env = {**os.environ, "XAIBOARD_CACHE": str(tmp_path / "cache")}

    shown = _xaiboard("task", "show", "my/bars", "--plugin", plugin, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "fixed oriented line detector" in shown.stdout and "pixels of the bar" in shown.stdout

    results = tmp_path / "results"
    ran = _xaiboard("run", "--plugin", plugin, "--tasks", "my/bars", "--n", "6", "--device", "cpu",
                    "--results-dir", str(results), "--quiet", env=env)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    records, errors = ResultStore(results).records()
    assert not errors
    assert [(r.method, r.metric, r.error) for r in records if r.status != "ok"] == []
    image_methods = {m for m in METHODS.names()
                     if METHODS.factory(m).__module__.startswith("xaiboard.") and "image" in METHODS.factory(m).modalities
                     and METHODS.factory(m).tier == "default"}  # fmt: skip
    image_metrics = {m for m in METRICS.names()
                     if METRICS.factory(m).__module__.startswith("xaiboard.") and "image" in METRICS.factory(m).modalities}  # fmt: skip
    assert {(r.method, r.metric) for r in records} == {(m, k) for m in image_methods for k in image_metrics}
    auroc = {r.method: r.summary.mean for r in records if r.metric == "gt_auroc"}
    # the detector is piecewise linear in the bar pixels: IG (zero baseline) ranks the bar first
    assert auroc["integrated_gradients"] > 0.95
    assert abs(auroc["random"] - 0.5) < 0.15  # 6 samples x 64 pixels, bar share 1/8

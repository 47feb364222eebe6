"""The README's "bring your own method" example works as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xaiboard.benchmark.store import ResultStore

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_plugin_example_runs(tmp_path):
    example = re.search(r"```python\n(# my_method.py\n.*?)```", README.read_text(), re.S).group(1)
    plugin = tmp_path / "my_method.py"
    plugin.write_text(example)
    env = {**os.environ, "XAIBOARD_CACHE": str(tmp_path / "cache")}
    command = [
        sys.executable, "-m", "xaiboard.benchmark.cli", "run", "--plugin", str(plugin),
        "--methods", "grad-squared", "--metrics", "gt_auroc", "--n", "8", "--device", "cpu",
        "--results-dir", str(tmp_path / "results"), "--quiet",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records, errors = ResultStore(tmp_path / "results").records()
    assert not errors and len(records) == 3
    assert all(r.status == "ok" and r.method == "grad-squared" for r in records), [r.error for r in records]
    # squared gradients point at the planted evidence on every built-in task
    assert all(r.summary.mean > 0.8 for r in records), {r.task: r.summary.mean for r in records}

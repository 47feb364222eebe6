"""docs/metrics.md carries the table that ``xaiboard list metrics --format markdown`` prints."""

import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def test_metrics_doc_table_is_current():
    text = DOC.read_text()
    table = text.split("<!-- metrics-table:start -->\n")[1].split("<!-- metrics-table:end -->")[0]
    # a fresh process: other tests register test-only metrics in this one
    command = [sys.executable, "-m", "xaiboard.benchmark.cli", "list", "metrics", "--format", "markdown"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert table.strip() == result.stdout.strip()

"""The board outside the app: the static export (``xaiboard board export``), the
``xaiboard leaderboard`` command line, and the Hugging Face Space files (``space/``)."""

from __future__ import annotations

import html
import re
import shutil
import sys
from pathlib import Path

from click.testing import CliRunner
from streamlit.testing.v1 import AppTest
from test_leaderboard import CARDS, SHAPES, card, write_root

from xaiboard.benchmark import cli
from xaiboard.benchmark.paths import REPO_ROOT
from xaiboard.leaderboard import tables
from xaiboard.leaderboard.shown import rank_cell

SCRIPT = "<script>alert(1)</script>"


def hostile_root(root: Path) -> None:
    """The SHAPES records, with a card whose description is a script."""
    write_root(root, SHAPES, {**CARDS, "good": card("good", description=SCRIPT)})


def export(root: Path, out: Path) -> str:
    result = CliRunner().invoke(cli.main, ["board", "export", str(out), "--results-dir", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_export_writes_the_overview_task_pages_and_csvs(tmp_path):
    hostile_root(tmp_path / "root")
    output = export(tmp_path / "root", tmp_path / "site")
    assert f"board export: {tmp_path / 'site' / 'index.html'}" in output
    board = tables.load(tmp_path / "root")[0]
    row = board.overview().set_index("method").loc["good"]
    index = (tmp_path / "site" / "index.html").read_text()
    # the overview table holds good's family rank cell, in the row of good
    good_row = re.search(r"<tr>\s*<td>good</td>.*?</tr>", index, re.S).group(0)
    assert f"<td>{rank_cell(row['mean_rank'], row['rank_group'])}</td>" in good_row
    assert 'href="tasks/image_shapes.html"' in index and 'href="csv/overview-image-faithfulness.csv"' in index
    assert "<script" not in index  # a static page that opens from disk: no script at all
    task_page = (tmp_path / "site" / "tasks" / "image_shapes.html").read_text()
    assert "<h1>Task image/shapes</h1>" in task_page and 'href="../csv/image_shapes-family-ranks.csv"' in task_page
    csv = (tmp_path / "site" / "csv" / "overview-image-faithfulness.csv").read_text()
    assert csv.splitlines()[0] == "method,control,method family,image/shapes"
    assert (tmp_path / "site" / "xaiboard.json").exists()


def test_export_shows_submitted_text_as_text(tmp_path):
    hostile_root(tmp_path / "root")
    export(tmp_path / "root", tmp_path / "site")
    pages = [p.read_text() for p in (tmp_path / "site").rglob("*.html")]
    assert not any("<script" in page for page in pages)
    assert any(html.escape(SCRIPT) in page for page in pages)  # the description, shown as text


def test_leaderboard_command_line_has_port_address_and_the_viewer_toolbar(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli.subprocess, "run", lambda argv, env, check: calls.append(argv) or type("Done", (), {"returncode": 0})())
    args = ["leaderboard", "--results-dir", str(tmp_path), "--port", "8765", "--address", "0.0.0.0"]
    assert CliRunner().invoke(cli.main, args, catch_exceptions=False).exit_code == 0
    (argv,) = calls
    options = dict(zip(argv[5::2], argv[6::2]))
    assert options == {"--browser.gatherUsageStats": "false", "--client.toolbarMode": "viewer",
                       "--server.port": "8765", "--server.address": "0.0.0.0"}  # fmt: skip
    assert "--server.port" not in cli.leaderboard_argv(None, None)


def test_the_repository_config_hides_the_deploy_button():
    config = (REPO_ROOT / ".streamlit" / "config.toml").read_text()
    assert re.search(r'^\[client\]\ntoolbarMode = "viewer"$', config, re.M)


def test_the_space_starts_from_its_files_with_the_results_from_the_environment(tmp_path, monkeypatch):
    """A Space as space/README.md lays it out: app.py, requirements.txt, .streamlit/ and the
    repository copy in xaiboard/ (a link here), the results folder given by XAIBOARD_SUBMISSIONS."""
    space = tmp_path / "space"
    space.mkdir()
    for name in ("app.py", "requirements.txt", "README.md"):
        shutil.copy(REPO_ROOT / "space" / name, space / name)
    shutil.copytree(REPO_ROOT / ".streamlit", space / ".streamlit")
    (space / "xaiboard").symlink_to(REPO_ROOT)
    hostile_root(tmp_path / "results")
    monkeypatch.setenv("XAIBOARD_SUBMISSIONS", str(tmp_path / "results"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the Space's app.py extends it
    at = AppTest.from_file(str(space / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert [h.value for h in at.header] == ["Overview"]
    assert any("good" in frame.value["method"].tolist() for frame in at.dataframe)
    assert "app_file: app.py" in (space / "README.md").read_text()

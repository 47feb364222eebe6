"""The leaderboard in a real browser: ``streamlit run leaderboard/app.py`` over the committed
results, driven through Playwright with Debian's ``/usr/bin/chromium`` (no browser download).

Every page of ``app.PAGES`` is opened, its visible content checked and a screenshot saved to
``artifacts/screenshots/``; the overview's first render and a task switch on the Task page are
timed in the browser and written to ``artifacts/browser-timings.json`` (``$XAIBOARD_ARTIFACTS``
instead of ``artifacts/`` when set). No test asserts a
duration: the numbers are measurements for the reader, and this machine is shared.

Without chromium (or Playwright) the tests are skipped with the reason; CI sets
``XAIBOARD_REQUIRE_BROWSER=1`` (``.ci/run``, which installs chromium), and then they fail instead.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from xaiboard.benchmark.paths import REPO_ROOT, submissions_dir
from xaiboard.leaderboard import tables as tables_module, ui

pytestmark = pytest.mark.browser

APP = REPO_ROOT / "leaderboard" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = Path(os.environ.get("XAIBOARD_ARTIFACTS", REPO_ROOT / "artifacts"))
SCREENSHOTS = ARTIFACTS / "screenshots"
TIMINGS = ARTIFACTS / "browser-timings.json"
#: generous: the machine is shared, and the first render loads the app's modules
WAIT_MS = 120_000
#: the overview cell checked: a gradient baseline on the planted-shapes task
METHOD, TASK = "integrated_gradients", "image/shapes"
TABLE = '[data-testid="stDataFrame"]'


def pages() -> list[tuple[str, str]]:
    """``app.PAGES`` (file, title) read from the source: importing the app would run it."""
    tree = ast.parse(APP.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PAGES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("leaderboard/app.py has no PAGES list")


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail where CI requires the browser."""
    if os.environ.get("XAIBOARD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"XAIBOARD_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"streamlit did not answer on {url} within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def app_url(browser: object, board: tables_module.BoardTables) -> Iterator[str]:
    """The app over the committed results on a free localhost port (headless, no usage statistics)."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]  # fmt: skip
    env = {**os.environ, "XAIBOARD_SUBMISSIONS": str(submissions_dir())}
    # from the repository root, so Streamlit reads its .streamlit/config.toml (the viewer toolbar)
    server = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float]]:
    """What the tests measured, written to ``artifacts/browser-timings.json`` at the end."""
    measured: dict[str, float] = {}
    yield measured
    if measured:
        ARTIFACTS.mkdir(exist_ok=True)
        TIMINGS.write_text(json.dumps({"seconds": measured, "results": str(submissions_dir())}, indent=1) + "\n")


@pytest.fixture(scope="module")
def board() -> tables_module.BoardTables:
    """The precomputed tables the app shows; stale ones fail here, as the app would spend
    minutes recomputing them (that is for ``xaiboard board build``)."""
    root = submissions_dir()
    stored, why = tables_module.read_stored(root / tables_module.TABLES_FILE)
    if stored is None or stored.keys != tables_module.content_keys(root):
        pytest.fail(f"{root / tables_module.TABLES_FILE} is missing or stale ({why or 'records or board code changed'}): "
                    "run `xaiboard board build`")  # fmt: skip
    return stored


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    yield opened
    context.close()


def open_page(page: object, url: str) -> float:
    """Go to ``url`` and wait until the app has run and shows a table; seconds since navigation start."""
    page.goto(url, wait_until="domcontentloaded")
    page.locator(TABLE).first.wait_for(state="visible")
    settled(page)
    return page.evaluate("performance.now()") / 1000


def settled(page: object) -> None:
    """Wait until the script run is over: no status widget saying it runs, no stale elements."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && !document.querySelector('[data-stale=\"true\"]')"
    )


def screenshot(page: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def assert_no_failure(page: object) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("This part of the page could not be shown").count() == 0


def choose(page: object, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label``."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.locator("input").click()
    page.get_by_role("option", name=option, exact=True).click()


def table_row(page: object, *texts: str) -> object:
    """Wait for a table row holding every one of ``texts`` (Streamlit draws cells on a canvas and
    mirrors them in an accessible table, filled in after the table shows), and return it."""
    row = page.locator(f"{TABLE} tr")
    for text in texts:
        row = row.filter(has_text=text)
    row.first.wait_for(state="attached")
    return row.first


def test_overview_shows_a_known_rank_and_the_downloads(page, app_url, board, timings):
    timings["overview_first_render"] = round(open_page(page, app_url), 3)
    family = next(f for f in ("faithfulness", "robustness", "user_proxy", "sanity", "cost") if f in board.tasks[TASK].families)
    rows = board.overview()
    row = rows[(rows["task"] == TASK) & (rows["method"] == METHOD) & (rows["family"] == family)].iloc[0]
    expected = ui.rank_cell(row["mean_rank"], row["rank_group"])
    page.get_by_role("heading", name="Overview").wait_for()
    assert expected in table_row(page, METHOD, expected).text_content()
    assert page.get_by_role("button", name="Whole board (JSON)").is_visible()
    assert page.get_by_role("button", name="Download CSV").first.is_visible()
    assert page.get_by_role("button", name="Deploy").count() == 0  # the viewer toolbar
    assert_no_failure(page)
    screenshot(page, "overview")


def test_task_page_switches_task(page, app_url, board, timings):
    first, other = list(board.tasks)[:2]
    open_page(page, f"{app_url}/task")
    page.get_by_role("heading", name=f"Task {first}").wait_for()
    start = page.evaluate("performance.now()")
    choose(page, "Task", other)
    page.get_by_role("heading", name=f"Task {other}").wait_for()
    page.locator(TABLE).first.wait_for(state="visible")
    settled(page)
    timings["task_switch"] = round((page.evaluate("performance.now()") - start) / 1000, 3)
    best = board.tasks[other].frames["family_ranks"]["method"].iloc[0]
    assert best in table_row(page, best).text_content()
    assert_no_failure(page)
    screenshot(page, "task")


def test_method_page_shows_the_card_and_ranks(page, app_url, board):
    open_page(page, f"{app_url}/method")
    choose(page, "Method", METHOD)
    page.get_by_role("heading", name=f"Method {METHOD}").wait_for()
    settled(page)
    assert "description" in table_row(page, "description").text_content()
    assert page.get_by_role("button", name="Download CSV").first.is_visible()
    assert_no_failure(page)
    screenshot(page, "method")


def test_method_page_shows_an_explanation_picture(page, app_url):
    """The Method page draws example explanations over the inputs (an image or a canvas that is
    not a table's)."""
    open_page(page, f"{app_url}/method")
    choose(page, "Method", METHOD)
    page.get_by_role("heading", name=f"Method {METHOD}").wait_for()
    page.get_by_role("heading", name="Example explanations").wait_for()
    settled(page)
    page.locator('[data-testid="stMain"] [data-testid="stImage"] img').first.wait_for()
    pictures = page.locator('[data-testid="stMain"] img, [data-testid="stMain"] canvas').all()
    drawn = [p for p in pictures if p.evaluate(f"e => !e.closest('{TABLE}')")]
    assert drawn, "the Method page shows no picture of an explanation"


@pytest.mark.parametrize(("script", "title"), pages(), ids=[title for _, title in pages()])
def test_every_page_opens(page, app_url, script, title):
    slug = "" if script == pages()[0][0] else Path(script).stem
    page.goto(f"{app_url}/{slug}", wait_until="domcontentloaded")
    page.locator('[data-testid="stMain"] h2').first.wait_for(state="visible")
    settled(page)
    assert_no_failure(page)
    screenshot(page, f"page-{Path(script).stem}")

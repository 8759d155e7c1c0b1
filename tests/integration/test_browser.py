"""A real browser: headless Chromium opens /, lands in the notebook UI, runs a cell.

Debian's chromium through Python playwright (no browser download). The screenshot is
kept in test-artifacts/ at the repository root, whether the test passes or not. tmpnb is
started and checked for leftovers by the `launch` fixture in conftest.py.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tmpnb_process import ONE_ADDRESS

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("TMPNB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def wait_for_idle_kernel(page, prefix: str, timeout: float = 120) -> None:
    """Until the notebook's session has a kernel that its server reports idle, asked from the
    page itself (its cookie is the visitor's login)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = page.evaluate(
            """async (prefix) => {
                const reply = await fetch(prefix + "api/sessions");
                if (!reply.ok) return [];
                return (await reply.json()).map(s => s.kernel && s.kernel.execution_state);
            }""",
            prefix,
        )
        if "idle" in states:
            return
        time.sleep(0.5)
    raise AssertionError(f"no idle kernel in {prefix} within {timeout:g}s")


def test_a_visitor_runs_a_cell_in_a_fresh_notebook(launch, browser):
    tmpnb = launch(*ONE_ADDRESS, "--pool-size=1", "--capacity=2")
    tmpnb.wait_available(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(tmpnb.base + "/", wait_until="domcontentloaded")
        assert re.search(r"/user/[A-Za-z0-9]+/tree", page.url), page.url
        prefix = re.search(r"(/user/[A-Za-z0-9]+/)", page.url).group(1)

        # New notebook through the UI's own "New" menu; it opens in a new tab.
        page.get_by_text("New", exact=True).first.click(timeout=60_000)
        with page.context.expect_page(timeout=60_000) as opened:
            page.get_by_role("menuitem", name=re.compile(r"Python 3")).first.click()
        notebook = opened.value
        notebook.wait_for_url(re.compile(re.escape(prefix) + r"notebooks/Untitled.*\.ipynb"), timeout=60_000)

        # Wait for the kernel, type into the first cell, run it. The UI's indicator says idle
        # before any kernel exists too: on a loaded machine the server itself must say so.
        wait_for_idle_kernel(notebook, prefix)
        notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=90_000)
        editor = notebook.locator(".jp-Cell .cm-content").first
        editor.click()
        editor.press_sequentially("6 * 7")
        notebook.keyboard.press("Shift+Enter")
        output = notebook.locator(".jp-OutputArea-output").first
        output.wait_for(timeout=60_000)
        assert output.inner_text().strip() == "42"
        notebook.screenshot(path=str(ARTIFACTS / "browser-notebook.png"))
    except Exception:
        for i, open_page in enumerate(page.context.pages):
            open_page.screenshot(path=str(ARTIFACTS / f"browser-failure-{i}.png"))
        raise

"""Share in a real browser: the toolbar's Share button, and a hostile share shown inert.

Headless Debian Chromium through playwright, against `twistd tmpnb` with the real image
(TMPNB_TEST_IMAGE must have the Share button: python -m tmpnb.image build). Screenshots go
to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import time

import nbformat
import pytest

from test_browser import ARTIFACTS, browser  # noqa: F401  (the fixture)
from embedding_site import Site, article
from tmpnb_process import auth, call, visit

pytestmark = [pytest.mark.integration, pytest.mark.browser]
PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError

HOSTILE_HTML = (
    "<script>document.title = 'owned'; try { top.document.title = 'owned'; top.owned = 1; } catch (e) {}"
    " fetch('/api/stats').then(function () { top.fetched = 1; });</script>"
    "<img id='bad' src='nowhere.png' onerror=\"document.title = 'owned'; top.owned = 1;\">"
    "<b id='visible-marker'>hostile output</b>"
)


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def save_notebook(base: str, prefix: str, token: str, name: str, source: str, outputs: list) -> None:
    cell = nbformat.v4.new_code_cell(source, metadata={"trusted": True}, outputs=outputs)
    notebook = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": KERNELSPEC})
    notebook = json.loads(nbformat.writes(notebook))
    saved = call(base, "PUT", f"{prefix}api/contents/{name}",
                 json.dumps({"type": "notebook", "format": "json", "content": notebook}).encode(), auth(token))
    assert saved.status in (200, 201), saved


def click_through_dialogs(page, target, timeout: float = 120) -> None:
    """Click `target`; a dialog in the way (the kernel chooser, or a kernel that a loaded machine
    made slow to connect) is accepted first."""
    deadline = time.monotonic() + timeout
    while True:
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():
            dialog.first.click()
        try:
            target.click(timeout=5_000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise


def test_the_share_button_gives_a_link_that_opens_the_rendered_notebook(launch, browser, socket_root):  # noqa: F811
    tmpnb = launch("--pool-size=1", "--capacity=2", "--client-share=1", f"--share-store={os.path.join(socket_root, 's.sqlite3')}")
    tmpnb.wait_available(1)
    prefix, token, _ = visit(tmpnb.base)
    save_notebook(tmpnb.base, prefix, token, "chart.ipynb", "show()", [
        nbformat.v4.new_output("display_data", data={"text/plain": "output-from-the-author-7319"})])
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(f"{tmpnb.base}{prefix}notebooks/chart.ipynb?token={token}", wait_until="domcontentloaded")
        # An edit that exists only in the browser: Share must save before it snapshots.
        editor = page.locator(".jp-Cell .cm-content").first
        click_through_dialogs(page, editor)
        page.keyboard.press("End")
        page.keyboard.type("  # edited-in-the-browser")
        click_through_dialogs(page, page.locator("[data-jp-item-name='tmpnb-share']").first)
        link = page.locator(".tmpnb-share-url")
        link.wait_for(timeout=60_000)
        url = link.input_value()
        assert re.fullmatch(re.escape(tmpnb.base) + r"/share/[A-Za-z0-9_-]{22}", url), url
        page.screenshot(path=str(ARTIFACTS / "share-dialog.png"))

        reader = browser.new_page(viewport={"width": 1280, "height": 800})
        reader.goto(url)
        notebook = reader.frame_locator("#notebook")
        assert "output-from-the-author-7319" in notebook.locator(".jp-OutputArea-output").first.inner_text(
            timeout=120_000)
        assert "edited-in-the-browser" in notebook.locator(".jp-InputArea").first.inner_text()
        assert reader.locator("#remix").is_visible()
        reader.screenshot(path=str(ARTIFACTS / "share-page.png"))
    except Exception:
        for i, open_page in enumerate(page.context.pages):
            open_page.screenshot(path=str(ARTIFACTS / f"share-failure-{i}.png"))
        raise


def test_scripts_and_event_handlers_in_a_shared_notebook_stay_inert(launch, browser, socket_root):  # noqa: F811
    tmpnb = launch("--pool-size=1", "--capacity=2", "--client-share=1", f"--share-store={os.path.join(socket_root, 's.sqlite3')}")
    tmpnb.wait_available(1)
    prefix, token, _ = visit(tmpnb.base)
    save_notebook(tmpnb.base, prefix, token, "hostile.ipynb", "show()",
                  [nbformat.v4.new_output("display_data", data={"text/html": HOSTILE_HTML, "text/plain": "x"})])
    shared = call(tmpnb.base, "POST", "/api/share",
                  json.dumps({"url": prefix + "notebooks/hostile.ipynb"}).encode(), auth(token))
    assert shared.status == 201, shared
    url = tmpnb.base + shared.json()["url"]
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    frame = page.frame_locator("#notebook")
    # The hostile output is there, rendered...
    frame.locator("#visible-marker").wait_for(timeout=120_000)
    assert frame.locator("img#bad").count() == 1
    assert frame.locator("script").count() >= 1
    page.wait_for_timeout(1000)  # room for an onerror or a fetch to fire, were they allowed to
    # ...and did nothing on tmpnb's origin.
    assert "owned" not in page.title()
    assert page.evaluate("typeof window.owned") == "undefined"
    assert page.evaluate("typeof window.fetched") == "undefined"
    page.screenshot(path=str(ARTIFACTS / "share-hostile.png"))

    # Opened directly, outside the page's iframe, the CSP sandbox keeps it inert as well.
    direct = browser.new_page()
    direct.goto(url + ".html")
    direct.locator("#visible-marker").wait_for(timeout=60_000)
    direct.wait_for_timeout(1000)
    assert "owned" not in direct.title()
    assert direct.evaluate("typeof window.owned") == "undefined"


def test_the_share_button_works_inside_a_cross_site_iframe(launch, browser, socket_root):  # noqa: F811
    """An article on 127.0.0.2 (another site for the browser) embeds the notebook from 127.0.0.1:
    no cookie of tmpnb's reaches the iframe, and sharing still works with the page's token."""
    pages: dict[str, str] = {}
    with Site("127.0.0.2", pages) as journal:
        tmpnb = launch("--pool-size=1", "--capacity=2", "--client-share=1", f"--share-store={os.path.join(socket_root, 's.sqlite3')}",
                       f"--frame-ancestors='self' {journal.origin}")
        tmpnb.wait_available(1)
        prefix, token, _ = visit(tmpnb.base)
        save_notebook(tmpnb.base, prefix, token, "embedded.ipynb", "1 + 1", [
            nbformat.v4.new_output("execute_result", data={"text/plain": "embedded-output-5150"}, execution_count=1)])
        pages["/article.html"] = article(f"{tmpnb.base}{prefix}notebooks/embedded.ipynb?token={token}")
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            page.goto(f"{journal.origin}/article.html")
            notebook = page.frame_locator("#notebook")
            click_through_dialogs(notebook, notebook.locator("[data-jp-item-name='tmpnb-share']").first)
            link = notebook.locator(".tmpnb-share-url")
            link.wait_for(timeout=60_000)
            url = link.input_value()
            assert url.startswith(tmpnb.base + "/share/"), url
            raw = call(tmpnb.base, "GET", url.removeprefix(tmpnb.base) + ".ipynb")
            assert raw.status == 200 and b"embedded-output-5150" in raw.body
            page.screenshot(path=str(ARTIFACTS / "share-in-iframe.png"))
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "share-iframe-failure.png"))
            raise

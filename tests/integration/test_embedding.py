"""A reader of a journal's article runs the notebook embedded in it, in headless Chromium.

The article is on another site (127.0.0.2) than tmpnb (127.0.0.1), so the browser sends
none of the notebook server's cookies from inside the iframe: the kernel, the widgets and
saving must work with the token the notebook page carries, over http and over https
(`--listen ssl:…`, a certificate made here). `--frame-ancestors` decides who may embed; and a
static page with thebe, on another site, gets a server from `POST /api/spawn` and runs a cell
with nothing but `--allow-origin` set.

Times (article opened → first cell's output) go to test-artifacts/embedding-times.json.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from embedding_site import CHROMIUM, CHROMIUM_ARGS, THEBE_LIB, Site, article, make_certificate, thebe_page
from tmpnb_process import REPO, Tmpnb, call, free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = REPO / "test-artifacts"
WAIT = 120_000  # ms: a busy 2-core machine
BOOT_WAIT = 300  # s: a container booting while other developers' tests load the machine
ARTICLE_HOST = "127.0.0.2"
OTHER_HOST = "127.0.0.3"  # a site that was not allowed to embed
WELCOME = "/spawn/notebooks/Welcome.ipynb"
TIMES: dict[str, list[float]] = {}


@pytest.fixture(scope="module")
def certificate():
    with tempfile.TemporaryDirectory(prefix="tnbcert") as directory:
        yield make_certificate(directory)


@pytest.fixture(scope="module")
def browser(certificate):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=[*CHROMIUM_ARGS, *certificate.chromium_args()])
        yield browser
        browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "embedding-times.json").write_text(json.dumps(TIMES, indent=1) + "\n")


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    """The other site's pages, filled in once tmpnb's address is known."""
    return {}


@pytest.fixture(scope="module")
def journal(pages) -> Iterator[Site]:
    with Site(ARTICLE_HOST, pages) as site:
        yield site


@pytest.fixture(scope="module")
def tmpnb(launch, journal, pages) -> Tmpnb:
    """tmpnb over http: the journal may embed it and call its API (nothing else is set)."""
    server = launch("--pool-size=2", "--capacity=4", f"--frame-ancestors='self' {journal.origin}", "--client-share=1",
                    f"--allow-origin={journal.origin}")
    pages["/article.html"] = article(server.base + WELCOME)
    pages["/live-code.html"] = thebe_page(server.base)
    return server


@pytest.fixture(scope="module")
def tls_pages() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def tls_journal(certificate, tls_pages) -> Iterator[Site]:
    with Site(ARTICLE_HOST, tls_pages, certificate) as site:
        yield site


@pytest.fixture(scope="module")
def tls_tmpnb(launch, tls_journal, tls_pages, certificate) -> Tmpnb:
    """tmpnb over https (`--listen ssl:…`), embedded by an https article."""
    port = free_port()
    server = launch("--pool-size=1", "--capacity=2", f"--frame-ancestors='self' {tls_journal.origin}", "--client-share=1",
                    f"--listen=ssl:{port}:interface=127.0.0.1:privateKey={certificate.key_path}"
                    f":certKey={certificate.cert_path}", port=port)
    tls_pages["/article.html"] = article(f"https://127.0.0.1:{port}" + WELCOME)
    return server


def test_a_reader_runs_the_notebook_embedded_in_an_article(browser, tmpnb, journal):
    tmpnb.wait_available(1, timeout=BOOT_WAIT)
    read_the_embedded_notebook(browser, journal.origin + "/article.html", tmpnb.base, "http")


def test_the_same_over_https(browser, tls_tmpnb, tls_journal):
    tls_tmpnb.wait_available(1, base=f"https://127.0.0.1:{tls_tmpnb.port}", timeout=BOOT_WAIT)
    read_the_embedded_notebook(browser, tls_journal.origin + "/article.html",
                               f"https://127.0.0.1:{tls_tmpnb.port}", "https")


def test_a_site_not_in_frame_ancestors_cannot_embed_it(browser, tmpnb):
    """The same article on a third site: the browser refuses to show the notebook."""
    tmpnb.wait_available(1, timeout=BOOT_WAIT)
    with Site(OTHER_HOST, {"/article.html": article(tmpnb.base + WELCOME)}) as elsewhere:
        context = browser.new_context()
        try:
            page = context.new_page()
            refusals = []
            page.on("console", lambda message: refusals.append(message.text)
                    if "frame-ancestors" in message.text else None)
            page.goto(elsewhere.origin + "/article.html")
            # Blocked by the CSP, the iframe holds Chromium's error page instead of the notebook.
            deadline = time.monotonic() + WAIT / 1000
            while not (refusals and page.frames[1].url.startswith("chrome-error://")):
                assert time.monotonic() < deadline, f"the notebook was not refused: {page.frames[1].url}"
                page.wait_for_timeout(200)
            assert "blocked" in refusals[0], refusals
            assert page.frame_locator("#notebook").locator(".jp-Notebook").count() == 0
        finally:
            context.close()


def test_a_thebe_page_on_another_site_runs_a_cell(browser, tmpnb, journal):
    if not (THEBE_LIB / "index.js").exists():
        pytest.skip(f"thebe not installed in {THEBE_LIB} (tools/setup --test)")
    tmpnb.wait_available(1, timeout=BOOT_WAIT)
    context = browser.new_context()
    try:
        page = context.new_page()
        opened = time.monotonic()
        page.goto(journal.origin + "/live-code.html")
        path = page.evaluate("() => window.connected")
        assert re.fullmatch(r"/user/[A-Za-z0-9]+/", path), path
        page.locator(".thebe-run-button").first.click(timeout=WAIT)
        output = page.locator(".jp-OutputArea-output").first
        output.wait_for(timeout=WAIT)
        assert output.inner_text().strip() == "42"
        TIMES.setdefault("thebe page opened -> cell output (s)", []).append(round(time.monotonic() - opened, 2))
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "embedding-thebe-failure.png"))
        raise
    finally:
        context.close()


def read_the_embedded_notebook(browser, article_url: str, tmpnb_origin: str, scheme: str) -> None:
    """A reader opens the article, runs the notebook's code cell and moves its widget's slider;
    the notebook saves. Asserted along the way: nothing the notebook asked its server for was
    refused, its websockets carried the token (no cookie reaches the server from here), and the
    article cannot see into the iframe."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    refused, sockets = [], []
    tmpnb_host = urlsplit(tmpnb_origin).hostname
    # tmpnb's answers: from its origin or (--subdomain-host) a visitor's subdomain of it.
    page.on("response", lambda r: refused.append(f"{r.status} {r.url}")
            if (urlsplit(r.url).hostname or "").endswith(tmpnb_host) and r.status >= 400 else None)
    kernel_ready = []

    def on_websocket(ws) -> None:
        sockets.append(ws.url)
        # The UI runs cells once its kernel has answered kernel_info on the channels socket.
        ws.on("framereceived", lambda payload: kernel_ready.append(True)
              if "kernel_info_reply" in (payload if isinstance(payload, str) else payload.decode("latin-1")) else None)

    page.on("websocket", on_websocket)
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.on("requestfailed", lambda r: console.append(f"failed: {r.url} {r.failure}"))
    try:
        opened = time.monotonic()
        page.goto(article_url)
        notebook = page.frame_locator("#notebook")
        notebook.locator(".jp-Notebook").wait_for(timeout=WAIT)
        shown = time.monotonic()
        deadline = time.monotonic() + WAIT / 1000
        while not kernel_ready:
            assert time.monotonic() < deadline, f"the kernel never answered; websockets: {sockets}"
            page.wait_for_timeout(200)
        ready = time.monotonic()

        # The first code cell: Shift+Enter, and its output appears.
        code_cells = notebook.locator(".jp-CodeCell")
        code_cells.nth(0).locator(".cm-content").click()
        started = time.monotonic()
        page.keyboard.press("Shift+Enter")
        result = code_cells.nth(0).locator(".jp-OutputArea-executeResult")
        result.wait_for(timeout=WAIT)
        assert result.inner_text().strip().endswith("285")  # after its prompt, "[1]:"
        done = time.monotonic()
        for phase, seconds in [("article opened -> notebook shown", shown - opened),
                               ("notebook shown -> kernel ready", ready - shown),
                               ("Shift+Enter -> output", done - started),
                               ("article opened -> first cell's output", done - opened)]:
            TIMES.setdefault(f"{scheme}: {phase} (s)", []).append(round(seconds, 2))

        # The widget: the slider appears with its output, moves, and the output follows.
        code_cells.nth(1).locator(".cm-content").click()
        page.keyboard.press("Shift+Enter")
        printed = code_cells.nth(1).locator(".widget-output")
        printed.filter(has_text="[1, 4, 9, 16, 25]").wait_for(timeout=WAIT)
        handle = code_cells.nth(1).locator(".widget-slider .noUi-handle").bounding_box()
        page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
        page.mouse.down()
        page.mouse.move(handle["x"] + 60, handle["y"] + handle["height"] / 2, steps=6)
        page.mouse.up()
        printed.filter(has_text="[1, 4, 9, 16, 25, 36").wait_for(timeout=WAIT)

        # Saving: the server has the outputs afterwards.
        notebook.locator("[data-command='docmanager:save']").first.click()
        # (The UI took the token out of its address bar; the test reads it off the websocket.)
        kernel_sockets = [url for url in sockets if "/channels" in url]
        prefix, token = re.search(r"(/user/[A-Za-z0-9]+/).*[?&]token=([^&]+)", kernel_sockets[0]).groups()
        server_origin = "http" + re.match(r"ws(s?://[^/]+)", kernel_sockets[0]).group(1)

        def saved() -> bool:
            reply = call(server_origin, "GET", prefix + "api/contents/Welcome.ipynb",
                         headers={"Authorization": f"token {token}"})
            if reply.status != 200:
                print("contents API:", reply.status, reply.body[:200])
                return False
            cells = reply.json()["content"]["cells"]
            first_code = next(cell for cell in cells if cell["cell_type"] == "code")
            return any(out.get("data", {}).get("text/plain") == "285" for out in first_code["outputs"])

        deadline = time.monotonic() + WAIT / 1000
        while not saved():
            assert time.monotonic() < deadline, "the notebook was not saved"
            time.sleep(0.5)

        assert all(f"token={token}" in url for url in kernel_sockets), sockets
        assert refused == []
        assert page.evaluate("""() => { try { return document.getElementById('notebook').contentWindow.location.href }
                                        catch (e) { return 'not visible' } }""") == "not visible"
        page.screenshot(path=str(_artifact(f"embedding-{scheme}.png")))
    except Exception:
        page.screenshot(path=str(_artifact(f"embedding-{scheme}-failure.png")))
        print("refused:", refused, "\nwebsockets:", sockets, "\nconsole:", *console[-20:], sep="\n")
        raise
    finally:
        context.close()


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name

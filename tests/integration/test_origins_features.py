"""Everything that works in path mode keeps working with `--subdomain-host`, in headless
Chromium with the real engine and image: a journal's cross-site iframe runs a cell, a thebe page
on another site runs one through `POST /api/spawn`, the Share button gives a link on tmpnb's bare
host and a remix lands on a new visitor's own subdomain, and the waiting line serves a spike of
browsers, each on its own subdomain.

tmpnb runs on `http://nb.localhost:PORT` (Chromium resolves `*.localhost` to loopback; the test's
own HTTP calls go to 127.0.0.1 with that Host, tmpnb_process.call); the journal on 127.0.0.2.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator

import nbformat
import pytest

from embedding_site import THEBE_LIB, Site, article, thebe_page
from test_browser import ARTIFACTS, browser  # noqa: F401  (the fixture)
from test_embedding import read_the_embedded_notebook
from test_share_browser import click_through_dialogs, save_notebook
from tmpnb_process import CHP, Chp, Tmpnb, auth, call, free_port, run_one_plus_one

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PARENT = "nb.localhost"
WAIT = 120_000  # ms
BOOT_WAIT = 300  # s
SERVER = r"http://([a-z0-9]{14})\." + re.escape(PARENT) + r":PORT/user/\1/"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def journal(pages) -> Iterator[Site]:
    with Site("127.0.0.2", pages) as site:
        yield site


@pytest.fixture(scope="module")
def share_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="tnbor", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def tmpnb(launch, journal, pages, share_dir) -> Tmpnb:
    port = free_port()
    # Every visitor here comes from 127.0.0.1: the per-client share must not turn them away.
    server = launch("--pool-size=1", "--capacity=8", "--client-share=1", f"--subdomain-host=http://{PARENT}:{port}",
                    f"--frame-ancestors='self' {journal.origin}", f"--allow-origin={journal.origin}",
                    f"--share-store={os.path.join(share_dir, 'shares.sqlite3')}", port=port)
    server.bare = f"http://{PARENT}:{port}"
    pages["/article.html"] = article(server.bare + "/spawn/notebooks/Welcome.ipynb")
    pages["/live-code.html"] = thebe_page(server.bare)
    return server


def server_pattern(tmpnb: Tmpnb) -> str:
    return SERVER.replace("PORT", str(tmpnb.port))


def test_a_journals_iframe_runs_a_cell_on_the_visitors_own_subdomain(browser, tmpnb, journal):  # noqa: F811
    tmpnb.wait_available(1, timeout=BOOT_WAIT)
    read_the_embedded_notebook(browser, journal.origin + "/article.html", tmpnb.bare, "subdomain")


def test_a_thebe_page_on_another_site_runs_a_cell(browser, tmpnb, journal):  # noqa: F811
    if not (THEBE_LIB / "index.js").exists():
        pytest.skip(f"thebe not installed in {THEBE_LIB} (tools/setup --test)")
    tmpnb.wait_available(1, timeout=BOOT_WAIT)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(journal.origin + "/live-code.html")
        path = page.evaluate("() => window.connected")
        origin = page.evaluate("() => window.serverOrigin")
        assert re.fullmatch(server_pattern(tmpnb), origin + path), (origin, path)
        page.locator(".thebe-run-button").first.click(timeout=WAIT)
        output = page.locator(".jp-OutputArea-output").first
        output.wait_for(timeout=WAIT)
        assert output.inner_text().strip() == "42"
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "origins-thebe-failure.png"))
        raise
    finally:
        context.close()


def test_share_gives_a_link_on_the_bare_host_and_a_remix_lands_on_a_new_subdomain(browser, tmpnb):  # noqa: F811
    tmpnb.wait_available(1, timeout=BOOT_WAIT)
    landing = call(tmpnb.bare, "GET", "/")
    match = re.fullmatch(server_pattern(tmpnb) + r"tree\?token=([0-9a-f]+)", landing.headers["location"])
    assert match, landing.headers["location"]
    server, token = match.group(0).split("tree?")[0], match.group(2)
    origin, prefix = server.split("/user/")[0], "/user/" + server.split("/user/")[1]
    save_notebook(origin, prefix, token, "chart.ipynb", "show()", [
        nbformat.v4.new_output("display_data", data={"text/plain": "output-from-the-author-8080"})])
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(f"{server}notebooks/chart.ipynb?token={token}", wait_until="domcontentloaded")
        click_through_dialogs(page, page.locator("[data-jp-item-name='tmpnb-share']").first)
        link = page.locator(".tmpnb-share-url")
        link.wait_for(timeout=WAIT)
        url = link.input_value()
        assert re.fullmatch(re.escape(tmpnb.bare) + r"/share/[A-Za-z0-9_-]{22}", url), url
        delete = page.locator(".tmpnb-share-delete").first.get_attribute("href")
        assert delete.startswith(tmpnb.bare + "/share/"), delete

        reader = context.new_page()
        reader.goto(url)
        notebook = reader.frame_locator("#notebook")
        assert "output-from-the-author-8080" in notebook.locator(".jp-OutputArea-output").first.inner_text(
            timeout=WAIT)
        reader.locator("#remix").click()
        reader.wait_for_url(re.compile(server_pattern(tmpnb) + r"notebooks/chart\.ipynb"), timeout=WAIT)
        remixed = re.match(server_pattern(tmpnb), reader.url)
        assert remixed.group(1) != match.group(1)  # a new visitor's own server
        reader.locator(".jp-Notebook").wait_for(timeout=WAIT)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, open_page in enumerate(context.pages):
            open_page.screenshot(path=str(ARTIFACTS / f"origins-share-failure-{i}.png"))
        raise
    finally:
        context.close()


def test_the_waiting_line_serves_a_spike_of_browsers_each_on_its_own_subdomain(browser, tmpnb):  # noqa: F811
    tmpnb.wait_available(1, timeout=BOOT_WAIT)
    spike = 3  # the pool holds one: two wait in line
    # A browser each: in one, the reload cookie would send the second tab back to the first's server.
    contexts = [browser.new_context() for _ in range(spike)]
    try:
        visitors = [context.new_page() for context in contexts]
        started = time.monotonic()
        for page in visitors:
            page.evaluate(f"() => {{ location.href = {tmpnb.bare + '/'!r}; }}")
        landed = re.compile(server_pattern(tmpnb) + r"tree")
        for page in visitors:
            page.wait_for_url(landed, timeout=WAIT * 2)
            page.locator(".jp-DirListing-content").wait_for(timeout=WAIT)
        ids = {re.match(server_pattern(tmpnb), page.url).group(1) for page in visitors}
        assert len(ids) == spike, [page.url for page in visitors]
        served = [r for r in tmpnb.lifecycle() if r.get("line") == "served"]
        assert served, "nobody waited in line"
        print(f"{spike} browsers served in {time.monotonic() - started:.1f}s")
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, open_page in enumerate(visitors):
            open_page.screenshot(path=str(ARTIFACTS / f"origins-spike-failure-{i}.png"))
        raise
    finally:
        for context in contexts:
            context.close()


def test_behind_an_external_chp_with_host_routing_each_visitor_gets_its_own_host(launch):
    """--proxy-api-url with --subdomain-host: tmpnb writes host-keyed routes to a real
    configurable-http-proxy run with --host-routing; a visitor's server answers on its own host
    only, and runs code."""
    if not os.path.exists(CHP):
        pytest.skip("configurable-http-proxy 5.3 not installed")
    proxy = Chp(default_target=f"http://127.0.0.1:{free_port()}", extra_args=("--host-routing",))
    proxy.start()
    try:
        bare = f"http://{PARENT}:{proxy.port}"
        tmpnb = launch("--pool-size=1", "--capacity=2", f"--proxy-api-url={proxy.api}", f"--subdomain-host={bare}",
                       env={"CONFIGPROXY_AUTH_TOKEN": proxy.token}, port=proxy.default_port)
        tmpnb.wait_available(1, base=proxy.base, timeout=BOOT_WAIT)
        landing = call(bare, "GET", "/")
        match = re.fullmatch(SERVER.replace("PORT", str(proxy.port)) + r"tree\?token=([0-9a-f]+)",
                             landing.headers.get("location", ""))
        assert match, landing
        container_id, token = match.group(1), match.group(2)
        origin, prefix = f"http://{container_id}.{PARENT}:{proxy.port}", f"/user/{container_id}/"
        assert f"/{container_id}.{PARENT}{prefix.rstrip('/')}" in proxy.routes()
        assert run_one_plus_one(origin, prefix, token) == "2"
        # Not on the bare host, nor on another visitor's host: the orchestrator answers there.
        assert call(bare, "GET", prefix + "api/status", headers=auth(token)).status == 404
        assert call(f"http://other.{PARENT}:{proxy.port}", "GET", prefix + "api/status",
                    headers=auth(token)).status == 302
    finally:
        proxy.stop()

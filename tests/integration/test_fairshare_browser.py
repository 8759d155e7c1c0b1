"""A page on another site (127.0.0.2) loads tmpnb's front page (127.0.0.1) as an image, a script, a
stylesheet and a prefetch, in headless Chromium with its own Fetch Metadata: no container is handed
out for any of them. The same page with an iframe of it (a navigation) does get one, so the test
tells the two apart."""

from __future__ import annotations

import os

import pytest

from embedding_site import CHROMIUM, CHROMIUM_ARGS, Site
from tmpnb_process import Tmpnb, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

OTHER_SITE = "127.0.0.2"


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(launch) -> Tmpnb:
    tmpnb = launch("--pool-size=1", "--capacity=2", "--boot-timeout=120")
    tmpnb.wait_available(1, timeout=300)
    return tmpnb


def handed_out(server: Tmpnb) -> int:
    states = server.stats()["states"]
    return states.get("assigned", 0) + states.get("idle", 0)


def test_subresources_from_another_site_get_no_container_and_an_iframe_does(server, browser):
    front = server.base + "/"
    pages = {
        "/subresources.html": (
            "<!doctype html><title>a popular page</title>"
            f'<img src="{front}"><img src="{server.base}/spawn/notebooks/Welcome.ipynb">'
            f'<script src="{front}"></script><link rel="stylesheet" href="{front}">'
            f'<link rel="prefetch" href="{front}?p">'
        ),
        "/frame.html": f'<!doctype html><title>an embed</title><iframe src="{front}"></iframe>',
    }
    with Site(OTHER_SITE, pages) as site:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(site.origin + "/subresources.html", wait_until="load")
            wait_until(lambda: server.stats()["clients"]["refused"].get("not-navigation", 0) >= 4, 30,
                       "the subresource requests refused")
            page.wait_for_timeout(1000)  # a prefetch may come late: it must be refused too
            assert handed_out(server) == 0, server.stats()

            page.goto(site.origin + "/frame.html", wait_until="load")
            wait_until(lambda: handed_out(server) == 1, 60, "the iframe's container")
        finally:
            context.close()

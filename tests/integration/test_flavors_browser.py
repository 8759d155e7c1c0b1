"""A real browser and two flavors: headless Chromium follows /spawn/notebooks/index.ipynb?flavor=beta,
lands in that notebook in a server of beta's image (tests/integration/flavor_image.py: only it
has the notebook and the marker file), and runs its cell, whose output is the marker.

Debian's chromium through Python playwright, as tests/integration/test_browser.py drives it.
"""

from __future__ import annotations

import re

import pytest

from flavor_image import build_marked_image, remove_image
from test_browser import ARTIFACTS, browser, wait_for_idle_kernel  # noqa: F401 - the fixture
from tmpnb_process import ONE_ADDRESS, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def beta_image(docker_client, notebook_image):
    tag = build_marked_image(docker_client, notebook_image, "beta")
    yield tag
    remove_image(docker_client, tag)


def test_a_spawn_link_with_a_flavor_opens_that_flavors_notebook_and_runs_its_cell(
        launch, browser, notebook_image, beta_image):  # noqa: F811
    tmpnb = launch(*ONE_ADDRESS, f"--flavor=alpha={notebook_image},pool-size=1",
                   f"--flavor=beta={beta_image},pool-size=1", "--capacity=3")
    wait_until(lambda: tmpnb.stats()["flavors"]["beta"]["available"] >= 1, 120, "beta pooled")
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(tmpnb.base + "/spawn/notebooks/index.ipynb?flavor=beta", wait_until="domcontentloaded")
        assert re.search(r"/user/[A-Za-z0-9]+/notebooks/index\.ipynb", page.url), page.url
        prefix = re.search(r"(/user/[A-Za-z0-9]+/)", page.url).group(1)
        wait_for_idle_kernel(page, prefix)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=90_000)
        page.locator(".jp-Cell .cm-content").first.click()
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-OutputArea-output").first
        output.wait_for(timeout=60_000)
        assert output.inner_text().strip() == "'BETA'"  # read from beta's home, in beta's kernel
        page.screenshot(path=str(ARTIFACTS / "browser-flavor-beta.png"))
        # The same link without the flavor: the default flavor's server has no such notebook.
        other = browser.new_page()
        reply = other.goto(tmpnb.base + "/spawn/notebooks/index.ipynb", wait_until="domcontentloaded")
        assert re.search(r"/user/[A-Za-z0-9]+/", other.url) and prefix not in other.url
        assert reply is not None
        other.close()
    except Exception:
        for i, open_page in enumerate(page.context.pages):
            open_page.screenshot(path=str(ARTIFACTS / f"browser-flavor-failure-{i}.png"))
        raise

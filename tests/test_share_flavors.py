"""A remix opens in the flavor its share was made in (tmpnb/share/web.py RemixPage): a notebook
shared from a course image is remixed into that image, with its packages. When the node does
not serve that flavor (a share made on another node of a federation, or a flavor removed
since), the remix page says so in one sentence and the remix opens in the default flavor;
shares made before flavors (no flavor recorded) remix into the default, as they always did.

The real Pool, WaitingLine, web tree, Sharing and SQLite store over FakeDocker on a Clock
(tests/flavorrig.py), with tests/sharefakes.py's twin of the visitors' notebook servers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from treq.testing import StubTreq

from sharefakes import NotebookServers, in_thread_now
from tests.builders import cookieless, one_address_gate
from tests.flavorrig import FlavorNode
from tests.results import succeeded
from tmpnb.flavors import Flavor, Flavors
from tmpnb.share.render import Renderer
from tmpnb.share.service import Sharing
from tmpnb.share.store import SQLiteStore
from tmpnb.share.web import sharing_extension
from tmpnb.web import WebSettings, make_resource

BASE = "http://tmpnb.test"
NAVIGATE = {"Sec-Fetch-Dest": ["document"], "Sec-Fetch-Mode": ["navigate"], "Accept": ["text/html"]}
ALPHA, BETA, GAMMA = "img/alpha:1", "img/beta:1", "img/gamma:1"
ALPHA_BETA = Flavors((Flavor("alpha", ALPHA, 2), Flavor("beta", BETA, 1)), "alpha")
NOTEBOOK = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import course")])).encode()


class PoolTokens(dict):
    """The twin's tokens are the pool's own: each server answers with the token it was booted with."""

    def __init__(self, pool) -> None:
        super().__init__()
        self._pool = pool

    def get(self, container_id, default=None):
        return self._pool.token(container_id) or default


class SharingNode:
    """One node of `flavors` with sharing on, over the share store at `store_path` (two nodes
    given the same path are two nodes of one federation sharing one store)."""

    def __init__(self, root: Path, flavors: Flavors, store_path: Path) -> None:
        root.mkdir(exist_ok=True)
        self.node = FlavorNode(root, flavors, capacity=6)
        self.servers = NotebookServers()
        self.servers.tokens = PoolTokens(self.node.pool)
        self.store = SQLiteStore(str(store_path))
        self.sharing = Sharing(self.node.clock, self.store, in_thread_now, self.node.pool,
                               lambda container_id: StubTreq(self.servers), Renderer(in_thread_now))
        self.node.settle()
        settings = WebSettings(flavors=flavors, container_image=flavors.get(None).image)
        self.treq = cookieless(StubTreq(make_resource(self.node.pool, settings, self.node.line,
                                                      extensions=[sharing_extension(self.sharing)],
                                                      gate=one_address_gate(self.node.clock))))

    def send(self, method: str, path: str, headers: dict | None = None, **kw):
        d = self.treq.request(method, BASE + path, allow_redirects=False,
                              headers=NAVIGATE if headers is None else headers, **kw)
        for _ in range(5):
            self.treq.flush()
            self.node.settle()
        response = succeeded(d)
        body = response.content()
        self.treq.flush()
        return response, succeeded(body)

    def visitor(self, flavor: str) -> tuple[str, str]:
        """A visitor's server of `flavor` holding work.ipynb: its id and token."""
        response, _ = self.send("GET", f"/?flavor={flavor}")
        assert response.code == 302
        container_id = location(response).split("/")[2]
        self.servers.files[(container_id, "work.ipynb")] = NOTEBOOK
        return container_id, self.node.pool.token(container_id)

    def share(self, container_id: str, token: str) -> str:
        body = json.dumps({"url": f"/user/{container_id}/notebooks/work.ipynb"}).encode()
        response, answer = self.send("POST", "/api/share", data=body,
                                     headers={"Authorization": [f"token {token}"], "Content-Type": ["application/json"]})
        assert response.code == 201, answer
        return json.loads(answer)["id"]

    def remix(self, share_id: str) -> str:
        """Remix `share_id` as a new visitor; the image of the server they were sent into."""
        response, _ = self.send("POST", f"/remix/{share_id}")
        assert response.code == 302
        into = location(response)
        assert into.split("?")[0].endswith("/notebooks/work.ipynb")
        container_id = into.split("/")[2]
        assert (container_id, "work.ipynb") in {(c, p) for c, p, _ in self.servers.puts}  # the notebook is in it
        return self.node.container(container_id).image

    def close(self) -> None:
        self.node.stop()
        self.store.close()


def location(response) -> str:
    return response.headers.getRawHeaders("Location")[0]


@pytest.fixture
def node(tmp_path: Path):
    node = SharingNode(tmp_path / "node", ALPHA_BETA, tmp_path / "shares.sqlite3")
    yield node
    node.close()


FALLBACK = b"which this server does not offer: it opens in the default one."


def test_a_share_from_a_beta_server_remixes_into_a_beta_server(node):
    share_id = node.share(*node.visitor("beta"))
    assert node.store.get(share_id).flavor == "beta"
    page, body = node.send("GET", f"/remix/{share_id}")
    assert page.code == 200 and FALLBACK not in body
    assert node.remix(share_id) == BETA
    assert node.remix(share_id) == BETA  # again: the refilled beta pool


def test_a_share_from_the_default_flavor_remixes_into_it(node):
    share_id = node.share(*node.visitor("alpha"))
    assert node.store.get(share_id).flavor == "alpha"
    assert node.remix(share_id) == ALPHA


def test_a_share_made_before_flavors_remixes_into_the_default_and_says_nothing(node):
    share_id = node.share(*node.visitor("beta"))
    old = replace(node.store.get(share_id), id="o" * 22, flavor=None)
    node.store.add(old, NOTEBOOK)
    page, body = node.send("GET", f"/remix/{old.id}")
    assert page.code == 200 and FALLBACK not in body
    assert node.remix(old.id) == ALPHA


def test_a_share_of_a_flavor_this_node_lacks_remixes_into_the_default_and_the_page_says_so(tmp_path, node):
    # Another node of the federation, on the same store, serves alpha and gamma but not beta.
    other = SharingNode(tmp_path / "other", Flavors((Flavor("alpha", ALPHA, 1), Flavor("gamma", GAMMA, 1)), "gamma"),
                        tmp_path / "shares.sqlite3")
    try:
        share_id = node.share(*node.visitor("beta"))
        page, body = other.send("GET", f"/remix/{share_id}")
        assert page.code == 200
        assert b'This notebook was made in the flavor "beta", ' + FALLBACK in body
        assert other.remix(share_id) == GAMMA  # that node's default, never a failure
    finally:
        other.close()


@pytest.mark.parametrize("flavor", ["<script>alert(1)</script>", "", "ALPHA", "alpha beta", "x" * 200])
def test_a_stored_flavor_no_node_could_have_named_falls_back_escaped(node, flavor):
    # The store is shared by every node of a federation: a row is data, never markup or a choice.
    share_id = node.share(*node.visitor("beta"))
    odd = replace(node.store.get(share_id), id="q" * 22, flavor=flavor)
    node.store.add(odd, NOTEBOOK)
    page, body = node.send("GET", f"/remix/{odd.id}")
    assert page.code == 200 and FALLBACK in body
    assert b"<script>" not in body
    assert node.remix(odd.id) == ALPHA

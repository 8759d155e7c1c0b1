"""Static files per flavor (tmpnb/proxy/answers.py): two images with different notebook UI
files each get theirs. The route a flavor's container gets says its flavor (tmpnb/states.py);
the proxy serves that flavor's extracted files, and a flavor without any (or a path with no
route) falls through to the container, never to another image's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.flavorrig import FlavorNode
from tests.results import succeeded
from tmpnb.flavors import Flavor, Flavors
from tmpnb.proxy.testing import ProxyHarness
from tmpnb.proxyapi import InProcessProxyAPI


def extracted(root: Path, marker: str) -> str:
    (root / "static" / "notebook").mkdir(parents=True)
    (root / "static" / "notebook" / "main.js").write_text(f"// {marker}")
    (root / "manifest.json").write_text(json.dumps({"static/": "static"}))
    return str(root)


@pytest.fixture
def harness(tmp_path: Path) -> ProxyHarness:
    h = ProxyHarness(flavor_static_dirs=(("alpha", extracted(tmp_path / "alpha", "alpha's")),
                                         ("beta", extracted(tmp_path / "beta", "beta's"))))
    h.routes.add("/user/a1", {"target": h.unix_target("a1"), "flavor": "alpha"})
    h.routes.add("/user/b1", {"target": h.unix_target("b1"), "flavor": "beta"})
    h.routes.add("/user/g1", {"target": h.unix_target("g1"), "flavor": "gamma"})
    h.routes.add("/user/n1", {"target": h.unix_target("n1")})
    return h


def get(harness: ProxyHarness, path: bytes) -> bytes:
    visitor = harness.visit()
    visitor.send(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    return visitor.received()


def test_each_flavors_servers_get_their_own_images_files(harness):
    assert get(harness, b"/user/a1/static/notebook/main.js").endswith(b"// alpha's")
    assert get(harness, b"/user/b1/static/notebook/main.js").endswith(b"// beta's")
    assert harness.attempts() == []  # no container asked


@pytest.mark.parametrize("user", [b"g1", b"n1", b"nobody"])
def test_a_flavor_without_files_a_route_without_a_flavor_or_no_route_get_none_of_them(harness, user):
    answer = get(harness, b"/user/" + user + b"/static/notebook/main.js")
    assert b"alpha's" not in answer and b"beta's" not in answer
    if user == b"nobody":
        assert answer.startswith(b"HTTP/1.1 404 ")  # no route, no default target
    else:  # nothing answered by the proxy: the container is asked
        assert answer == b""
        assert harness.accept().received().startswith(b"GET /user/" + user + b"/static/notebook/main.js ")


def test_a_containers_route_carries_its_flavor(tmp_path):
    node = FlavorNode(tmp_path, Flavors((Flavor("alpha", "img/a", 1), Flavor("beta", "img/b", 1)), "alpha"), 4)
    node.settle()
    node.claim(node.line.take(flavor="beta"))
    routes = succeeded(InProcessProxyAPI(node.rig.routes).list_routes())
    assert [data["flavor"] for data in routes.values()] == ["beta"]
    node.stop()

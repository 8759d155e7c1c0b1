"""Flavors across nodes, with real parts: `twistd tmpnb-redirector` in front of two `twistd tmpnb`
nodes on 127.0.0.2 and 127.0.0.3 sharing the host's dockerd. Node A serves `alpha` (the notebook
image) and `beta` (the image marked "beta", tests/integration/flavor_image.py); node B serves
only `alpha`. A visitor who asks for beta through the redirector's front door (the page, a
/spawn/ link, the API) always lands on A in a beta server, seen from inside their kernel; alpha
visitors land on either node; a flavor nobody serves is a 404 listing the flavors; once A has no
beta server left to give, a beta visitor gets No vacancy, never an alpha server. A name that is
no name (empty, repeated, upper case, not a string) is the same 404 from the redirector and the node.

No waiting line (--max-waiting=0): a flavor's room is then its pooled servers (tmpnb/waitingline.py
`flavor_room`), and every visitor comes from 127.0.0.1 (ONE_ADDRESS), so where each one lands is
certain, not a matter of chance.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import pytest

from flavor_image import MARKER_NAME
from tmpnb_process import (
    ONE_ADDRESS,
    Redirector,
    TmpnbError,
    call,
    container_id_of,
    execute,
    logged_failures,
    start_kernel,
    wait_until,
)

pytestmark = pytest.mark.integration

HEALTH_PERIOD = 1.0
CAPACITY_A = 4  # one pooled server of each flavor, then room for two more
HAS_MARKER = f"__import__('os').path.exists(__import__('os').path.expanduser('~/{MARKER_NAME}'))"
NODE_ARGS = [*ONE_ADDRESS, "--max-waiting=0", "--refill-delay=0", "--cull-period=2", "--cull-timeout=600"]


@pytest.fixture(scope="module")
def federation(launch, notebook_image, beta_image):
    node_a = launch(*NODE_ARGS, f"--flavor=alpha={notebook_image},pool-size=1",
                    f"--flavor=beta={beta_image},pool-size=1", f"--capacity={CAPACITY_A}",
                    host="127.0.0.2", name="a", start=False)
    # B's capacity is its one pooled server: no refill can blur where the alpha visitors land.
    node_b = launch(*NODE_ARGS, f"--flavor=alpha={notebook_image},pool-size=1", "--capacity=1",
                    host="127.0.0.3", name="b", start=False)
    for node in (node_a, node_b):
        node.start()
    redirector = Redirector([node_a.base, node_b.base], [f"--health-period={HEALTH_PERIOD}"])
    redirector.start()
    yield redirector, node_a, node_b
    redirector.stop(keep_log=True)
    failures = logged_failures(redirector.log())
    os.unlink(redirector.log_path)
    assert failures == []


def pooled(node, **flavors: int) -> None:
    """Wait until `node` has exactly these servers pooled, by flavor."""
    def ready():
        node.check_alive()
        reported = node.stats()["flavors"]
        return all(reported[name]["available"] == count for name, count in flavors.items())
    wait_until(ready, 120, f"{node.instance}: {flavors} pooled")


def seen(redirector: Redirector, node, **rooms: int) -> None:
    """Wait until the redirector counts these rooms for `node`, by flavor (its poll caught up)."""
    def caught_up():
        entry = redirector.nodes_by_url()[node.base]
        return entry["up"] and all(entry["flavors"][name]["room"] == room for name, room in rooms.items())
    wait_until(caught_up, 30, f"the redirector seeing {node.instance} with rooms {rooms}")


def browse(redirector: Redirector, path: str) -> tuple[str, str, str, str]:
    """A browser without JavaScript opens `path` on the redirector and follows every redirect
    to the page it lands on: (the node base, the /user/<id>/ prefix, the token, the path landed on)."""
    reply = call(redirector.base, "GET", path)
    if reply.status != 302:
        raise TmpnbError(f"redirector, {path}: {reply.status} {reply.body[:300]!r}")
    location = urlsplit(reply.headers["location"])
    node_base = f"{location.scheme}://{location.netloc}"
    assert reply.headers["location"] == node_base + path  # the whole target kept, ?flavor= with it
    reply = call(node_base, "GET", path)
    if reply.status != 302:
        raise TmpnbError(f"node {node_base}, {path}: {reply.status} {reply.body[:300]!r}")
    landed = urlsplit(reply.headers["location"])
    prefix = "/user/" + container_id_of(landed.path) + "/"
    token = dict(p.split("=", 1) for p in landed.query.split("&"))["token"]
    page = wait_until(lambda: (r := call(node_base, "GET", f"{landed.path}?{landed.query}")).status == 200 and r,
                      60, f"the page {landed.path} answering")
    assert b"<html" in page.body.lower()
    return node_base, prefix, token, landed.path


def spawn(redirector: Redirector, document: object) -> tuple[int, dict]:
    reply = call(redirector.base, "POST", "/api/spawn", json.dumps(document).encode(),
                 {"Content-Type": "application/json"}, timeout=60)
    return reply.status, reply.json()


def flavor_in_kernel(node_base: str, prefix: str, token: str) -> str:
    """"beta" where the visitor's home holds the beta image's marker, else "alpha"."""
    kernel = start_kernel(node_base, prefix, token)
    if execute(node_base, prefix, token, kernel, HAS_MARKER) == "False":
        return "alpha"
    return execute(node_base, prefix, token, kernel, f"open('{MARKER_NAME}').read().strip()").strip("'")


def test_the_redirector_sends_each_flavor_to_a_node_that_serves_it(federation):
    redirector, node_a, node_b = federation
    pooled(node_a, alpha=1, beta=1)
    pooled(node_b, alpha=1)
    seen(redirector, node_a, alpha=1, beta=1)
    seen(redirector, node_b, alpha=1)
    assert redirector.nodes_by_url()[node_b.base]["flavors"].keys() == {"alpha"}
    assert redirector.stats()["flavors"].keys() == {"alpha", "beta"}

    # A flavor nobody serves: 404 listing the flavors served, page and API; nobody spawned.
    missing = call(redirector.base, "GET", "/?flavor=gamma")
    assert missing.status == 404
    assert b'href="/?flavor=alpha"' in missing.body and b'href="/?flavor=beta"' in missing.body
    assert call(redirector.base, "GET", "/spawn/notebooks/index.ipynb?flavor=gamma").status == 404
    assert spawn(redirector, {"flavor": "gamma"}) == (404, {"error": "no node serves flavor gamma",
                                                             "flavors": ["alpha", "beta"]})

    # A name that is no name, asked of the redirector or of node A itself: the same 404, with
    # the list (the two sides read a choice alike), and nobody spawned.
    for query in ("?flavor=", "?flavor=beta&flavor=alpha", "?flavor=BETA", "?flavor=%3Cb%3E"):
        for base in (redirector.base, node_a.base):
            assert call(base, "GET", "/" + query).status == 404, (base, query)
    for document in ({"flavor": ""}, {"flavor": ["beta"]}, {"flavor": 1}, {"flavor": "Beta"}):
        for base in (redirector.base, node_a.base):
            reply = call(base, "POST", "/api/spawn", json.dumps(document).encode(), {"Content-Type": "application/json"})
            assert reply.status == 404 and reply.json()["flavors"] == ["alpha", "beta"], (base, document, reply)
    assert node_a.stats()["flavors"]["beta"]["available"] == 1 and node_a.stats()["total"] == 2

    # Beta by the front page: node A, a beta server.
    base, prefix, token, _ = browse(redirector, "/?flavor=beta")
    assert base == node_a.base and flavor_in_kernel(base, prefix, token) == "beta"

    # Beta by a /spawn/ link: node A, the notebook the link names, in a beta server.
    pooled(node_a, beta=1)
    seen(redirector, node_a, beta=1)
    base, prefix, token, landed = browse(redirector, "/spawn/notebooks/index.ipynb?flavor=beta")
    assert base == node_a.base and landed == prefix + "notebooks/index.ipynb"
    assert flavor_in_kernel(base, prefix, token) == "beta"

    # Beta by the API: its URL is on node A, a beta server. A's capacity is then all taken:
    # three beta visitors and the pooled alpha server.
    pooled(node_a, beta=1)
    seen(redirector, node_a, beta=1)
    code, answer = spawn(redirector, {"flavor": "beta"})
    assert code == 200, answer
    url = urlsplit(answer["url"])
    assert f"{url.scheme}://{url.netloc}" == node_a.base
    prefix, token = "/user/" + container_id_of(url.path) + "/", url.query.split("token=")[1]
    assert flavor_in_kernel(node_a.base, prefix, token) == "beta"

    # No beta server left anywhere: No vacancy for beta, though both nodes have an alpha to give.
    wait_until(lambda: node_a.stats()["total"] == CAPACITY_A, 60, "node A's capacity all taken")
    pooled(node_a, alpha=1, beta=0)
    seen(redirector, node_a, alpha=1, beta=0)
    seen(redirector, node_b, alpha=1)
    b_before = node_b.stats()["total"]
    for path in ("/?flavor=beta", "/spawn/notebooks/index.ipynb?flavor=beta"):
        full = call(redirector.base, "GET", path)
        assert full.status == 503 and "retry-after" in full.headers, (path, full.status)
    code, answer = spawn(redirector, {"flavor": "beta"})
    assert code == 429 and answer == {"status": "full"}
    assert node_a.stats()["flavors"]["beta"]["available"] == 0 and node_b.stats()["total"] == b_before
    assert len([c for c in node_a.containers().values() if c["state"] in ("assigned", "idle")]) == 3

    # Alpha visitors land on either node: one pooled alpha on each and no room to boot another.
    alphas = [browse(redirector, "/?flavor=alpha")[:3], browse(redirector, "/")[:3]]
    assert sorted(base for base, _, _ in alphas) == sorted([node_a.base, node_b.base])
    assert all(flavor_in_kernel(*visit) == "alpha" for visit in alphas)

"""The client gate in the orchestrator's web tree, over the real Pool and waiting line (FakeDocker,
on a Clock): one address gets its share and no more while another is served; a subresource gets
no container; a reload with the cookie gets the same server; the refusals are counted. Also the
two hops that carry the client's address: the embedded proxy's X-Forwarded-For and the
redirector's forwarded API spawn."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tests.builders import build_line, build_pool, cookieless
from tests.fakedocker import FakeDocker, FakeServers
from tests.results import succeeded
from tmpnb.clients import SharePolicy, make_gate
from tmpnb.clients.returning import ServerCookies
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.proxy.httphead import parse_request_head
from tmpnb.proxy.rewrite import Rewriter
from tmpnb.proxy.settings import ProxySettings
from tmpnb.proxy.targets import parse_target
from tmpnb.redirector.web import forwarded_for
from tmpnb.servertokens import ServerTokens
from tmpnb.web import WebSettings, make_resource

BASE = "http://tmpnb.test"
NAVIGATE = {"Sec-Fetch-Dest": ["document"], "Sec-Fetch-Mode": ["navigate"], "Accept": ["text/html"]}
IMAGE = {"Sec-Fetch-Dest": ["image"], "Sec-Fetch-Mode": ["no-cors"], "Sec-Fetch-Site": ["cross-site"]}


class World:
    """pool_size pooled containers of `capacity`; StubTreq's peer is 127.0.0.1, our own proxy's
    hop, so X-Forwarded-For says which client each request comes from."""

    def __init__(self, pool_size: int = 8, capacity: int = 8, policy: SharePolicy = SharePolicy(),
                 keep_cookies: bool = False, host_locked: bool = False, secret: bytes | None = None) -> None:
        self.root = tempfile.mkdtemp(prefix="tnb-clients-")
        spec = ContainerSpec(instance="test-clients", socket_root=self.root)
        self.clock = Clock()
        self.clock.advance(1000)
        self.docker = FakeDocker(self.clock, spec)
        self.servers = FakeServers(self.docker)
        self.events: list = []
        self.gate = make_gate(self.clock, capacity, policy, secret=secret, host_locked=host_locked)
        rig = build_pool(PoolConfig(pool_size=pool_size, capacity=capacity), clock=self.clock, spec=spec,
                         docker=self.docker, servers=self.servers,
                         on_transition=lambda e: self.gate.record({"container": e.container, "from": e.from_state,
                                                                   "to": e.to_state}))
        self.pool = rig.pool
        self.line = build_line(rig, max_waiting=20)
        self.pool.add_stats("clients", self.gate.stats)
        self.pool.startService()
        self.boot_all()
        stub = StubTreq(make_resource(self.pool, WebSettings(), self.line, gate=self.gate))
        self.treq = stub if keep_cookies else cookieless(stub)

    def boot_all(self) -> None:
        for _ in range(3):
            for container_id in self.servers.waiting():
                self.servers.answer(container_id)
            self.clock.advance(0)

    def send(self, method: str, path: str, client: str | None = None, headers: dict | None = None, **kw):
        headers = dict(headers or {})
        if client is not None:
            headers["X-Forwarded-For"] = [client]
        d = self.treq.request(method, BASE + path, allow_redirects=False, headers=headers, **kw)
        self.treq.flush()
        self.clock.advance(0)
        self.treq.flush()
        response = succeeded(d)
        body = response.content()
        self.treq.flush()
        return response, succeeded(body)

    def assigned(self) -> int:
        return self.pool.stats()["states"].get("assigned", 0)


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.pool.stopService()
    shutil.rmtree(w.root, ignore_errors=True)


def location(response) -> str:
    return response.headers.getRawHeaders("Location")[0]


def test_one_address_gets_its_share_and_no_more_while_another_is_served_at_once(world):
    codes = [world.send("GET", "/", "192.0.2.10", NAVIGATE)[0].code for _ in range(20)]
    assert codes.count(302) == 2  # a quarter of 8
    assert set(codes[2:]) == {429}
    response, body = world.send("GET", "/", "192.0.2.10", NAVIGATE)
    assert response.headers.getRawHeaders("Retry-After") == ["5"]
    assert b"You have your share of notebooks" in body and b"2 notebook servers" in body
    assert response.headers.getRawHeaders("Cache-Control") == ["no-store"]
    other, _ = world.send("GET", "/spawn/notebooks/x.ipynb", "192.0.2.11", NAVIGATE)
    assert other.code == 302 and "/notebooks/x.ipynb?token=" in location(other)
    assert world.assigned() == 3
    assert world.pool.stats()["clients"]["refused"] == {"share": 19}


def test_the_share_counts_places_in_the_waiting_line_too():
    w = World(pool_size=0, capacity=8)
    try:
        held = [w.treq.request("GET", BASE + "/", allow_redirects=False,
                               headers={**NAVIGATE, "X-Forwarded-For": ["192.0.2.20"]}) for _ in range(2)]
        w.treq.flush()
        assert w.pool.stats()["waiting"]["length"] == 2
        third, _ = w.send("GET", "/", "192.0.2.20", NAVIGATE)
        assert third.code == 429  # two places in line are its share
        assert w.pool.stats()["waiting"]["length"] == 2
        w.boot_all()
        w.treq.flush()
        assert [succeeded(d).code for d in held] == [302, 302]
        assert w.send("GET", "/", "192.0.2.20", NAVIGATE)[0].code == 429  # now two containers
    finally:
        w.pool.stopService()
        shutil.rmtree(w.root, ignore_errors=True)


def test_a_culled_container_gives_its_address_room_again(world):
    first, _ = world.send("GET", "/", "192.0.2.30", NAVIGATE)
    world.send("GET", "/", "192.0.2.30", NAVIGATE)
    assert world.send("GET", "/", "192.0.2.30", NAVIGATE)[0].code == 429
    container = location(first).split("/")[2]
    assert world.pool.cull(container, "admin: test")
    world.clock.advance(1)
    assert world.send("GET", "/", "192.0.2.30", NAVIGATE)[0].code == 302


def test_a_spoofed_forwarded_for_from_a_visitor_is_not_believed(world):
    # What the embedded proxy sends on for a visitor on 192.0.2.40 who wrote a header of their own.
    for n in range(6):
        world.send("GET", "/", f"198.51.100.{n}, 192.0.2.40", NAVIGATE)
    assert world.assigned() == 2


def test_an_image_request_for_the_front_page_gets_no_container(world):
    for path in ("/", "/spawn/notebooks/x.ipynb"):
        response, body = world.send("GET", path, "192.0.2.50", IMAGE)
        assert response.code == 403
        assert b"Open this address as a page" in body
    for dest, mode in (("script", "no-cors"), ("style", "no-cors"), ("empty", "cors"), ("document", "navigate")):
        headers = {"Sec-Fetch-Dest": [dest], "Sec-Fetch-Mode": [mode], "Sec-Purpose": ["prefetch"]}
        assert world.send("GET", "/", "192.0.2.50", headers)[0].code == 403
    assert world.assigned() == 0
    assert world.pool.stats()["clients"]["refused"] == {"not-navigation": 6}
    # curl: no Fetch Metadata at all
    assert world.send("GET", "/", "192.0.2.50")[0].code == 302


def test_the_api_takes_thebe_s_fetch_and_refuses_in_json(world):
    thebe = {"Sec-Fetch-Dest": ["empty"], "Sec-Fetch-Mode": ["cors"], "Content-Type": ["application/json"]}
    for _ in range(2):
        response, body = world.send("POST", "/api/spawn", "192.0.2.60", thebe, data=b"{}")
        assert response.code == 200 and json.loads(body)["url"].startswith("/user/")
    response, body = world.send("POST", "/api/spawn", "192.0.2.60", thebe, data=b"{}")
    assert response.code == 429 and response.headers.getRawHeaders("Retry-After") == ["5"]
    assert json.loads(body) == {"status": "refused", "reason": "share", "held": 2, "limit": 2, "retry_after": 5}
    blind = {"Sec-Fetch-Dest": ["empty"], "Sec-Fetch-Mode": ["no-cors"]}
    response, body = world.send("POST", "/api/spawn", "192.0.2.61", blind, data=b"")
    assert response.code == 403 and json.loads(body) == {"status": "refused", "reason": "not-navigation"}
    assert world.assigned() == 2


def test_the_spawn_rate_refuses_with_the_seconds_to_wait():
    w = World(policy=SharePolicy(share=1.0, spawns_per_minute=2, burst=2))
    try:
        for _ in range(2):
            first, _ = w.send("GET", "/", "192.0.2.70")
            w.pool.cull(location(first).split("/")[2], "admin: test")  # holding nothing
        response, body = w.send("GET", "/", "192.0.2.70")
        assert response.code == 429 and response.headers.getRawHeaders("Retry-After") == ["30"]
        assert b"Too many new notebooks" in body
        w.clock.advance(30)
        w.boot_all()
        assert w.send("GET", "/", "192.0.2.70")[0].code == 302
    finally:
        w.pool.stopService()
        shutil.rmtree(w.root, ignore_errors=True)


# -- the same server on a reload --------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[World]:
    w = World(keep_cookies=True)
    yield w
    w.pool.stopService()
    shutil.rmtree(w.root, ignore_errors=True)


def test_a_reload_with_the_cookie_gets_the_same_server_without_a_token(browser):
    first, _ = browser.send("GET", "/", headers=NAVIGATE)
    assert re.fullmatch(r"/user/(\w+)/tree\?token=\w+", location(first))
    cookie = first.headers.getRawHeaders("Set-Cookie")[0]
    assert cookie.startswith("tmpnb-server=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/" in cookie and "Domain" not in cookie
    container = location(first).split("/")[2]
    for path, below in (("/", "tree"), ("/spawn/notebooks/y.ipynb", "notebooks/y.ipynb")):
        again, _ = browser.send("GET", path, headers=NAVIGATE)
        assert again.code == 302
        assert location(again) == f"/user/{container}/{below}"  # no token: their browser is logged in
    assert browser.assigned() == 1


def test_in_subdomain_mode_the_reload_cookie_is_host_locked_even_over_http():
    """Sibling visitor hosts (a.nb.localhost) could toss a plain cookie for the bare host and
    send a victim's reload into the attacker's server: `__Host-` cookies cannot be tossed, and
    only that name is read."""
    w = World(host_locked=True)  # no cookie jar: each request sends only the cookies given here
    try:
        first, _ = w.send("GET", "/", headers=NAVIGATE)
        cookie = first.headers.getRawHeaders("Set-Cookie")[0]
        assert cookie.startswith("__Host-tmpnb-server=") and "Secure" in cookie and "Domain" not in cookie
        container, value = location(first).split("/")[2], cookie.split(";")[0].split("=", 1)[1]
        tossed, _ = w.send("GET", "/", headers={**NAVIGATE, "Cookie": [f"tmpnb-server={value}"]})
        assert container not in location(tossed)  # a plain cookie of that name: a new server
        locked, _ = w.send("GET", "/", headers={**NAVIGATE, "Cookie": [f"__Host-tmpnb-server={value}"]})
        assert location(locked) == f"/user/{container}/tree"
    finally:
        w.pool.stopService()
        shutil.rmtree(w.root, ignore_errors=True)


def test_a_reload_cookie_signed_under_the_instance_secret_outlives_a_restart(tmp_path):
    """The cookie's key is derived from the instance secret (as the servers' tokens are): a
    process started again reads the cookies the earlier one set."""
    secret_file = str(tmp_path / "instance.secret")
    key = ServerTokens.from_file(secret_file).key_for("reload cookies")
    assert ServerTokens.from_file(secret_file).key_for("reload cookies") == key
    assert key != ServerTokens.from_file(secret_file).key_for("something else")
    before, after = ServerCookies(key), ServerCookies(ServerTokens.from_file(secret_file).key_for("reload cookies"))
    assert after.container(before.value("abc123")) == "abc123"


def test_a_reload_after_the_server_ended_gets_a_new_one(browser):
    first, _ = browser.send("GET", "/", headers=NAVIGATE)
    browser.pool.cull(location(first).split("/")[2], "idle")
    browser.clock.advance(1)
    again, _ = browser.send("GET", "/", headers=NAVIGATE)
    assert again.code == 302 and location(again).split("/")[2] != location(first).split("/")[2]
    assert "token=" in location(again)


def test_a_forged_or_foreign_cookie_claims_nobody_s_server(world):
    victim, _ = world.send("GET", "/", "192.0.2.80", NAVIGATE)
    container = location(victim).split("/")[2]
    value = victim.headers.getRawHeaders("Set-Cookie")[0].split(";")[0].split("=", 1)[1]
    for n, forged in enumerate((f"{container}.{'0' * 32}", container, f"{container}.{value.split('.')[1][:-1]}x",
                                value.replace(container, container[::-1]))):
        response, _ = world.send("GET", "/", f"192.0.2.{100 + n}", {**NAVIGATE, "Cookie": [f"tmpnb-server={forged}"]})
        assert response.code == 302 and location(response).split("/")[2] != container
        assert "token=" in location(response)
    # The genuine cookie sends whoever has it to the server's login, never with its token.
    response, _ = world.send("GET", "/", "192.0.2.82", {**NAVIGATE, "Cookie": [f"tmpnb-server={value}"]})
    assert location(response) == f"/user/{container}/tree"


def test_over_https_the_cookie_is_host_locked_and_the_plain_one_is_ignored(world):
    https = {**NAVIGATE, "X-Forwarded-Proto": ["https"]}
    first, _ = world.send("GET", "/", "192.0.2.90", https)
    cookie = first.headers.getRawHeaders("Set-Cookie")[0]
    assert cookie.startswith("__Host-tmpnb-server=") and "Secure" in cookie and "Path=/" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    container = location(first).split("/")[2]
    # A cookie tossed from a sibling subdomain cannot carry the prefix: the bare name is not read.
    tossed, _ = world.send("GET", "/", "192.0.2.90", {**https, "Cookie": [f"tmpnb-server={value}"]})
    assert location(tossed).split("/")[2] != container
    kept, _ = world.send("GET", "/", "192.0.2.90", {**https, "Cookie": [f"__Host-tmpnb-server={value}"]})
    assert location(kept) == f"/user/{container}/tree"


def test_a_reload_is_no_spawn_and_passes_at_the_share(world):
    first, _ = world.send("GET", "/", "192.0.2.95", NAVIGATE)
    world.send("GET", "/", "192.0.2.95", NAVIGATE)
    value = first.headers.getRawHeaders("Set-Cookie")[0].split(";")[0].split("=", 1)[1]
    for _ in range(30):
        again, _ = world.send("GET", "/", "192.0.2.95", {**NAVIGATE, "Cookie": [f"tmpnb-server={value}"]})
        assert again.code == 302
    assert world.assigned() == 2


# -- the hops that carry the address ----------------------------------------------------


def test_the_embedded_proxy_appends_the_visitor_to_one_forwarded_for_list():
    rewriter = Rewriter(ProxySettings())
    head = parse_request_head(b"GET / HTTP/1.1\r\nHost: tmpnb.test\r\nX-Forwarded-For: 6.6.6.6\r\n"
                              b"Accept: */*\r\nX-Forwarded-For: 7.7.7.7")
    sent = rewriter.request_head(head, parse_target("http://127.0.0.1:9"), None, b"192.0.2.1")
    lines = [line for line in sent.split(b"\r\n") if line.lower().startswith(b"x-forwarded-for")]
    assert lines == [b"x-forwarded-for: 6.6.6.6,7.7.7.7,192.0.2.1"]


def test_the_redirector_forwards_a_spawn_with_the_visitor_s_address():
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", "203.0.113.4", 5555)
    assert forwarded_for(request) == b"203.0.113.4"
    request.requestHeaders.addRawHeader(b"X-Forwarded-For", b"198.51.100.1")
    request.requestHeaders.addRawHeader(b"X-Forwarded-For", b"198.51.100.2")
    assert forwarded_for(request) == b"198.51.100.1,198.51.100.2,203.0.113.4"


def test_the_holder_of_the_api_token_is_trusted_with_the_whole_capacity():
    w = World()
    try:
        w.treq = cookieless(StubTreq(make_resource(w.pool, WebSettings(api_token="s3cret"), w.line, gate=w.gate)))
        token = {"Authorization": ["token s3cret"]}
        codes = [w.send("POST", "/api/spawn", "192.0.2.200", token, data=b"")[0].code for _ in range(5)]
        assert codes == [200] * 5  # more than a quarter of 8: the token's holder spawns for its users
        assert w.send("POST", "/api/spawn", "192.0.2.200", data=b"")[0].code == 401
        assert w.gate.shares.held("192.0.2.200") == 0
    finally:
        w.pool.stopService()
        shutil.rmtree(w.root, ignore_errors=True)

"""Every listener against malformed and hostile requests: a 4xx, never a 5xx, never a traceback,
never a container.

The listeners: the public proxy, the proxy's REST API, the node's admin API, the orchestrator
with sharing (its /api/share and /share/… pages), the redirector's public and admin ports.
Raw bytes go through each real protocol (twisted.web's HTTPChannel, the proxy's own) over
in-memory transports, so a request arrives exactly as a hostile client wrote it. Every
request carries at least one defect (a bad method, a path with `..`, NUL or an overlong
segment, control bytes or non-ASCII in a header, a bad Content-Length, a huge header, a bad
JSON body, a hostile Authorization): it is answered 4xx, or not at all while the server
still waits for a body it was promised, and the pool hands out nothing.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.logger import globalLogPublisher
from twisted.web.server import Site

from redirector_fakes import FakeNodes
from sharefakes import NotebookServers
from tests.builders import build_line, build_pool
from tmpnb.admin import AdminResource
from tmpnb.clients import SharePolicy, make_gate
from tmpnb.clients.address import TrustedProxies
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.health import Health
from tmpnb.http.headers import CorsPolicy, ResponseHeaders
from tmpnb.http.strict import strict
from tmpnb.proxy.api import ProxyAPIResource
from tmpnb.proxy.testing import ProxyHarness
from tmpnb.redirector.admin import RedirectorAdmin
from tmpnb.redirector.metrics import Metrics
from tmpnb.redirector.nodes import NodeTable
from tmpnb.redirector.web import Redirector, make_resource as redirector_resource
from tmpnb.share.render import Renderer
from tmpnb.share.service import Sharing
from tmpnb.share.store import SQLiteStore
from tmpnb.share.web import sharing_extension
from tmpnb.web import WebSettings, make_resource

TOKEN = "s3cret-token"

# -- what a hostile client sends --------------------------------------------------------------

BAD_METHODS = [b"FOO", b"G\x00T", b"GET\x7f", b"\xc3\xa9", b"get ", b"CONNECT", b"TRACE", b"PROPFIND", b"X" * 300]
HOSTILE_SEGMENTS = [b"..", b"%2e%2e", b"%2E.", b"..%2f..", b"%00", b"a%00b", b"%ff", b"%c0%ae%c0%ae", b"%",
                    b"%zz", b"\xc3\xa9", b"\xff", b"a" * 9000, b"%2F" * 500]
# Each with a control byte: obs-text alone (b"\xff") is allowed in a field value (RFC 9110 5.5).
HOSTILE_HEADER_VALUES = [b"\x01\x02", b"a\x00b", b"\x7f", b"x\rinjected", b"\xff\x1f\xfe", b"\xc3\xa9t\xc3\xa9 \x1b[31m"]
HOSTILE_AUTH = [b"token \xff\xfe", b"token \xc3\xa9", b"token", b"token ", b"", b"Bearer " + TOKEN.encode(),
                b"Basic dG9rZW46", b"token " + TOKEN.encode() + b"\x00", b"token\t\x01", b"TOKEN \x80" * 50,
                b"token " + TOKEN.encode() + b"x"]
BAD_CONTENT_LENGTHS = [b"-1", b"abc", b"1, 2", b"0x10", b"99999999999999999999999", b"+5", b" "]
BAD_JSON = [b"{", b"[1,", b"\xff\xfe{}", b'{"target": ', b'{"url": "\x00"}', b"null" * 1000, b"[" * 5000,
            b'{"a": 1e99999}', b'"\\ud800"']

# The listeners' own paths, so that defects reach their real handlers.
PATHS = [b"/", b"/spawn/tree", b"/api/spawn", b"/api/stats", b"/api/share", b"/api/routes", b"/api/routes/user/x",
         b"/api/pool", b"/api/containers", b"/api/nodes", b"/api/drain", b"/share/AAAAAAAAAAAAAAAAAAAAAA",
         b"/remix/AAAAAAAAAAAAAAAAAAAAAA", b"/user/alice/tree", b"/health", b"/metrics", b"/wait/0123"]


@dataclass(frozen=True)
class Hostile:
    method: bytes
    path: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    content_length: bytes | None  # None: the body's real length
    defects: tuple[str, ...]

    def has_overlong_line(self) -> bool:
        """A head line past twisted.web's 16 KiB, which closes the connection without a word."""
        head = self.raw().split(b"\r\n\r\n", 1)[0]
        return any(len(line) >= 16384 for line in head.split(b"\r\n"))

    def raw(self) -> bytes:
        length = str(len(self.body)).encode() if self.content_length is None else self.content_length
        lines = [self.method + b" " + self.path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
                 *(name + b": " + value for name, value in self.headers), b"Content-Length: " + length]
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


@st.composite
def hostile_requests(draw: Any) -> Hostile:
    defects = draw(st.sets(st.sampled_from(["method", "path", "header", "length", "huge", "json"]),
                           min_size=1, max_size=3))
    if draw(st.booleans()):  # on top: alone, a bad Authorization on an open path is no defect
        defects.add("auth")
    method = draw(st.sampled_from(BAD_METHODS)) if "method" in defects else draw(
        st.sampled_from([b"GET", b"POST", b"DELETE", b"PUT", b"HEAD"]))
    path = draw(st.sampled_from(PATHS))
    if "path" in defects:
        segments = draw(st.lists(st.sampled_from(HOSTILE_SEGMENTS), min_size=1, max_size=3))
        path = path.rstrip(b"/") + b"/" + b"/".join(segments)
    headers: list[tuple[bytes, bytes]] = [(b"Content-Type", b"application/json")]
    if "header" in defects:
        headers.append((draw(st.sampled_from([b"X-Forwarded-For", b"User-Agent", b"Cookie", b"Origin", b"Referer"])),
                        draw(st.sampled_from(HOSTILE_HEADER_VALUES))))
    if "huge" in defects:
        headers.append((b"X-Huge", b"h" * draw(st.sampled_from([20_000, 70_000, 300_000]))))
    if "auth" in defects:
        headers.append((b"Authorization", draw(st.sampled_from(HOSTILE_AUTH))))
    body = draw(st.sampled_from(BAD_JSON)) if "json" in defects else b""
    if "json" in defects and method in (b"GET", b"HEAD", b"DELETE"):
        method = b"POST"
    content_length = draw(st.sampled_from(BAD_CONTENT_LENGTHS)) if "length" in defects else None
    return Hostile(method, path, tuple(headers), body, content_length, tuple(sorted(defects)))


# -- the listeners ----------------------------------------------------------------------------


class Listeners:
    """Every listener of a node and of a redirector, in memory, on one clock."""

    def __init__(self, tmp_path: Any) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_800_000_000)
        # A node: the real pool over FakeDocker, ready servers in its pool.
        rig = build_pool(PoolConfig(pool_size=2, capacity=4, refill_delay=0.0), clock=self.clock,
                         spec=ContainerSpec(instance="test-hostile", socket_root=str(tmp_path)))
        self.pool, self.servers = rig.pool, rig.servers
        self.pool.startService()
        self.answer_all()
        line = build_line(rig, max_waiting=5)
        store = SQLiteStore(str(tmp_path / "shares.sqlite3"))
        self.sharing = Sharing(self.clock, store, maybeDeferred, self.pool, lambda _: StubTreq(NotebookServers()),
                               Renderer(maybeDeferred, render=lambda *a: b""))
        # The node's own gate, its default share: a hostile request gets no container either way.
        gate = make_gate(self.clock, 4, SharePolicy(), TrustedProxies.parse([]))
        web = make_resource(self.pool, WebSettings(api_token=TOKEN), line, [sharing_extension(self.sharing)], gate=gate)
        self.routes = rig.routes
        self.sites = {
            "orchestrator and share": self._site(web),
            "node admin": self._site(AdminResource(self.pool, Health(self.clock), TOKEN)),
            "proxy api": self._site(ProxyAPIResource(self.routes, TOKEN, unix_root=str(tmp_path))),
        }
        # A redirector in front of three in-memory nodes.
        self.nodes = FakeNodes()
        table = NodeTable()
        for host in ("127.0.0.2:8000", "127.0.0.3:8000"):
            self.nodes.add(host, name=host)
            table.answered(table.add(f"http://{host}"), {"available": 3, "capacity": 10}, 0)  # up, with room
        redirector = Redirector(table, 0, random.Random(7), Metrics(table, 0))
        headers = ResponseHeaders(CorsPolicy(), "'self'")
        self.sites["redirector"] = self._site(redirector_resource(redirector, StubTreq(self.nodes), self.clock,
                                                                  headers, spawn_timeout=5))
        self.sites["redirector admin"] = self._site(RedirectorAdmin(redirector, TOKEN))

    def _site(self, resource: Any) -> Site:
        site = strict(Site(resource, reactor=self.clock))  # as every listener of tmpnb's is
        site.displayTracebacks = False
        return site

    def answer_all(self) -> None:
        for container_id in self.servers.waiting():
            self.servers.answer(container_id)

    def handed_out(self) -> int:
        states = self.pool.stats()["states"]
        return states.get("assigned", 0) + states.get("idle", 0)

    def routes_now(self) -> dict:
        return self.routes.all()

    def spawned_by_nodes(self) -> int:
        return sum(node.spawned for node in self.nodes.nodes.values())


def exchange_site(site: Site, raw: bytes, clock: MemoryReactorClock) -> bytes:
    """`raw` in over a string transport, then the client leaves; what came back."""
    address = IPv4Address("TCP", "192.0.2.9", 40000)
    channel = site.buildProtocol(address)
    transport = StringTransport(peerAddress=address)  # loseConnection sets `disconnecting`, as TCP's does
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    clock.advance(1)  # answers that take a turn of the clock (none here waits for a container)
    channel.connectionLost(Failure(ConnectionDone()))
    return transport.value()


def exchange_proxy(raw: bytes) -> tuple[bytes, int]:
    """`raw` to a fresh public proxy (the orchestrator its default target, one visitor's
    route); what came back, and how many backend connections it tried."""
    proxy = ProxyHarness(default_target="http+unix://%2Frun%2Ftest%2Fweb.sock")
    proxy.routes.add("/user/alice", {"target": ProxyHarness.unix_target("alice")})
    visitor = proxy.visit()
    visitor.send(raw)
    proxy.reactor.advance(120)
    return visitor.received(), len(proxy.attempts())


def statuses(answer: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"(?:^|\r\n\r\n|\n)HTTP/1\.[01] (\d{3}) ", answer)]


_listeners: list[Listeners] = []


def shared_listeners() -> Listeners:
    """One set of listeners for the module (hypothesis runs each test many times; pytest
    fixtures and pytest-twisted's wrapper do not mix with @given)."""
    if not _listeners:
        _listeners.append(Listeners(Path(tempfile.mkdtemp(prefix="tnbhostile"))))
    return _listeners[0]


class LoggedFailures:
    """Every error-level log event while it is open (a logged traceback counts)."""

    def __enter__(self) -> list[dict]:
        self.seen: list[dict] = []
        globalLogPublisher.addObserver(self._observe)
        return self.seen

    def _observe(self, event: dict) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            self.seen.append(event)

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self._observe)


def described(failures: list[dict]) -> str:
    return "\n".join(e["log_failure"].getTraceback() if e.get("log_failure") else repr(e) for e in failures[:2])


SITES = ["orchestrator and share", "node admin", "proxy api", "redirector", "redirector admin"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(SITES), request=hostile_requests())
def test_a_hostile_request_to_a_site_gets_a_4xx_and_no_container(name, request):
    listeners = shared_listeners()
    with LoggedFailures() as failures:
        check_site(listeners, failures, name, request)


def check_site(listeners: Listeners, failures: list[dict], name: str, request: Hostile) -> None:
    before = (listeners.handed_out(), json.dumps(listeners.routes_now(), sort_keys=True),
              listeners.spawned_by_nodes())
    answer = exchange_site(listeners.sites[name], request.raw(), listeners.clock)
    codes = statuses(answer)
    # Not answered at all: only while a body it was promised (a Content-Length) has not come,
    # or for a header line past Twisted's 16 KiB (the connection is closed without a word).
    if not codes:
        assert "length" in request.defects or request.has_overlong_line(), (name, request.defects)
    for code in codes:
        assert 400 <= code < 500, (name, code, request.method, request.path[:200], request.defects, answer[:300])
    assert b"Traceback" not in answer and b"Exception" not in answer
    after = (listeners.handed_out(), json.dumps(listeners.routes_now(), sort_keys=True),
             listeners.spawned_by_nodes())
    assert after == before, (name, request)
    assert failures == [], described(failures)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=hostile_requests())
def test_a_hostile_request_to_the_public_proxy_gets_a_4xx_or_goes_no_further_than_a_backend(request):
    """The proxy forwards what it can parse to the route's backend (which answers for itself);
    what it refuses it answers 4xx. It never answers 5xx on its own, nor raises."""
    with LoggedFailures() as failures:
        check_proxy(failures, request)


def check_proxy(failures: list[dict], request: Hostile) -> None:
    answer, attempts = exchange_proxy(request.raw())
    for code in statuses(answer):
        # 502/503/504: the in-memory backend never answered the forwarded request (its deadline).
        assert 400 <= code < 500 or (attempts > 0 and code in (502, 503, 504)), (code, request)
    assert b"Traceback" not in answer
    assert failures == [], described(failures)


# -- malformed Authorization, one listener at a time -------------------------------------------

PROTECTED = [("node admin", b"GET", b"/api/containers"), ("proxy api", b"GET", b"/api/routes"),
             ("redirector admin", b"GET", b"/api/nodes"), ("orchestrator and share", b"POST", b"/api/spawn"),
             ("orchestrator and share", b"POST", b"/api/share")]


@pytest.mark.parametrize("name, method, path", PROTECTED)
@pytest.mark.parametrize("value", HOSTILE_AUTH + [b"token \xe2\x82\xac\xe2\x82\xac", b"\x00", b"token " + b"\xff" * 5000])
def test_a_malformed_authorization_is_401_or_403_never_500(name, method, path, value):
    listeners = shared_listeners()
    with LoggedFailures() as failures:
        check_auth(listeners, failures, name, method, path, value)


def check_auth(listeners: Listeners, failures: list[dict], name: str, method: bytes, path: bytes,
               value: bytes) -> None:
    body = b'{"url": "/user/alice/notebooks/x.ipynb"}' if path == b"/api/share" else b""
    request = Hostile(method, path, ((b"Authorization", value),), body, None, ("auth",))
    handed_out = listeners.handed_out()
    answer = exchange_site(listeners.sites[name], request.raw(), listeners.clock)
    # A value with control bytes is refused by the channel before any check (400).
    expected = ([400],) if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value) else ([401], [403])
    assert statuses(answer)[:1] in expected, (name, value, answer[:200])
    assert listeners.handed_out() == handed_out
    assert failures == [], described(failures)


@pytest.mark.parametrize("name, method, path", PROTECTED[:3])
def test_the_right_token_still_gets_in(name, method, path):
    listeners = shared_listeners()
    request = Hostile(method, path, ((b"Authorization", b"token " + TOKEN.encode()),), b"", None, ())
    assert statuses(exchange_site(listeners.sites[name], request.raw(), listeners.clock))[:1] == [200]

"""Bad input on every endpoint: a 4xx, never a 5xx, never a container handed out twice.

Raw bytes go through a real twisted.web Site over an in-memory transport, so the
paths are exactly what a hostile client could send, not what an HTTP client library
would tidy up first.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from test_web import FakePool
from tests.builders import build_pool, one_address_gate
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.web import WebSettings, make_resource

PREFIXES = ["", "spawn", "spawn/tree", "api", "api/spawn", "api/stats", "user", "user/abc123",
            "stats", "robots.txt", "static", "tree", "wait", "wait/0123abcd"]
NASTY_SEGMENTS = ["..", ".", "%2e%2e", "%2E%2e", "%2F", "%5C", "%00", "%ff", "%", "%zz", "..%2F..",
                  "a%2F..%2F..%2Fetc", "~", "%0d%0a", "?", "#", ";", "%3Cscript%3E", "é", "\\", "//"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"]

# A segment: something from the nasty list, or random text percent-encoded as a client would.
segment = st.one_of(
    st.sampled_from(NASTY_SEGMENTS),
    st.text(max_size=12).map(lambda t: quote(t, safe="%./\\~@:;=+&$,'!*()")),
)
paths = st.builds(
    lambda prefix, rest, trailing: "/" + "/".join([prefix, *rest]) + ("/" if trailing else ""),
    st.sampled_from(PREFIXES), st.lists(segment, max_size=5), st.booleans(),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda p: json.dumps({"path": p}).encode(), st.one_of(st.text(max_size=30), paths, json_values)),
)
# Odd requests, mixed with plain spawns so that containers really are handed out.
requests = st.one_of(
    st.tuples(st.sampled_from(METHODS), paths, bodies),
    st.sampled_from([("GET", "/", b""), ("GET", "/spawn/tree", b""), ("POST", "/api/spawn", b"")]),
)


def send(site: Site, method: str, path: str, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP/1.0 exchange (no chunking, the server closes): status, headers, body."""
    head = f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(head.encode("utf-8") + body)
    raw_head, _, raw_body = transport.value().partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in header_lines)
    return int(status_line.split(b" ")[1]), headers, raw_body


def delivered_url(method: str, code: int, headers: dict[bytes, bytes], body: bytes) -> str | None:
    """The notebook URL this response gave the client, if it gave one."""
    if code == 302 and headers.get(b"Location", b"").startswith(b"/user/"):
        return headers[b"Location"].decode()
    if method == "POST" and code == 200 and headers.get(b"Content-Type") == b"application/json":
        return json.loads(body)["url"]
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, min_size=1, max_size=12), st.integers(0, 6), st.booleans())
def test_any_request_gets_a_4xx_at_worst_and_each_container_goes_to_one_client(batch, pooled, with_token):
    pool = FakePool(pooled=pooled)
    site = Site(make_resource(pool, WebSettings(api_token="t0k" if with_token else None), gate=one_address_gate()))
    delivered = []
    for method, path, body in batch:
        code, headers, answer = send(site, method, path, body)
        assert 200 <= code < 500 or code == 503, (method, path, body, code)
        if code == 503:
            assert b"Retry-After" in headers  # only the No-vacancy page may say 503
        url = delivered_url(method, code, headers, answer)
        if url is not None:
            delivered.append(url)
            assert ".." not in url.split("?")[0].split("/")
    owners = [url.split("/")[2] for url in delivered]
    assert len(owners) == len(set(owners)), "a container went to two clients"
    assert sorted(owners) == sorted(a.container_id for a in pool.assigned), "taken but never delivered"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(requests, st.booleans()), min_size=1, max_size=15), st.integers(1, 4), st.integers(1, 6))
def test_with_the_real_pool_each_container_goes_to_one_client_with_its_route(batch, pool_size, extra):
    """The real Pool over FakeDocker; between requests, booting servers may become ready."""
    rig = build_pool(
        PoolConfig(pool_size=pool_size, capacity=pool_size + extra),
        spec=ContainerSpec(instance="test-web-props", socket_root="/tmp/tnb-web-props"),
    )
    pool, servers, routes = rig.pool, rig.servers, rig.routes
    pool.startService()
    site = Site(make_resource(pool, WebSettings(), gate=one_address_gate()))
    delivered = []
    for (method, path, body), servers_answer in batch:
        if servers_answer:
            for container_id in servers.waiting():
                servers.answer(container_id)
        code, headers, answer = send(site, method, path, body)
        assert 200 <= code < 500 or (code == 503 and b"Retry-After" in headers), (method, path, code)
        url = delivered_url(method, code, headers, answer)
        if url is not None:
            delivered.append(url)
    owners = [url.split("/")[2] for url in delivered]
    assert len(owners) == len(set(owners)), "a container went to two clients"
    event(f"containers handed out: {min(len(owners), 3)}{'+' if len(owners) >= 3 else ''}")
    for owner in owners:
        assert routes.get(f"/user/{owner}") is not None, "handed out without a route"
    assert pool.stats()["states"].get("assigned", 0) == len(owners)

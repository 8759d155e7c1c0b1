"""What tmpnb-proxy does the way configurable-http-proxy 5.3 does it, in memory on a Clock.

Error target, timeouts, host routing, X-Forwarded-*, prefixes and the other request
rewrites behind CHP's options. Each expectation was read from CHP's lib/configproxy.js and
node-http-proxy's passes, and the timeouts were checked against CHP itself
(tests/integration/test_proxy_cli_real.py).
"""

from __future__ import annotations

from tests.results import succeeded
from tmpnb.proxy.targets import parse_target
from tmpnb.proxy.testing import ProxyHarness

OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
HUB_ERROR = "http://127.0.0.1:8081/hub/error"


def proxy(**kwargs) -> ProxyHarness:
    harness = ProxyHarness(**kwargs)
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    return harness


def with_error_target(**kwargs) -> ProxyHarness:
    """A proxy whose error target is a real ErrorTarget on the harness's in-memory reactor."""
    harness = ProxyHarness(error_target=HUB_ERROR, **kwargs)
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    return harness


def request_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]


def headers_of(data: bytes) -> list[tuple[bytes, bytes]]:
    head = data.split(b"\r\n\r\n", 1)[0]
    pairs = (line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    return [(name.strip().lower(), value.strip()) for name, value in pairs]


def header(data: bytes, name: bytes) -> bytes | None:
    return dict(headers_of(data)).get(name)


# --- the error target


def test_a_request_without_a_route_gets_the_error_targets_404_page():
    harness = with_error_target()
    visitor = harness.visit()
    visitor.send(b"GET /nowhere/x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    hub = harness.accept()
    assert hub.address == "127.0.0.1:8081"
    assert request_line(hub.received()) == b"GET /hub/error/404?url=%2Fnowhere%2Fx%3Fy%3D1 HTTP/1.1"
    hub.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Other: no\r\nContent-Length: 8\r\n\r\nhub page")
    answer = visitor.received()
    assert request_line(answer) == b"HTTP/1.1 404 Not Found"  # the original status, the hub's page
    assert header(answer, b"content-type") == b"text/html"
    assert header(answer, b"x-other") is None  # CHP passes on only content type and encoding
    assert answer.endswith(b"\r\n\r\nhub page")
    assert visitor.open  # and the connection stays usable


def test_a_route_whose_server_is_down_gets_the_error_targets_503_page():
    harness = with_error_target()
    visitor = harness.visit()
    visitor.send(b"GET /user/a/lab HTTP/1.1\r\nHost: h\r\n\r\n")
    harness.refuse()  # the user's server is not listening
    hub = harness.accept()
    assert request_line(hub.received()) == b"GET /hub/error/503?url=%2Fuser%2Fa%2Flab HTTP/1.1"
    hub.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 30\r\n\r\nYour server appears to be down")
    answer = visitor.received()
    assert request_line(answer) == b"HTTP/1.1 503 Service Unavailable"
    assert answer.endswith(b"\r\n\r\nYour server appears to be down")


def test_when_the_error_target_is_down_too_the_proxys_own_page_answers():
    harness = with_error_target()
    visitor = harness.visit()
    visitor.send(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
    harness.refuse()
    answer = visitor.received()
    assert request_line(answer) == b"HTTP/1.1 404 Not Found"
    assert b"<h1>404 Not Found</h1>" in answer


def test_a_visitor_gone_before_the_error_page_arrives_is_left_alone():
    harness = with_error_target()
    visitor = harness.visit()
    visitor.send(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
    hub = harness.accept()
    visitor.close()
    hub.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage")
    assert visitor.received() == b""


# --- timeouts: none unless asked, as CHP


def test_with_proxy_timeout_a_silent_backend_gives_503():
    harness = proxy(proxy_timeout=30.0, idle_timeout=5.0)
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.1\r\nHost: h\r\n\r\n")
    backend = harness.accept()
    harness.reactor.advance(29)
    assert visitor.received() == b""
    harness.reactor.advance(1)
    assert request_line(visitor.received()) == b"HTTP/1.1 503 Service Unavailable"
    assert not backend.open


def test_proxy_timeout_counts_silence_not_the_length_of_a_slow_download():
    harness = proxy(proxy_timeout=30.0)
    visitor = harness.visit()
    visitor.send(b"GET /user/a/big HTTP/1.1\r\nHost: h\r\n\r\n")
    backend = harness.accept()
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    for _ in range(10):
        harness.reactor.advance(20)
        backend.send(b"0123456789")
    assert visitor.received().endswith(b"0123456789" * 10)
    assert visitor.open


def test_with_timeout_a_silent_exchange_drops_the_visitors_connection_without_an_answer():
    harness = proxy(timeout=10.0, idle_timeout=60.0)
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.1\r\nHost: h\r\n\r\n")
    backend = harness.accept()
    harness.reactor.advance(10)
    assert visitor.received() == b""
    assert not visitor.open and not backend.open


def test_keep_alive_connections_close_after_the_idle_timeout():
    harness = proxy(idle_timeout=5.0)
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.1\r\nHost: h\r\n\r\n")
    harness.accept().send(OK_EMPTY)
    harness.reactor.advance(4)
    assert visitor.open
    harness.reactor.advance(6)  # the lazy timer looks again at most one idle timeout late
    assert not visitor.open


# --- host routing


def test_with_host_routing_the_host_is_the_first_segment_of_the_route():
    harness = ProxyHarness(host_routing=True)
    harness.routes.add("/alice.hub.example/user/alice", {"target": harness.unix_target("alice")})
    harness.routes.add("/bob.hub.example/user/bob", {"target": harness.unix_target("bob")})
    harness.visit().send(b"GET /user/alice/lab HTTP/1.1\r\nHost: alice.hub.example:8000\r\n\r\n")
    backend = harness.accept()
    assert backend.address == "/run/test/alice/jupyter.sock"
    assert request_line(backend.received()) == b"GET /user/alice/lab HTTP/1.1"
    visitor = harness.visit()
    visitor.send(b"GET /user/alice/lab HTTP/1.1\r\nHost: bob.hub.example:8000\r\n\r\n")
    assert request_line(visitor.received()) == b"HTTP/1.1 404 Not Found"


# --- X-Forwarded-*, exactly as node-http-proxy's xfwd


def test_forwarded_headers_are_chps_for_port_proto_and_host():
    harness = proxy()
    harness.visit(host="192.0.2.7").send(
        b"GET /user/a/ HTTP/1.1\r\nHost: hub.example:8443\r\nX-Forwarded-For: 203.0.113.9\r\n"
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: outer.example\r\nAccept: */*\r\n\r\n"
    )
    headers = headers_of(harness.accept().received())
    assert headers == [
        (b"host", b"hub.example:8443"),
        (b"x-forwarded-for", b"203.0.113.9,192.0.2.7"),  # appended in place, joined with ","
        (b"x-forwarded-proto", b"https,http"),
        (b"x-forwarded-host", b"outer.example"),  # an earlier proxy's host is kept as it is
        (b"accept", b"*/*"),
        (b"x-forwarded-port", b"8443"),  # the Host header's port
    ]


def test_a_websocket_gets_ws_as_its_forwarded_proto_and_no_forwarded_host():
    harness = proxy(scheme="https")
    harness.visit().send(
        b"GET /user/a/api/kernels/k/channels HTTP/1.1\r\nHost: hub.example\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    headers = dict(headers_of(harness.accept().received()))
    assert headers[b"x-forwarded-proto"] == b"wss"
    assert headers[b"x-forwarded-port"] == b"443"
    assert b"x-forwarded-host" not in headers


def test_no_x_forward_adds_none():
    harness = proxy(x_forward=False)
    harness.visit().send(b"GET /user/a/ HTTP/1.1\r\nHost: h\r\n\r\n")
    sent = harness.accept().received()
    assert not [name for name, _ in headers_of(sent) if name.startswith(b"x-forwarded")]


# --- the request-target and headers CHP's other options change


def test_no_include_prefix_cuts_the_route_off_the_path():
    harness = proxy(include_prefix=False)
    harness.visit().send(b"GET /user/a/api/status?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert request_line(harness.accept().received()) == b"GET /api/status?x=1 HTTP/1.1"


def test_a_targets_path_is_prepended_unless_no_prepend_path():
    for prepend, expected in [(True, b"GET /base/user/b/x HTTP/1.1"), (False, b"GET /user/b/x HTTP/1.1")]:
        harness = ProxyHarness(prepend_path=prepend)
        harness.routes.add("/user/b", {"target": "http://127.0.0.1:9000/base/"})
        harness.visit().send(b"GET /user/b/x HTTP/1.1\r\nHost: h\r\n\r\n")
        assert request_line(harness.accept().received()) == expected


def test_custom_headers_and_change_origin_set_request_headers():
    harness = ProxyHarness(custom_headers=[("X-Team", "blue"), ("Accept", "text/plain")], change_origin=True)
    harness.routes.add("/user/b", {"target": "http://127.0.0.1:9000"})
    harness.visit().send(b"GET /user/b/ HTTP/1.1\r\nHost: public.example\r\nAccept: */*\r\n\r\n")
    headers = dict(headers_of(harness.accept().received()))
    assert headers[b"x-team"] == b"blue"
    assert headers[b"accept"] == b"text/plain"  # replaced, not doubled
    assert headers[b"host"] == b"127.0.0.1:9000"
    assert headers[b"x-forwarded-host"] == b"public.example"


def test_auto_rewrite_and_protocol_rewrite_point_a_redirect_at_the_proxy():
    harness = ProxyHarness(auto_rewrite=True, protocol_rewrite="https")
    harness.routes.add("/user/b", {"target": "http://127.0.0.1:9000"})
    visitor = harness.visit()
    visitor.send(b"GET /user/b/ HTTP/1.1\r\nHost: public.example\r\n\r\n")
    harness.accept().send(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9000/user/b/lab\r\nContent-Length: 0\r\n\r\n")
    assert header(visitor.received(), b"location") == b"https://public.example/user/b/lab"


def test_https_targets_are_parsed_with_their_default_port():
    target = parse_target("https://127.0.0.1/prefix/")
    assert (target.tls, target.host, target.port, target.prefix) == (True, "127.0.0.1", 443, b"/prefix")


def test_chps_health_check_answers_on_the_public_port_whatever_the_routes():
    harness = ProxyHarness()  # not even a route "/"
    visitor = harness.visit()
    visitor.send(b"GET /_chp_healthz HTTP/1.1\r\nHost: h\r\n\r\n")
    answer = visitor.received()
    assert request_line(answer) == b"HTTP/1.1 200 OK"
    assert answer.endswith(b'\r\n\r\n{"status":"OK"}')
    assert visitor.open and harness.attempts() == []


# --- --error-path, --redirect-port, --pid-file


def test_error_path_pages_come_from_a_directory(tmp_path):
    (tmp_path / "503.html").write_text("<p>server down</p>")
    (tmp_path / "error.html").write_text("<p>something else</p>")
    harness = proxy(error_path=str(tmp_path))
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.1\r\nHost: h\r\n\r\n")
    harness.refuse()
    assert visitor.received().endswith(b"\r\n\r\n<p>server down</p>")
    visitor.send(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
    answer = visitor.received()
    assert request_line(answer) == b"HTTP/1.1 404 Not Found"
    assert answer.endswith(b"\r\n\r\n<p>something else</p>")  # no 404.html: error.html


def test_the_redirect_port_sends_visitors_to_https():
    import treq
    from treq.testing import StubTreq

    from tmpnb.proxy.redirect import HTTPSRedirect

    for port, location in [(8443, b"https://hub.example:8443/hub/login?next=x"), (443, b"https://hub.example/hub/login?next=x")]:
        http = StubTreq(HTTPSRedirect(port))
        reply = succeeded(
            http.get("http://hub.example:8080/hub/login?next=x", headers={"Host": "hub.example:8080"}, allow_redirects=False)
        )
        succeeded(treq.content(reply))
        assert (reply.code, reply.headers.getRawHeaders(b"location")) == (301, [location])


def test_the_pid_file_lives_as_long_as_the_service(tmp_path):
    import os

    from tmpnb.proxy.tap import PidFile

    path = tmp_path / "proxy.pid"
    service = PidFile(str(path))
    service.startService()
    assert path.read_text() == str(os.getpid())
    service.stopService()
    assert not path.exists()

"""The reverse proxy's HTTP forwarding, over in-memory transports and a fake clock."""

from __future__ import annotations

from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.testing import StringTransportWithDisconnection

from tmpnb.proxy.testing import ProxyHarness

GET = b"GET /user/a/api/status HTTP/1.1\r\nHost: tmpnb.example\r\n\r\n"
OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def proxy(**kwargs) -> ProxyHarness:
    harness = ProxyHarness(**kwargs)
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    return harness


def request_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]


def headers_of(data: bytes) -> dict[bytes, bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    pairs = (line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    return {name.strip().lower(): value.strip() for name, value in pairs}


# --- routing


def test_a_request_goes_to_its_routes_unix_socket_with_its_path_and_query_intact():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(b"GET /user/a/tree?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    backend = harness.accept()
    assert backend.address == "/run/test/a/jupyter.sock"
    assert request_line(backend.received()) == b"GET /user/a/tree?x=1 HTTP/1.1"


def test_the_longest_matching_prefix_wins_on_segment_boundaries():
    harness = proxy()
    harness.routes.add("/user/a/lab", {"target": harness.unix_target("lab")})
    for path, socket in [
        (b"/user/a/lab/tree", "/run/test/lab/jupyter.sock"),
        (b"/user/a/lab", "/run/test/lab/jupyter.sock"),
        (b"/user/a/labs", "/run/test/a/jupyter.sock"),
        (b"/user/a/", "/run/test/a/jupyter.sock"),
    ]:
        harness.visit().send(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        assert harness.accept().address == socket, path


def test_unmatched_paths_go_to_the_default_target():
    harness = proxy(default_target="http://127.0.0.1:8001")
    harness.visit().send(b"GET /spawn?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    backend = harness.accept()
    assert backend.address == "127.0.0.1:8001"
    assert request_line(backend.received()) == b"GET /spawn?x=1 HTTP/1.1"


def test_a_target_with_a_path_prefixes_the_forwarded_request():
    harness = proxy()
    harness.routes.add("/hub", {"target": "http://127.0.0.1:8081/base/"})
    harness.visit().send(b"GET /hub/x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert request_line(harness.accept().received()) == b"GET /base/hub/x HTTP/1.1"


def test_without_route_or_default_target_the_answer_is_404():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
    assert visitor.received().startswith(b"HTTP/1.1 404 ")
    assert harness.attempts() == []
    assert visitor.open  # nothing wrong with the connection itself


# --- headers


def test_hop_by_hop_headers_are_removed_and_forwarding_headers_added():
    harness = proxy()
    harness.visit(host="192.0.2.7").send(
        b"GET /user/a/ HTTP/1.1\r\n"
        b"Host: tmpnb.example\r\n"
        b"Connection: keep-alive, X-Secret-Hop\r\n"
        b"X-Secret-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"TE: trailers\r\n"
        b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
        b"Upgrade: h2c\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\n"
        b"Cookie: a=b\r\n\r\n"
    )
    headers = headers_of(harness.accept().received())
    for hop in (b"connection", b"x-secret-hop", b"keep-alive", b"te", b"proxy-authorization", b"upgrade"):
        assert hop not in headers
    assert headers[b"host"] == b"tmpnb.example"  # the original Host, for the server's own URLs
    assert headers[b"cookie"] == b"a=b"
    # as configurable-http-proxy: an earlier proxy's value first, joined with ","
    assert headers[b"x-forwarded-for"] == b"203.0.113.9,192.0.2.7"
    assert headers[b"x-forwarded-proto"] == b"http"
    assert headers[b"x-forwarded-port"] == b"80"  # none in the Host header: the scheme's
    assert headers[b"x-forwarded-host"] == b"tmpnb.example"


def test_hop_by_hop_headers_of_the_response_are_removed():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    harness.accept().send(
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=9\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    answer = visitor.received()
    headers = headers_of(answer)
    assert b"x-internal" not in headers and b"keep-alive" not in headers and b"connection" not in headers
    assert headers[b"content-type"] == b"application/json"
    assert answer.endswith(b"\r\n\r\n{}")


def test_the_visitor_socket_gets_tcp_nodelay():
    class RecordingTransport(StringTransportWithDisconnection):
        no_delay = False

        def setTcpNoDelay(self, enabled: bool) -> None:
            self.no_delay = enabled

    visitor = proxy().visit(transport_class=RecordingTransport)
    assert visitor.transport.no_delay is True


# --- keep-alive and the backend pool


def test_keep_alive_on_both_sides_reuses_one_backend_connection():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
    assert visitor.received().endswith(b"first")
    visitor.send(GET)
    assert harness.attempts() == []  # no second connection
    assert request_line(backend.received().split(b"\r\n\r\n")[-2]) == request_line(GET)
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
    assert visitor.received().endswith(b"second")
    assert visitor.open and backend.open


def test_another_visitor_reuses_an_idle_backend_connection():
    harness = proxy()
    first = harness.visit()
    first.send(GET)
    backend = harness.accept()
    backend.send(OK_EMPTY)
    backend.received()
    second = harness.visit()
    second.send(GET)
    assert harness.attempts() == []
    assert request_line(backend.received()) == request_line(GET)


def test_connections_per_target_are_bounded_and_waiters_get_freed_ones():
    harness = proxy(max_backend_connections_per_target=2)
    visitors = [harness.visit() for _ in range(3)]
    for visitor in visitors:
        visitor.send(GET)
    assert len(harness.attempts()) == 2
    first, second = harness.accept(), harness.accept()
    first.received()
    first.send(OK_EMPTY)
    # The third visitor gets the first connection as soon as it is free.
    assert request_line(first.received()) == request_line(GET)
    assert harness.attempts() == []
    first.send(OK_EMPTY)
    second.send(OK_EMPTY)
    assert [v.received().startswith(b"HTTP/1.1 200 OK") for v in visitors] == [True, True, True]


def test_a_visitor_waiting_for_a_busy_pool_gets_503_after_the_connect_timeout():
    harness = proxy(max_backend_connections_per_target=1, connect_timeout=5)
    busy, waiting = harness.visit(), harness.visit()
    busy.send(GET)
    harness.accept()
    waiting.send(GET)
    harness.reactor.advance(5)
    assert waiting.received().startswith(b"HTTP/1.1 503 ")


def test_idle_backend_connections_close_after_their_idle_timeout():
    harness = proxy(backend_idle_timeout=30)
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    backend.send(OK_EMPTY)
    harness.reactor.advance(29)
    assert backend.open
    harness.reactor.advance(1)
    assert not backend.open
    assert harness.factory.pool.stats() == {}


def test_a_bursts_backend_connections_are_closed_five_seconds_after_it_by_default():
    # Six visitors at once on the orchestrator (the soak's spawn rush) open six connections to
    # it; kept for 60 s they were the soak's "leaked" fds (two each: the orchestrator is in-process).
    harness = ProxyHarness(default_target="http+unix://%2Frun%2Ftest%2Fweb.sock")
    visitors = [harness.visit() for _ in range(6)]
    for visitor in visitors:
        visitor.send(b"GET / HTTP/1.1\r\nHost: tmpnb.example\r\n\r\n")
    backends = [harness.accept() for _ in visitors]
    for backend in backends:
        backend.send(b"HTTP/1.1 302 Found\r\nLocation: /user/a/\r\nContent-Length: 0\r\n\r\n")
    assert all(v.received().startswith(b"HTTP/1.1 302 ") for v in visitors)
    harness.reactor.advance(4.9)
    assert [b.open for b in backends] == [True] * 6  # kept alive for the next requests
    harness.reactor.advance(0.1)
    assert [b.open for b in backends] == [False] * 6
    assert harness.factory.pool.stats() == {}


def test_pipelined_requests_are_answered_in_order():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(
        b"GET /user/a/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /user/a/2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    backend = harness.accept()
    assert request_line(backend.received()) == b"GET /user/a/1 HTTP/1.1"
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
    assert request_line(backend.received()) == b"GET /user/a/2 HTTP/1.1"
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
    answers = visitor.received()
    assert answers.index(b"one") < answers.index(b"two")
    assert not visitor.open  # the second asked to close


def test_http_1_0_visitors_get_one_request_per_connection():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.0\r\n\r\n")
    backend = harness.accept()
    assert request_line(backend.received()) == b"GET /user/a/ HTTP/1.0"
    backend.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
    backend.close()
    assert visitor.received().endswith(b"until close")
    assert not visitor.open


# --- bodies stream, with back-pressure


def test_a_request_body_is_forwarded_as_it_arrives_not_buffered():
    harness = proxy()
    visitor = harness.visit()
    size = 1 << 20
    visitor.send(b"PUT /user/a/api/contents/big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size)
    backend = harness.accept()
    backend.received()
    chunk = b"x" * 65536
    for _ in range(size // len(chunk)):
        visitor.send(chunk)
        assert backend.received() == chunk
    backend.send(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert visitor.received().startswith(b"HTTP/1.1 201 ")
    assert visitor.open


def test_a_slow_backend_pauses_reading_from_the_visitor_and_resumes_it():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(b"POST /user/a/upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n")
    backend = harness.accept()
    backend.fill_buffer()
    assert visitor.paused
    backend.drain_buffer()
    assert not visitor.paused


def test_a_response_body_streams_and_a_slow_visitor_pauses_the_backend():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    visitor.received()
    backend.send(b"y" * 500_000)
    assert visitor.received() == b"y" * 500_000
    visitor.fill_buffer()
    assert backend.paused
    visitor.drain_buffer()
    assert not backend.paused
    backend.send(b"y" * 500_000)
    assert visitor.received() == b"y" * 500_000
    visitor.send(GET)  # the exchange ended exactly at Content-Length: keep-alive continues
    assert request_line(backend.received()) == request_line(GET)


def test_chunked_bodies_pass_through_and_their_end_is_found():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(b"POST /user/a/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    backend = harness.accept()
    sent = backend.received()
    assert headers_of(sent)[b"transfer-encoding"] == b"chunked"
    assert sent.endswith(b"5\r\nhello\r\n")
    visitor.send(b"0\r\n\r\n")
    assert backend.received() == b"0\r\n\r\n"
    backend.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    answer = visitor.received()
    assert answer.endswith(b"3\r\nabc\r\n0\r\n\r\n")
    visitor.send(GET)
    assert harness.attempts() == []  # framing understood: the connection was reused
    assert request_line(backend.received()) == request_line(GET)


def test_a_body_until_close_closes_the_visitor_connection_after_it():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    backend.send(b"HTTP/1.1 200 OK\r\n\r\npartial")
    assert headers_of(visitor.received())[b"connection"] == b"close"
    backend.send(b" and the rest")
    backend.close()
    assert visitor.received() == b" and the rest"
    assert not visitor.open


def test_an_interim_100_continue_reaches_the_visitor():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(b"PUT /user/a/f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    backend = harness.accept()
    backend.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert visitor.received() == b"HTTP/1.1 100 Continue\r\n\r\n"
    visitor.send(b"ok")
    assert backend.received().endswith(b"\r\n\r\nok")
    backend.send(OK_EMPTY)
    assert visitor.received().startswith(b"HTTP/1.1 200 OK")


# --- errors and timeouts


def test_a_dead_backend_gives_a_clear_503_page_and_the_connection_stays_usable():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    harness.refuse()
    answer = visitor.received()
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"not running" in answer
    assert visitor.open
    assert harness.factory.pool.stats() == {}


def test_a_connect_timeout_gives_503():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    harness.refuse(ConnectTimeout())
    assert visitor.received().startswith(b"HTTP/1.1 503 ")


def test_a_backend_that_closes_without_answering_gives_502():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    backend.close()
    assert visitor.received().startswith(b"HTTP/1.1 502 ")


def test_a_stale_kept_alive_connection_is_retried_once_on_a_fresh_one():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    stale = harness.accept()
    stale.send(OK_EMPTY)
    visitor.received()
    visitor.send(GET)
    stale.close()  # the backend had just dropped the idle connection
    fresh = harness.accept()
    assert request_line(fresh.received()) == request_line(GET)
    fresh.send(OK_EMPTY)
    assert visitor.received().startswith(b"HTTP/1.1 200 OK")


def test_a_post_is_never_sent_twice():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    stale = harness.accept()
    stale.send(OK_EMPTY)
    visitor.received()
    visitor.send(b"POST /user/a/api/kernels HTTP/1.1\r\nHost: h\r\n\r\n")
    stale.close()
    assert harness.attempts() == []
    assert visitor.received().startswith(b"HTTP/1.1 502 ")


def test_garbage_from_the_backend_gives_502():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    backend.send(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert visitor.received().startswith(b"HTTP/1.1 502 ")
    assert not backend.open


def test_a_backend_may_think_for_as_long_as_it_likes_by_default():
    # configurable-http-proxy sets no timeout on an exchange unless asked: long saves and
    # exports must not end in a 504 after some fixed time.
    harness = proxy(idle_timeout=60)
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    harness.reactor.advance(60 * 60 * 24)
    assert visitor.received() == b""
    backend.send(OK_EMPTY)
    assert visitor.received().startswith(b"HTTP/1.1 200 ")
    assert visitor.open


def test_an_idle_keep_alive_visitor_is_closed_after_the_idle_timeout():
    # No head deadline here: it would close the connection silent for its first 30 s
    # (tests/test_proxy_frontdoor.py has that).
    harness = proxy(idle_timeout=60, head_timeout=None)
    visitor = harness.visit()
    harness.reactor.advance(30)
    visitor.send(GET)
    harness.accept().send(OK_EMPTY)
    harness.reactor.advance(59)
    assert visitor.open
    harness.reactor.advance(1)
    assert not visitor.open


def test_an_incomplete_request_head_times_out_with_408():
    harness = proxy(idle_timeout=10)
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.1\r\nHost: ")
    harness.reactor.advance(10)
    assert visitor.received().startswith(b"HTTP/1.1 408 ")
    assert not visitor.open


def test_a_malformed_request_gets_400_and_the_connection_closes():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n")
    assert visitor.received().startswith(b"HTTP/1.1 400 ")
    assert not visitor.open
    assert harness.attempts() == []


def test_a_visitor_leaving_mid_response_closes_the_backend_connection():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
    visitor.close()
    assert not backend.open  # its remaining bytes could not be told from the next answer
    assert harness.factory.pool.stats() == {}


def test_a_visitor_leaving_while_the_backend_connects_leaks_nothing():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(GET)
    visitor.close()
    assert harness.factory.pool.stats() == {}


# --- activity


def test_route_activity_is_recorded_on_requests_and_on_response_data():
    harness = proxy()
    start = harness.routes.last_activity("/user/a")
    harness.reactor.advance(100)
    visitor = harness.visit()
    visitor.send(b"GET /user/a/files/big HTTP/1.1\r\nHost: h\r\n\r\n")
    assert harness.routes.last_activity("/user/a") == start + 100
    backend = harness.accept()
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
    harness.reactor.advance(50)
    backend.send(b"def")
    assert harness.routes.last_activity("/user/a") == start + 150


def test_the_default_target_touches_no_route():
    harness = proxy(default_target="http://127.0.0.1:8001")
    before = harness.routes.all()
    harness.reactor.advance(10)
    harness.visit().send(b"GET /spawn HTTP/1.1\r\nHost: h\r\n\r\n")
    assert harness.routes.all() == before

"""The public listener against slow and greedy clients: head and body deadlines, bodies for the
orchestrator read whole first and refused over their limit, and the per-client connection cap.

In memory, with the proxy's harness and its clock (tmpnb/proxy/testing.py).
"""

from __future__ import annotations

from tmpnb.proxy.clients import ClientConnections, client_key
from tmpnb.proxy.testing import ProxyHarness

ORCHESTRATOR = "http://127.0.0.1:9000"
OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
GET = b"GET /user/a/api/status HTTP/1.1\r\nHost: h\r\n\r\n"


def proxy(**settings) -> ProxyHarness:
    harness = ProxyHarness(**settings)
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    return harness


def spawn_head(length: int, extra: bytes = b"") -> bytes:
    return b"POST /api/spawn HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n%s\r\n" % (length, extra)


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


# --- the request head's deadline


def test_a_head_dripped_a_byte_a_second_is_closed_at_its_deadline_with_408():
    harness = proxy(head_timeout=10, idle_timeout=120)
    visitor = harness.visit()
    head = GET[:-2]  # never finished
    for t in range(9):
        visitor.send(head[t : t + 1])
        harness.reactor.advance(1)
    assert visitor.open  # 9 s in: still within the head's 10 s
    for t in range(9, 20):
        visitor.send(head[t : t + 1])
        harness.reactor.advance(1)
    assert not visitor.open  # each byte came within a second: an idle timer would never fire
    assert status_of(visitor.received()) == 408
    assert harness.factory.heads_timed_out == 1
    assert harness.attempts() == []


def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline_not_the_idle_timeout():
    harness = proxy(head_timeout=5, idle_timeout=120)
    visitor = harness.visit()
    harness.reactor.advance(4.9)
    assert visitor.open
    harness.reactor.advance(0.2)
    assert not visitor.open
    assert visitor.received() == b""  # nothing was asked: nothing to answer


def test_a_whole_head_in_time_is_forwarded_and_keep_alive_idling_is_the_idle_timeouts_business():
    harness = proxy(head_timeout=5, idle_timeout=60)
    visitor = harness.visit()
    harness.reactor.advance(4)
    visitor.send(GET)
    harness.accept().send(OK_EMPTY)
    assert status_of(visitor.received()) == 200
    harness.reactor.advance(30)  # between requests: only the idle timeout counts
    assert visitor.open
    visitor.send(b"GET /user/a/ HTTP/1.1\r\n")  # the next head's clock starts at its first byte
    harness.reactor.advance(4.9)
    assert visitor.open
    harness.reactor.advance(0.2)
    assert not visitor.open
    assert status_of(visitor.received()) == 408


# --- the request body's minimum rate


def post_to_a(length: int) -> bytes:
    return b"PUT /user/a/api/contents/x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % length


def test_a_body_slower_than_its_minimum_rate_is_closed_with_408_and_its_backend_connection_too():
    harness = proxy(body_timeout=10, body_min_rate=100)
    visitor = harness.visit()
    visitor.send(post_to_a(100_000))
    backend = harness.accept()
    # 10 s, then 1 s more per 100 bytes: 50 bytes a second falls behind at t = 20 s.
    for _ in range(19):
        visitor.send(b"x" * 50)
        harness.reactor.advance(1)
    assert visitor.open
    for _ in range(3):
        visitor.send(b"x" * 50)
        harness.reactor.advance(1)
    assert not visitor.open
    assert status_of(visitor.received()) == 408
    assert not backend.open
    assert harness.factory.bodies_timed_out == 1


def test_a_body_at_its_minimum_rate_is_never_cut_off():
    harness = proxy(body_timeout=10, body_min_rate=100)
    visitor = harness.visit()
    visitor.send(post_to_a(30_000))
    backend = harness.accept()
    for _ in range(300):
        visitor.send(b"x" * 100)
        harness.reactor.advance(1)
    assert visitor.open
    backend.send(OK_EMPTY)
    assert status_of(visitor.received()) == 200


def test_time_the_backend_does_not_take_the_body_is_not_the_visitors():
    harness = proxy(body_timeout=10, body_min_rate=100)
    visitor = harness.visit()
    visitor.send(post_to_a(1000))
    backend = harness.accept()
    visitor.send(b"x" * 100)
    backend.fill_buffer()  # the backend reads nothing for a minute: the proxy stops reading
    assert visitor.paused
    harness.reactor.advance(60)
    assert visitor.open
    backend.drain_buffer()
    harness.reactor.advance(5)
    assert visitor.open
    visitor.send(b"x" * 900)
    backend.send(OK_EMPTY)
    assert status_of(visitor.received()) == 200


def test_responses_and_websockets_have_no_deadline():
    harness = proxy(head_timeout=5, body_timeout=5, body_min_rate=1000)
    visitor = harness.visit()
    visitor.send(GET)
    backend = harness.accept()
    backend.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(100):  # a download at 10 bytes a second
        backend.send(b"x" * 10)
        harness.reactor.advance(1)
    assert visitor.open
    socket = harness.visit()
    socket.send(b"GET /user/a/api/kernels/k/channels HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    ws_backend = harness.accept()
    ws_backend.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    harness.reactor.advance(3600)  # a kernel quiet for an hour
    assert socket.open


# --- bodies for the orchestrator: read whole first, limited while read


def test_a_slow_body_for_the_orchestrator_takes_no_backend_connection_until_it_is_whole():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096, body_timeout=30, body_min_rate=10)
    visitor = harness.visit()
    visitor.send(spawn_head(20))
    for byte in b'{"wait": 5}        ':
        visitor.send(bytes([byte]))
        harness.reactor.advance(1)
    assert harness.attempts() == []  # 19 s of a body, no connection to the orchestrator
    visitor.send(b"\n")
    backend = harness.accept()
    sent = backend.received()
    assert sent.startswith(b"POST /api/spawn HTTP/1.1\r\n")
    assert sent.endswith(b'\r\n\r\n{"wait": 5}        \n')  # head and whole body, at once
    backend.send(OK_EMPTY)
    assert status_of(visitor.received()) == 200


def test_a_body_for_the_orchestrator_that_falls_behind_is_closed_before_any_backend_connection():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096, body_timeout=5, body_min_rate=10)
    visitor = harness.visit()
    visitor.send(spawn_head(1000))
    for _ in range(10):
        visitor.send(b"x")
        harness.reactor.advance(1)
    assert not visitor.open
    assert status_of(visitor.received()) == 408
    assert harness.attempts() == []


def test_a_content_length_over_the_limit_gets_413_at_once_and_nothing_is_read():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096)
    visitor = harness.visit()
    visitor.send(spawn_head(512 * 1024 * 1024))
    assert status_of(visitor.received()) == 413
    assert not visitor.open
    assert harness.attempts() == []
    assert harness.factory.bodies_too_large == 1


def test_a_chunked_body_is_counted_as_it_comes_and_refused_past_the_limit():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096)
    visitor = harness.visit()
    visitor.send(b"POST /api/spawn HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    visitor.send(b"400\r\n" + b"x" * 1024 + b"\r\n")
    visitor.send(b"400\r\n" + b"x" * 1024 + b"\r\n")
    assert visitor.open and visitor.received() == b""
    visitor.send(b"1000\r\n" + b"x" * 2048)  # past 4096 bytes, chunk unfinished
    assert status_of(visitor.received()) == 413
    assert not visitor.open
    assert harness.attempts() == []


def test_a_chunked_body_within_the_limit_is_forwarded_whole():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096)
    visitor = harness.visit()
    visitor.send(b"POST /api/spawn HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    assert harness.attempts() == []
    visitor.send(b"0\r\n\r\n")
    sent = harness.accept().received()
    assert sent.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


def test_expect_100_continue_is_answered_by_the_proxy_and_not_forwarded():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096)
    visitor = harness.visit()
    visitor.send(spawn_head(2, b"Expect: 100-continue\r\n"))
    assert visitor.received() == b"HTTP/1.1 100 Continue\r\n\r\n"
    visitor.send(b"{}")
    sent = harness.accept().received()
    assert b"expect" not in sent.lower()
    assert sent.endswith(b"\r\n\r\n{}")


def test_expect_100_continue_over_the_limit_gets_413_without_a_continue():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096)
    visitor = harness.visit()
    visitor.send(spawn_head(5000, b"Expect: 100-continue\r\n"))
    assert status_of(visitor.received()) == 413


def test_a_pipelined_request_after_a_buffered_body_waits_its_turn():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096)
    visitor = harness.visit()
    visitor.send(spawn_head(2) + b"{}" + b"GET /api/stats HTTP/1.1\r\nHost: h\r\n\r\n")
    backend = harness.accept()
    assert backend.received().endswith(b"\r\n\r\n{}")
    backend.send(OK_EMPTY)
    assert backend.received().startswith(b"GET /api/stats HTTP/1.1\r\n")


def test_bodies_for_notebook_routes_are_still_streamed():
    harness = proxy(default_target=ORCHESTRATOR, default_target_max_body=4096)
    visitor = harness.visit()
    visitor.send(post_to_a(10_000) + b"x" * 10)
    backend = harness.accept()  # at once: a notebook server takes its own uploads
    assert backend.received().endswith(b"\r\n\r\n" + b"x" * 10)


# --- connections per client


def test_at_its_cap_a_clients_oldest_idle_connection_is_shed_first():
    harness = proxy(max_client_connections=3)
    active = harness.visit("192.0.2.1")
    active.send(b"GET /user/a/ HTTP/1.1\r\n")  # a head under way: active
    idle_old = harness.visit("192.0.2.1")
    idle_new = harness.visit("192.0.2.1")
    newest = harness.visit("192.0.2.1")
    assert not idle_old.open
    assert active.open and idle_new.open and newest.open
    assert harness.factory.clients.count("192.0.2.1") == 3


def test_a_client_at_its_cap_with_nothing_idle_is_refused_and_others_are_not():
    harness = proxy(max_client_connections=2)
    busy = []
    for _ in range(2):
        visitor = harness.visit("192.0.2.1")
        visitor.send(GET)
        busy.append(visitor)
    refused = harness.visit("192.0.2.1")
    assert not refused.open
    assert status_of(refused.received()) == 503
    assert all(v.open for v in busy)
    other = harness.visit("192.0.2.2")
    assert other.open
    busy[0].close()  # a slot frees up
    again = harness.visit("192.0.2.1")
    assert again.open


def test_a_keep_alive_connection_between_requests_counts_as_idle():
    harness = proxy(max_client_connections=1)
    first = harness.visit("192.0.2.1")
    first.send(GET)
    harness.accept().send(OK_EMPTY)
    second = harness.visit("192.0.2.1")
    assert not first.open and second.open


def test_a_spliced_websocket_is_never_shed():
    harness = proxy(max_client_connections=1)
    socket = harness.visit("192.0.2.1")
    socket.send(b"GET /user/a/api/events/subscribe HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    harness.accept().send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    refused = harness.visit("192.0.2.1")
    assert socket.open and not refused.open


def test_no_cap_by_default_for_a_drop_in_configurable_http_proxy():
    harness = proxy()
    visitors = [harness.visit("192.0.2.1") for _ in range(300)]
    assert all(v.open for v in visitors)


def test_an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4_address():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.9") == client_key("192.0.2.9") == "192.0.2.9"
    assert client_key("") == ""


def test_the_registry_forgets_clients_whose_connections_all_closed():
    class Conn:
        idle = True

        def shed(self):
            pass

    registry = ClientConnections(2)
    a, b = Conn(), Conn()
    assert registry.admit("x", a) and registry.admit("x", b)
    registry.leave("x", a)
    registry.leave("x", b)
    assert registry.count("x") == 0 and registry._by_client == {}
    assert ClientConnections(2).admit("", a)  # a unix socket peer: no cap

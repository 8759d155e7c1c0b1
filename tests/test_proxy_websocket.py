"""WebSocket upgrades through the proxy: handshake, byte splice, activity, refusals, no leaks."""

from __future__ import annotations

from tmpnb.proxy.testing import ProxyHarness

UPGRADE = (
    b"GET /user/a/api/kernels/k1/channels?token=t HTTP/1.1\r\n"
    b"Host: h\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Upgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)
FRAME = b"\x81\x05hello"  # bytes are never parsed: any will do


def proxy(**kwargs) -> ProxyHarness:
    harness = ProxyHarness(**kwargs)
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    return harness


def upgraded(harness: ProxyHarness):
    visitor = harness.visit()
    visitor.send(UPGRADE)
    backend = harness.accept()
    backend.received()
    backend.send(SWITCHING)
    visitor.received()
    return visitor, backend


def test_the_upgrade_request_reaches_the_backend_with_its_upgrade_headers():
    harness = proxy()
    harness.visit().send(UPGRADE)
    sent = harness.accept().received()
    head = sent.split(b"\r\n")
    assert head[0] == b"GET /user/a/api/kernels/k1/channels?token=t HTTP/1.1"
    assert b"Connection: Upgrade" in head and b"Upgrade: websocket" in head
    assert b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==" in head


def test_the_101_answer_reaches_the_visitor_with_its_upgrade_headers():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(UPGRADE)
    harness.accept().send(SWITCHING)
    answer = visitor.received()
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Upgrade: websocket\r\n" in answer and b"Connection: Upgrade\r\n" in answer
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer


def test_after_101_bytes_are_spliced_both_ways_unchanged():
    harness = proxy()
    visitor, backend = upgraded(harness)
    visitor.send(FRAME)
    assert backend.received() == FRAME
    backend.send(b"\x81\x02{}" * 3)
    assert visitor.received() == b"\x81\x02{}" * 3
    # Even bytes that look like HTTP are just bytes now.
    visitor.send(b"GET / HTTP/1.1\r\n\r\n")
    assert backend.received() == b"GET / HTTP/1.1\r\n\r\n"


def test_frames_sent_right_behind_the_handshake_are_not_lost():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(UPGRADE)
    backend = harness.accept()
    backend.received()
    visitor.send(FRAME)  # the visitor did not wait for the 101
    backend.send(SWITCHING + b"\x81\x01!")
    answer = visitor.received()
    assert answer.startswith(b"HTTP/1.1 101 ") and answer.endswith(b"\r\n\r\n\x81\x01!")
    assert backend.received() == FRAME


def test_either_side_closing_closes_the_other():
    harness = proxy()
    visitor, backend = upgraded(harness)
    visitor.close()
    assert not backend.open
    visitor, backend = upgraded(harness)
    backend.close()
    assert not visitor.open


def test_websocket_frames_in_either_direction_count_as_route_activity():
    harness = proxy()
    visitor, backend = upgraded(harness)
    start = harness.routes.last_activity("/user/a")
    harness.reactor.advance(300)
    visitor.send(FRAME)
    assert harness.routes.last_activity("/user/a") == start + 300
    harness.reactor.advance(300)
    backend.send(FRAME)
    assert harness.routes.last_activity("/user/a") == start + 600


def test_an_idle_websocket_is_not_cut_by_the_http_idle_timeout():
    harness = proxy(idle_timeout=60)
    visitor, backend = upgraded(harness)
    harness.reactor.advance(3600)
    assert visitor.open and backend.open


def test_a_websocket_idle_timeout_can_be_set():
    harness = proxy(websocket_idle_timeout=600)
    visitor, backend = upgraded(harness)
    harness.reactor.advance(599)
    visitor.send(FRAME)
    harness.reactor.advance(599)
    assert visitor.open
    harness.reactor.advance(1)
    assert not visitor.open and not backend.open


def test_a_spliced_slow_side_pauses_the_other():
    harness = proxy()
    visitor, backend = upgraded(harness)
    visitor.fill_buffer()
    assert backend.paused
    visitor.drain_buffer()
    assert not backend.paused
    backend.fill_buffer()
    assert visitor.paused


def test_websockets_do_not_take_slots_of_the_http_pool():
    harness = proxy(max_backend_connections_per_target=1)
    upgraded(harness)
    upgraded(harness)
    visitor = harness.visit()
    visitor.send(b"GET /user/a/api/status HTTP/1.1\r\nHost: h\r\n\r\n")
    assert len(harness.attempts()) == 1  # connects at once: the pool is still empty


def test_an_upgrade_the_backend_declines_is_relayed_and_the_connection_closed():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(UPGRADE)
    backend = harness.accept()
    backend.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden")
    answer = visitor.received()
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n") and answer.endswith(b"forbidden")
    assert not visitor.open and not backend.open


def test_an_upgrade_to_a_missing_route_is_refused_cleanly():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(UPGRADE.replace(b"/user/a/", b"/user/gone/"))
    assert visitor.received().startswith(b"HTTP/1.1 404 ")
    assert not visitor.open
    assert harness.attempts() == []


def test_an_upgrade_to_a_dead_backend_is_refused_cleanly_and_leaks_nothing():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(UPGRADE)
    harness.refuse()
    assert visitor.received().startswith(b"HTTP/1.1 503 ")
    assert not visitor.open
    assert harness.factory.pool.stats() == {}
    assert harness.factory.connections == 0


def test_a_101_to_a_plain_request_is_a_bad_gateway():
    harness = proxy()
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.1\r\nHost: h\r\n\r\n")
    backend = harness.accept()
    backend.send(SWITCHING)
    assert visitor.received().startswith(b"HTTP/1.1 502 ")
    assert not backend.open

"""The orchestrator's twisted.web Site against slow and greedy clients (tmpnb/http/guard.py):
head and body deadlines, the body limit while reading, the idle timeout. Clock-driven."""

from __future__ import annotations

import io

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tmpnb.http.guard import RequestLimits, guard_site


class Recorder(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self.contents: list[object] = []
        self.pending: list = []

    def render_POST(self, request) -> bytes:
        self.contents.append(request.content)
        self.bodies.append(request.content.read())
        return b"ok"

    def render_GET(self, request):
        if request.path == b"/wait":
            self.pending.append(request)  # a visitor in line: answered later
            return NOT_DONE_YET
        return b"ok"


class Client:
    def __init__(self, site: Site) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        self.protocol = site.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def received(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    @property
    def open(self) -> bool:
        return not self.transport.disconnecting


def guarded(**limits) -> tuple[MemoryReactorClock, Recorder, Site]:
    clock = MemoryReactorClock()
    resource = Recorder()
    site = guard_site(Site(resource, reactor=clock), RequestLimits(**limits), clock)
    return clock, resource, site


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def test_a_head_dripped_a_byte_a_second_gets_408_at_its_deadline():
    clock, resource, site = guarded(head_timeout=10, idle_timeout=600)
    client = Client(site)
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"a" * 100
    for t in range(9):
        client.send(head[t : t + 1])
        clock.advance(1)
    assert client.open
    for t in range(9, 15):
        client.send(head[t : t + 1])
        clock.advance(1)
    assert not client.open
    assert status_of(client.received()) == 408


def test_a_connection_that_sends_nothing_closes_at_the_head_deadline_without_an_answer():
    clock, resource, site = guarded(head_timeout=5, idle_timeout=600)
    client = Client(site)
    clock.advance(5)
    assert not client.open
    assert client.received() == b""


def test_a_content_length_over_the_limit_gets_413_before_the_body_and_without_100_continue():
    clock, resource, site = guarded(max_body=4096)
    client = Client(site)
    client.send(b"POST /api/spawn HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 536870912\r\n\r\n")
    answer = client.received()
    assert status_of(answer) == 413 and b"100 Continue" not in answer
    assert not client.open
    client.send(b"x" * 65536)  # whatever still arrives is dropped
    assert resource.bodies == []


def test_a_chunked_body_is_refused_as_it_passes_the_limit_and_never_spooled():
    clock, resource, site = guarded(max_body=4096)
    client = Client(site)
    client.send(b"POST /api/spawn HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    client.send(b"800\r\n" + b"x" * 2048 + b"\r\n")
    assert client.open
    client.send(b"800\r\n" + b"x" * 2048 + b"\r\n")
    assert client.open  # 4096 bytes: at the limit, not past it
    client.send(b"1\r\nx\r\n0\r\n\r\n")
    assert status_of(client.received()) == 413
    assert resource.bodies == []


def test_a_body_within_the_limit_is_served_from_memory():
    clock, resource, site = guarded(max_body=4096)
    client = Client(site)
    client.send(b"POST /api/spawn HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert status_of(client.received()) == 200
    assert resource.bodies == [b"hello"]
    assert isinstance(resource.contents[0], io.BytesIO)  # twisted.web spools a chunked body to a file


def test_a_body_below_its_minimum_rate_gets_408_and_never_reaches_the_resource():
    clock, resource, site = guarded(body_timeout=10, body_min_rate=100)
    client = Client(site)
    client.send(b"POST /api/spawn HTTP/1.1\r\nHost: h\r\nContent-Length: 4000\r\n\r\n")
    for _ in range(25):  # 50 bytes a second: behind 10 s + 1 s per 100 bytes at t = 20 s
        client.send(b"x" * 50)
        clock.advance(1)
    assert not client.open
    assert status_of(client.received()) == 408
    assert resource.bodies == []


def test_a_body_at_its_minimum_rate_is_served():
    clock, resource, site = guarded(body_timeout=10, body_min_rate=100)
    client = Client(site)
    client.send(b"POST /api/spawn HTTP/1.1\r\nHost: h\r\nContent-Length: 3000\r\n\r\n")
    for _ in range(30):
        client.send(b"x" * 100)
        clock.advance(1)
    assert status_of(client.received()) == 200
    assert resource.bodies == [b"x" * 3000]


def test_a_long_answer_is_not_cut_and_keep_alive_idling_ends_at_the_idle_timeout():
    clock, resource, site = guarded(head_timeout=5, body_timeout=5, idle_timeout=30)
    client = Client(site)
    client.send(b"GET /wait HTTP/1.1\r\nHost: h\r\n\r\n")
    clock.advance(600)  # ten minutes in line
    assert client.open
    request = resource.pending.pop()
    request.write(b"served")
    request.finish()
    assert b"served" in client.received()
    clock.advance(29)
    assert client.open  # between requests: the idle timeout, not the head's
    client.send(b"GET / HTTP/1.1\r\n")  # the next head's clock starts at its first byte
    clock.advance(4.9)
    assert client.open
    clock.advance(0.2)
    assert status_of(client.received()) == 408

"""A real-socket smoke for raw bytes: the listeners as twistd runs them (QuietSite, strict),
on a loopback port, spoken to with a plain socket that sends exactly these bytes."""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.internet.task import Clock

from tmpnb.health import Health
from tmpnb.admin import AdminResource
from tmpnb.logs import QuietSite
from tmpnb.proxy.api import ProxyAPIResource
from tmpnb.proxy.routes import RouteTable
from tests.builders import build_pool

TOKEN = "raw-s3cret"


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        # No half-close: twisted.web would take it for the client leaving. The server closes.
        conn.sendall(raw.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n", 1))
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


CASES = [
    (b"GET /api/routes HTTP/1.1\r\nHost: x\r\nAuthorization: token \xff\xfe\x80\r\n\r\n", b" 403 "),
    (b"GET /api/routes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n", b" 403 "),
    (b"GET /api/routes HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x1b[2Jb\r\n\r\n", b" 400 "),
    (b"GET /api/routes/%2e%2e/%00 HTTP/1.1\r\nHost: x\r\n\r\n", b" 400 "),
    (b"GET /api/routes HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b" 400 "),
    (b"GET /api/routes HTTP/1.1\r\nHost: x\r\nAuthorization: token " + TOKEN.encode() + b"\r\n\r\n", b" 200 "),
]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("kind", ["proxy api", "node admin"])
async def test_raw_bytes_over_a_real_socket_get_the_right_4xx(kind):
    from twisted.internet import reactor

    if kind == "proxy api":
        resource = ProxyAPIResource(RouteTable(Clock()), TOKEN, unix_root="/run/tmpnb")
        cases = CASES
    else:
        resource = AdminResource(build_pool().pool, Health(Clock()), TOKEN)
        cases = [(raw.replace(b"/api/routes", b"/api/containers"), want) for raw, want in CASES]
    site = QuietSite(resource, reactor=reactor, name=kind)
    site.displayTracebacks = False
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    try:
        for raw, wanted in cases:
            answer = await deferToThread(exchange, port.getHost().port, raw)
            assert answer.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1" + wanted), (raw, answer[:200])
            assert b"Traceback" not in answer
    finally:
        await port.stopListening()

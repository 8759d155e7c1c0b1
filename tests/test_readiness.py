"""Readiness without a container: a small in-memory Jupyter status endpoint served through
treq's StubTreq, reactor time from a Clock, and the real unix-socket Agent on a
MemoryReactorClock to check where requests go and what a refused connection does.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import TimeoutError
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.results import failed, pending, succeeded
from tmpnb.readiness import (
    NotReady,
    ReadinessTimeout,
    server_status,
    status_url,
    wait_ready,
)


STATUS = {
    "started": "2026-11-22T01:00:00.000000Z",
    "last_activity": "2026-11-22T01:00:02.000000Z",
    "connections": 0,
    "kernels": 0,
}


class JupyterStatus(Resource):
    """GET <base>api/status as jupyter_server answers it: 403 without the token, and
    (here) 503 for the first `starting` requests, as a server that is still coming up."""

    isLeaf = True

    def __init__(self, base_path: str, token: str, starting: int = 0) -> None:
        super().__init__()
        self.path = (base_path + "api/status").encode()
        self.token = token
        self.starting = starting
        self.requests = 0
        self.hang = False

    def render_GET(self, request: Any) -> bytes | int:  # noqa: N802
        self.requests += 1
        if self.hang:
            return NOT_DONE_YET
        if request.path != self.path:
            request.setResponseCode(404)
            return b"not found"
        if request.getHeader("authorization") != f"token {self.token}":
            request.setResponseCode(403)
            return b'{"message": "Forbidden"}'
        if self.requests <= self.starting:
            request.setResponseCode(503)
            return b"starting"
        request.setHeader("content-type", "application/json")
        return json.dumps(STATUS).encode()


def test_status_url_joins_the_base_path():
    assert status_url("/user/abc/") == "http://localhost/user/abc/api/status"


def test_server_status_asks_with_the_token_and_returns_the_json():
    stub = StubTreq(JupyterStatus("/user/abc/", "secret"))

    d = server_status(Clock(), "/unused.sock", "/user/abc/", "secret", client=stub)
    stub.flush()

    assert succeeded(d) == STATUS


def test_server_status_with_a_wrong_token_is_not_ready_403():
    stub = StubTreq(JupyterStatus("/user/abc/", "secret"))

    d = server_status(Clock(), "/unused.sock", "/user/abc/", "wrong", client=stub)
    stub.flush()

    assert failed(d, NotReady).value.code == 403


def test_wait_ready_polls_every_interval_until_the_server_answers(clock: Clock):
    server = JupyterStatus("/user/abc/", "secret", starting=3)
    stub = StubTreq(server)

    d = wait_ready(clock, "/unused.sock", "/user/abc/", "secret", timeout=10, interval=0.5, client=stub)
    stub.flush()
    for _ in range(3):
        pending(d)
        clock.advance(0.5)
        stub.flush()

    assert succeeded(d) == STATUS
    assert server.requests == 4
    assert clock.seconds() == 1.5


def test_wait_ready_gives_up_at_the_timeout_with_the_last_error(clock: Clock):
    stub = StubTreq(JupyterStatus("/user/abc/", "secret", starting=10**6))

    d = wait_ready(clock, "/x.sock", "/user/abc/", "secret", timeout=2, interval=0.5, client=stub)
    for _ in range(3):
        stub.flush()
        clock.advance(0.5)
    stub.flush()
    pending(d)
    clock.advance(0.5)
    stub.flush()

    error = failed(d, ReadinessTimeout).value
    assert isinstance(error.last_error, NotReady)
    assert error.last_error.code == 503
    assert "/x.sock" in str(error)


def test_a_server_that_never_answers_cannot_hold_wait_ready_past_its_timeout(clock: Clock):
    server = JupyterStatus("/user/abc/", "secret")
    server.hang = True
    stub = StubTreq(server)

    d = wait_ready(clock, "/x.sock", "/user/abc/", "secret", timeout=5, interval=0.1, client=stub)
    stub.flush()
    clock.advance(4.9)
    pending(d)
    clock.advance(0.1)
    stub.flush()

    error = failed(d, ReadinessTimeout).value
    assert isinstance(error.last_error, TimeoutError)
    assert server.requests == 1


def test_cancelling_wait_ready_stops_the_polling(clock: Clock):
    server = JupyterStatus("/user/abc/", "secret", starting=10**6)
    stub = StubTreq(server)

    d = wait_ready(clock, "/x.sock", "/user/abc/", "secret", timeout=10, interval=0.5, client=stub)
    stub.flush()
    d.cancel()
    failed(d)
    clock.advance(5)
    stub.flush()

    assert server.requests == 1
    assert clock.getDelayedCalls() == []


def test_cancelling_wait_ready_during_a_request_stops_the_polling(clock: Clock):
    server = JupyterStatus("/user/abc/", "secret")
    server.hang = True
    stub = StubTreq(server)

    d = wait_ready(clock, "/x.sock", "/user/abc/", "secret", timeout=10, interval=0.5, client=stub)
    stub.flush()
    d.cancel()
    failed(d)
    clock.advance(5)
    stub.flush()

    assert server.requests == 1


# -- the real unix-socket Agent, on a memory reactor --------------------------------------


def test_requests_go_to_the_unix_socket_and_a_refused_connection_is_retried():
    reactor = MemoryReactorClock()

    d = wait_ready(reactor, "/run/tmpnb/x/abc/jupyter.sock", "/user/abc/", "t", timeout=1, interval=0.25)

    [(path, factory, timeout, check_pid)] = reactor.unixClients
    assert path == "/run/tmpnb/x/abc/jupyter.sock"
    # The socket is not there yet: the server has not created it.
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError("no socket")))
    pending(d)
    reactor.advance(0.25)
    assert len(reactor.unixClients) == 2  # asked again after `interval`

    for _ in range(3):
        reactor.unixClients[-1][1].clientConnectionFailed(
            None, Failure(ConnectionRefusedError("no socket"))
        )
        reactor.advance(0.25)

    error = failed(d, ReadinessTimeout).value
    assert isinstance(error.last_error, ConnectionRefusedError)


@pytest.mark.parametrize("token", ["", "secret"])
def test_no_authorization_header_without_a_token(token):
    seen: list[bytes | None] = []

    class Recorder(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:  # noqa: N802
            seen.append(request.getHeader("authorization"))
            return b"{}"

    stub = StubTreq(Recorder())
    d = server_status(Clock(), "/x.sock", "/user/abc/", token, client=stub)
    stub.flush()
    succeeded(d)

    assert seen == [f"token {token}" if token else None]


class LandingPage(JupyterStatus):
    """api/status as above, and the landing page, which records who asked for it."""

    def __init__(self, base_path: str, token: str, page_code: int = 200) -> None:
        super().__init__(base_path, token)
        self.rendered: list[bytes] = []
        self.page_code = page_code

    def render_GET(self, request: Any) -> bytes | int:  # noqa: N802
        if request.path.endswith(b"/tree"):
            self.rendered.append(request.uri)
            request.setResponseCode(self.page_code)
            return b"<html>the tree</html>"
        return super().render_GET(request)


def test_with_warm_the_server_renders_the_landing_page_once_as_its_visitor_will_ask():
    server = LandingPage("/user/abc/", "secret")
    stub = StubTreq(server)

    d = wait_ready(Clock(), "/unused.sock", "/user/abc/", "secret", 10.0, 0.1, client=stub, warm="tree")
    stub.flush()

    assert succeeded(d) == STATUS
    assert server.rendered == [b"/user/abc/tree?token=secret"]


def test_a_landing_page_that_fails_to_render_does_not_make_the_server_unready():
    server = LandingPage("/user/abc/", "secret", page_code=500)
    stub = StubTreq(server)

    d = wait_ready(Clock(), "/unused.sock", "/user/abc/", "secret", 10.0, 0.1, client=stub, warm="tree")
    stub.flush()

    assert succeeded(d) == STATUS
    assert len(server.rendered) == 1


def test_without_warm_no_page_is_rendered():
    server = LandingPage("/user/abc/", "secret")
    stub = StubTreq(server)

    d = wait_ready(Clock(), "/unused.sock", "/user/abc/", "secret", 10.0, 0.1, client=stub)
    stub.flush()

    assert succeeded(d) == STATUS
    assert server.rendered == []

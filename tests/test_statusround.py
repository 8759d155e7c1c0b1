"""Status rounds (tmpnb/statusround.py): many servers asked for their api/status at once over
real unix sockets, the answers read every tick of a Clock.

The servers here are plain listening sockets the test answers by hand, so each test says
exactly what a server does and when: accept, read the request, answer, close, or stay silent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from tests.results import failed, pending, succeeded
from tmpnb import readiness
from tmpnb.statusround import (
    MAX_STATUS_BYTES,
    TICK,
    TIMEOUT,
    NotReady,
    StatusAnswers,
    StatusAsk,
    StatusRounds,
    StatusTooLarge,
    status_request,
)


STATUS = {"started": "2026-11-22T01:00:00Z", "last_activity": "2026-11-22T01:00:02Z", "kernels": 0}


def ok(status: dict) -> bytes:
    body = json.dumps(status).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Server:
    """A notebook server's socket, answered by the test."""

    def __init__(self, directory: str, name: str, backlog: int = 16) -> None:
        self.path = os.path.join(directory, name + ".sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(backlog)
        self.listener.setblocking(False)
        self.ask = StatusAsk(name, self.path, f"/user/{name}/", f"token-{name}")
        self.connections: list[socket.socket] = []  # held open: a silent server stays silent

    def accept(self) -> socket.socket | None:
        """The next connection made to this server, with its request read; None if none."""
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return None
        self.connections.append(conn)
        conn.settimeout(1)
        request = conn.recv(4096)
        assert request == status_request(self.ask.base_path, self.ask.token)
        return conn

    def answer(self, raw: bytes, close: bool = True) -> socket.socket:
        conn = self.accept()
        assert conn is not None, "nobody asked"
        conn.sendall(raw)
        if close:
            conn.close()
        return conn

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.listener.close()


@pytest.fixture
def directory() -> Iterator[str]:
    # Short: a unix socket path has room for about a hundred bytes.
    path = tempfile.mkdtemp(prefix="sr-", dir="/tmp")
    yield path
    shutil.rmtree(path)


@pytest.fixture
def servers(directory: str) -> Iterator[list[Server]]:
    made = [Server(directory, name) for name in ("a", "b", "c", "d", "e")]
    yield made
    for server in made:
        server.close()


def answers_after_a_tick(clock: Clock, d: Deferred[StatusAnswers]) -> StatusAnswers:
    clock.advance(TICK)
    return succeeded(d)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_every_server_is_asked_once_with_its_token_and_the_answers_come_by_key(servers: list[Server], clock: Clock) -> None:
    a, b = servers[:2]
    d = StatusRounds(clock).ask([a.ask, b.ask])  # the requests go out at once
    a.answer(ok(STATUS))
    b.answer(ok(dict(STATUS, kernels=2)))
    pending(d)  # answers are read at the next tick, together
    assert answers_after_a_tick(clock, d) == {"a": STATUS, "b": dict(STATUS, kernels=2)}


def test_an_answer_is_complete_when_the_server_closes(servers: list[Server], clock: Clock) -> None:
    a = servers[0]
    d = StatusRounds(clock).ask([a.ask])
    conn = a.answer(ok(STATUS), close=False)
    clock.advance(TICK)
    pending(d)
    conn.close()
    assert answers_after_a_tick(clock, d) == {"a": STATUS}


def test_an_answer_other_than_200_is_not_ready_with_its_code(servers: list[Server], clock: Clock) -> None:
    a = servers[0]
    d = StatusRounds(clock).ask([a.ask])
    a.answer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nForbidden")
    answer = answers_after_a_tick(clock, d)["a"]
    assert isinstance(answer, NotReady) and answer.code == 403


def test_a_server_without_a_socket_or_not_listening_answers_its_error_at_once(directory: str) -> None:
    gone = Server(directory, "gone")
    gone.close()  # the socket file stays, nobody listens: refused
    missing = StatusAsk("missing", os.path.join(directory, "nothing.sock"), "/user/missing/", "t")
    d = StatusRounds(Clock()).ask([gone.ask, missing])
    answers = succeeded(d)  # nothing was sent: no tick needed
    assert isinstance(answers["gone"], ConnectionRefusedError)
    assert isinstance(answers["missing"], FileNotFoundError)


def test_a_silent_server_times_out_and_the_others_are_answered_meanwhile(servers: list[Server], clock: Clock) -> None:
    silent, talking = servers[:2]
    d = StatusRounds(clock).ask([silent.ask, talking.ask])
    assert silent.accept() is not None  # it reads the request and never answers
    talking.answer(ok(STATUS))
    clock.advance(TICK)
    pending(d)
    clock.pump([TICK] * int(TIMEOUT / TICK))
    answers = succeeded(d)
    assert answers["b"] == STATUS
    assert isinstance(answers["a"], TimeoutError)


def test_at_most_in_flight_servers_are_asked_at_once_and_each_is_timed_from_its_own_request(
    servers: list[Server],
) -> None:
    clock = Clock()
    d = StatusRounds(clock, in_flight=2).ask([s.ask for s in servers])
    asked = [s for s in servers if s.accept() is not None]
    assert [s.ask.key for s in asked] == ["a", "b"]
    clock.advance(TIMEOUT)  # both stay silent: their time is up, two more are asked
    asked = [s for s in servers if s.accept() is not None]
    assert [s.ask.key for s in asked] == ["c", "d"]
    clock.advance(TIMEOUT - TICK)  # c and d were asked TIMEOUT - TICK ago: still waiting
    pending(d)
    servers[4].listener.close()  # e will be refused once its turn comes
    clock.advance(TICK)
    answers = succeeded(d)
    assert {key: type(answer) for key, answer in answers.items()} == {
        "a": TimeoutError, "b": TimeoutError, "c": TimeoutError, "d": TimeoutError, "e": ConnectionRefusedError,
    }


def test_a_full_backlog_is_tried_again_at_the_next_tick(directory: str, clock: Clock) -> None:
    busy = Server(directory, "busy", backlog=0)  # Linux keeps one connection waiting, no more
    asks = [StatusAsk(key, busy.path, busy.ask.base_path, busy.ask.token) for key in ("x", "y", "z")]
    d = StatusRounds(clock).ask(asks)
    for _ in asks:
        clock.advance(TICK)
        busy.answer(ok(STATUS))
    clock.advance(TICK)
    assert succeeded(d) == {"x": STATUS, "y": STATUS, "z": STATUS}
    busy.close()


def test_a_backlog_full_for_the_whole_timeout_is_a_timeout(directory: str, clock: Clock) -> None:
    busy = Server(directory, "busy", backlog=0)
    asks = [StatusAsk(key, busy.path, busy.ask.base_path, busy.ask.token) for key in ("x", "y")]
    d = StatusRounds(clock).ask(asks)  # x takes the one waiting place, y is refused
    clock.pump([TICK] * int(TIMEOUT / TICK + 1))  # nobody ever accepts
    answers = succeeded(d)
    assert isinstance(answers["x"], TimeoutError) and isinstance(answers["y"], TimeoutError)
    busy.close()


def test_an_answer_larger_than_any_status_is_refused(servers: list[Server], clock: Clock) -> None:
    a = servers[0]
    d = StatusRounds(clock).ask([a.ask])
    conn = a.answer(b"HTTP/1.1 200 OK\r\n\r\n", close=False)
    conn.setblocking(False)
    try:
        conn.sendall(b"x" * (MAX_STATUS_BYTES + 1))
    except BlockingIOError:
        pass  # the socket buffer is full: more than enough has gone out
    clock.advance(TICK)
    assert isinstance(succeeded(d)["a"], StatusTooLarge)
    conn.close()


def test_a_round_leaves_no_file_descriptor_open(servers: list[Server], clock: Clock) -> None:
    before = open_fds()
    d = StatusRounds(clock).ask([s.ask for s in servers])
    for server in servers:
        server.answer(ok(STATUS))
    answers_after_a_tick(clock, d)
    assert open_fds() == before


def test_cancelling_a_round_lets_go_of_every_socket(servers: list[Server], clock: Clock) -> None:
    a = servers[0]
    before = open_fds()
    d = StatusRounds(clock).ask([a.ask])
    conn = a.accept()
    d.cancel()
    failed(d, CancelledError)
    assert conn.recv(10) == b""  # the round closed its end
    conn.close()
    assert open_fds() == before
    assert clock.getDelayedCalls() == []


def test_server_status_is_a_round_of_one(servers: list[Server], clock: Clock) -> None:
    a = servers[0]
    d = readiness.server_status(clock, a.path, a.ask.base_path, a.ask.token)
    a.answer(ok(STATUS))
    clock.advance(TICK)
    assert succeeded(d) == STATUS


def test_server_status_fails_with_the_servers_error(servers: list[Server], clock: Clock) -> None:
    a = servers[0]
    d = readiness.server_status(clock, a.path, a.ask.base_path, a.ask.token)
    a.answer(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    clock.advance(TICK)
    assert failed(d, NotReady).value.code == 503


def test_the_request_is_http_1_0_with_the_token_and_without_one_when_there_is_none() -> None:
    assert status_request("/user/abc/", "secret") == (
        b"GET /user/abc/api/status HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n"
        b"Authorization: token secret\r\n\r\n"
    )
    assert b"Authorization" not in status_request("/user/abc/", "")

"""Ask many notebook servers for their `api/status` at once, for little reactor time.

The heartbeat asks every handed-out server once a period: hundreds of small exchanges.
Through the reactor each one is a connect, an answer and a close, each its own wake-up of
the reactor thread, and with servers that answer a millisecond apart hardly any two share
one: ≈0.3 ms of reactor CPU per server on this machine, most of it the wake-ups themselves
(measured against 40 real containers: the same exchange on a kept-alive connection still
cost ≈0.18 ms).

A round here sends the requests on non-blocking unix sockets the reactor never sees, keeps
them in a private epoll set, and every `tick` seconds reads whatever has arrived in one go:
a handful of wake-ups per heartbeat instead of three per server. The exchange is the one
`tmpnb.readiness.server_status` makes (HTTP/1.0, the server closes after its answer), so
nothing stays open to a server that is culled afterwards.

The sockets are plain, non-blocking, and only ever touched from the reactor thread: a tick
runs `epoll.poll(0)` and `recv` calls that never wait.
"""

from __future__ import annotations

import json
import select
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

# A status answer is small; a container's user controls what answers on its socket.
MAX_STATUS_BYTES = 64 * 1024

# Between two looks at the answers. Short against the 5 s a server may take, long against
# the ≈1 ms one takes to answer: a tick reads many answers.
TICK = 0.02
# Servers asked at once. Every request wakes its server; all of them at once would be a
# burst of work for the machine's cores (that visitors share), a few dozen is not.
IN_FLIGHT = 32
# A server that has not answered this long after its request was sent is taken as silent.
TIMEOUT = 5.0

_READ = select.EPOLLIN | select.EPOLLRDHUP
_WRITE = select.EPOLLOUT


class NotReady(Exception):
    """The server answered, but not 200 (e.g. 503 while starting, 403 for a wrong token)."""

    def __init__(self, code: int, body: bytes) -> None:
        super().__init__(f"HTTP {code}: {body[:200]!r}")
        self.code = code


class StatusTooLarge(Exception):
    """The answer on the socket was larger than any api/status answer."""


def status_request(base_path: str, token: str) -> bytes:
    """`GET <base_path>api/status` as one HTTP/1.0 request: the server closes after answering,
    so the answer needs no framing and nothing stays open."""
    lines = [f"GET {base_path.rstrip('/')}/api/status HTTP/1.0", "Host: localhost", "Connection: close"]
    if token:
        lines.append(f"Authorization: token {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_status(raw: bytes) -> dict[str, Any]:
    """The JSON of a 200 answer; NotReady with the code otherwise."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or not status_line[1].isdigit():
        raise NotReady(0, raw)
    code = int(status_line[1])
    if code != 200:
        raise NotReady(code, body)
    return json.loads(body)


@dataclass(frozen=True)
class StatusAsk:
    """One server to ask: `key` names it in the answers (the pool uses container ids)."""

    key: str
    socket_path: str
    base_path: str
    token: str


# What a round answers for each key: the server's status JSON, or why there is none.
StatusAnswers = dict[str, "dict[str, Any] | Exception"]


class StatusRounds:
    """Asks servers for their status in rounds: `ask(asks)` fires with every answer."""

    def __init__(
        self, clock: IReactorTime, *, tick: float = TICK, in_flight: int = IN_FLIGHT, timeout: float = TIMEOUT
    ) -> None:
        self._clock = clock
        self._tick = tick
        self._in_flight = in_flight
        self._timeout = timeout

    def ask(self, asks: Sequence[StatusAsk]) -> Deferred[StatusAnswers]:
        """Ask every server in `asks`; fires with an answer (or an exception) for each key.
        It never fails; cancelling it closes every socket still open."""
        return _Round(self._clock, asks, self._tick, self._in_flight, self._timeout).start()


@dataclass
class _Exchange:
    ask: StatusAsk
    sock: socket.socket
    deadline: float
    outgoing: bytes
    received: list[bytes] = field(default_factory=list)
    size: int = 0


class _Round:
    def __init__(self, clock: IReactorTime, asks: Sequence[StatusAsk], tick: float, in_flight: int, timeout: float):
        self._clock = clock
        self._tick = tick
        self._in_flight = in_flight
        self._timeout = timeout
        self._waiting = deque(asks)
        self._refused_since: dict[str, float] = {}  # asks whose server's backlog was full
        self._open: dict[int, _Exchange] = {}
        self._answers: StatusAnswers = {}
        self._epoll = select.epoll()
        self._next: IDelayedCall | None = None
        self._done: Deferred[StatusAnswers] = Deferred(self._cancel)

    def start(self) -> Deferred[StatusAnswers]:
        self._step()
        return self._done

    def _step(self) -> None:
        """Read what has arrived, give up on the late, send more; then wait or finish."""
        self._next = None
        try:
            for fd, events in self._epoll.poll(0):
                self._ready(self._open[fd], events)
            now = self._clock.seconds()
            for exchange in [e for e in self._open.values() if now >= e.deadline]:
                self._close(exchange, TimeoutError(f"no status within {self._timeout}s"))
            self._send_more(now)
        except Exception as e:  # a bug here must not leave the heartbeat waiting forever
            log.failure("asking servers for their status")
            self._finish_all(e)
        if self._open or self._waiting:
            self._next = self._clock.callLater(self._tick, self._step)
        else:
            self._epoll.close()
            self._done.callback(self._answers)

    def _send_more(self, now: float) -> None:
        retry = []
        while self._waiting and len(self._open) < self._in_flight:
            ask = self._waiting.popleft()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            try:
                sock.connect(ask.socket_path)
            except BlockingIOError:
                # The server's backlog is full: a unix connect is not left in progress,
                # it has to be tried again (next tick), within the ask's time.
                sock.close()
                since = self._refused_since.setdefault(ask.key, now)
                if now - since >= self._timeout:
                    self._answers[ask.key] = TimeoutError(f"backlog full for {self._timeout}s")
                else:
                    retry.append(ask)
                continue
            except OSError as e:
                sock.close()
                self._answers[ask.key] = e
                continue
            exchange = _Exchange(ask, sock, now + self._timeout, status_request(ask.base_path, ask.token))
            self._open[sock.fileno()] = exchange
            if self._send(exchange):
                self._epoll.register(sock.fileno(), _READ | (_WRITE if exchange.outgoing else 0))
        self._waiting.extend(retry)

    def _ready(self, exchange: _Exchange, events: int) -> None:
        if exchange.outgoing and events & _WRITE:
            if not self._send(exchange):
                return
            if not exchange.outgoing:
                self._epoll.modify(exchange.sock.fileno(), _READ)
        if events & (_READ | select.EPOLLHUP | select.EPOLLERR):
            self._receive(exchange)

    def _send(self, exchange: _Exchange) -> bool:
        """Send what is left of the request; False when that closed the exchange."""
        try:
            sent = exchange.sock.send(exchange.outgoing)
        except BlockingIOError:
            return True
        except OSError as e:
            self._close(exchange, e)
            return False
        exchange.outgoing = exchange.outgoing[sent:]
        return True

    def _receive(self, exchange: _Exchange) -> None:
        while True:
            try:
                chunk = exchange.sock.recv(MAX_STATUS_BYTES + 1)
            except BlockingIOError:
                return
            except OSError as e:
                self._close(exchange, e)
                return
            if not chunk:  # the server closed: its answer is complete
                try:
                    self._close(exchange, parse_status(b"".join(exchange.received)))
                except Exception as e:
                    self._close(exchange, e)
                return
            exchange.size += len(chunk)
            if exchange.size > MAX_STATUS_BYTES:  # a container's user controls what answers
                self._close(exchange, StatusTooLarge(f"more than {MAX_STATUS_BYTES} bytes"))
                return
            exchange.received.append(chunk)

    def _close(self, exchange: _Exchange, answer: dict[str, Any] | Exception) -> None:
        # Closing the socket takes it out of the epoll set too (if it was ever in it).
        del self._open[exchange.sock.fileno()]
        exchange.sock.close()
        self._answers[exchange.ask.key] = answer

    def _finish_all(self, cause: Exception) -> None:
        for exchange in list(self._open.values()):
            self._close(exchange, cause)
        while self._waiting:
            self._answers[self._waiting.popleft().key] = cause

    def _cancel(self, done: Deferred[StatusAnswers]) -> None:
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self._finish_all(CancelledError())
        self._epoll.close()
        done.errback(CancelledError())


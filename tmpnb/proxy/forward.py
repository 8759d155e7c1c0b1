"""Connections to backends: a bounded keep-alive pool per target.

A `BackendConnection` is a thin protocol: it hands the bytes it receives to whichever
exchange holds it (`handler`), and tells the pool when it closes. The exchange logic
(request/response framing) lives with the visitor's side, in `server.py` and `response.py`.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmpnb.logs import connect_quietly

from .targets import ClientTLS, Target
from .websocket import Throttle

log = Logger()


class BackendHandler(TypingProtocol):
    def backendDataReceived(self, data: bytes) -> None: ...

    def backendConnectionLost(self, reason: Failure) -> None: ...


class PoolTimeout(ConnectError):
    """No backend connection became free within the connect timeout."""


def set_no_delay(transport) -> None:
    """Turn Nagle off where the transport is TCP (unix sockets have no such option)."""
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is not None:
        try:
            setter(True)
        except OSError:
            pass


class BackendConnection(Protocol):
    def __init__(self, pool: BackendPool | None, target: Target) -> None:
        self.pool = pool  # None for a dedicated (upgrade) connection
        self.target = target
        self.handler: BackendHandler | None = None
        self.reused = False  # True once it served an exchange: a failure may be a stale close
        self.idle_since = 0.0
        self.idle_call = None
        self.lost = False

    def connectionMade(self) -> None:
        set_no_delay(self.transport)
        self.throttle = Throttle(self.transport)  # registered on the visitor's transport

    def dataReceived(self, data: bytes) -> None:
        handler = self.handler
        if handler is None:
            # An idle backend must not talk: whatever it is, it cannot be reused.
            log.warn("unsolicited {n} bytes from idle backend {target}", n=len(data), target=self.target.url)
            self.transport.loseConnection()
            return
        handler.backendDataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:
        self.lost = True
        handler, self.handler = self.handler, None
        if self.pool is not None:
            self.pool._lost(self)
        if handler is not None:
            handler.backendConnectionLost(reason)


class _TargetPool:
    __slots__ = ("idle", "total", "waiters")

    def __init__(self) -> None:
        self.idle: list[BackendConnection] = []
        self.total = 0  # idle + busy + connecting
        self.waiters: deque[Deferred] = deque()


class BackendPool:
    """At most `max_per_target` connections per target; idle ones close after `idle_timeout`."""

    def __init__(
        self,
        reactor: IReactorTime,
        connect_timeout: float,
        max_per_target: int,
        idle_timeout: float,
        client_tls: ClientTLS | None = None,
    ) -> None:
        self._reactor = reactor
        self._client_tls = client_tls  # for https targets
        self._connect_timeout = connect_timeout
        self._max = max_per_target
        self._idle_timeout = idle_timeout
        self._pools: dict[str, _TargetPool] = {}

    def stats(self) -> dict[str, dict[str, int]]:
        return {url: {"idle": len(p.idle), "total": p.total, "waiting": len(p.waiters)} for url, p in self._pools.items()}

    def take_idle(self, target: Target) -> BackendConnection | None:
        """An idle connection to `target` if there is one: the hot path, with no Deferred."""
        pool = self._pools.get(target.url)
        if pool is not None:
            while pool.idle:
                conn = pool.idle.pop()  # most recently used: least likely to have been closed
                if not conn.lost:
                    return conn
        return None

    def acquire(self, target: Target) -> Deferred[BackendConnection]:
        """A connection to `target`: idle, new, or the next one freed (within the timeout)."""
        conn = self.take_idle(target)
        if conn is not None:
            return succeed(conn)
        pool = self._pools.get(target.url)
        if pool is None:
            pool = self._pools[target.url] = _TargetPool()
        if pool.total < self._max:
            pool.total += 1
            return self._connect(target, pool)
        return self._wait(target, pool)

    def connect_dedicated(self, target: Target) -> Deferred[BackendConnection]:
        """A connection outside the pool's bound, for a WebSocket that will hold it for long."""
        try:
            endpoint = target.endpoint(self._reactor, self._connect_timeout, self._client_tls)
        except Exception:
            return fail()
        return connect_quietly(endpoint, BackendConnection(None, target))

    def release(self, conn: BackendConnection, reusable: bool) -> None:
        conn.handler = None
        if conn.pool is None:
            conn.transport.loseConnection()
            return
        pool = self._pools.get(conn.target.url)
        if conn.lost or pool is None:
            return
        if not reusable:
            conn.transport.loseConnection()  # _lost() does the accounting
            return
        conn.reused = True
        conn.transport.resumeProducing()  # it may have been paused by a slow visitor
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.called:
                waiter.callback(conn)
                return
        pool.idle.append(conn)
        conn.idle_since = self._reactor.seconds()
        if conn.idle_call is None:
            conn.idle_call = self._reactor.callLater(self._idle_timeout, self._check_idle, conn)

    def close_all(self) -> None:
        for pool in self._pools.values():
            for conn in list(pool.idle):
                conn.transport.loseConnection()

    def _connect(self, target: Target, pool: _TargetPool) -> Deferred[BackendConnection]:
        try:
            endpoint = target.endpoint(self._reactor, self._connect_timeout, self._client_tls)
        except Exception:
            pool.total -= 1
            return fail()
        d = connect_quietly(endpoint, BackendConnection(self, target))

        def failed(reason: Failure) -> Failure:
            pool.total -= 1
            self._serve_waiters(target, pool)
            self._forget_if_empty(target.url, pool)
            return reason

        d.addErrback(failed)
        return d

    def _wait(self, target: Target, pool: _TargetPool) -> Deferred[BackendConnection]:
        def cancel(d: Deferred) -> None:
            try:
                pool.waiters.remove(d)
            except ValueError:
                pass

        waiter: Deferred[BackendConnection] = Deferred(cancel)
        pool.waiters.append(waiter)
        timer = self._reactor.callLater(self._connect_timeout, self._waited_too_long, waiter)

        def done(result):
            if timer.active():
                timer.cancel()
            return result

        waiter.addBoth(done)
        return waiter

    def _waited_too_long(self, waiter: Deferred) -> None:
        if not waiter.called:
            waiter.errback(PoolTimeout("every backend connection stayed busy"))

    def _serve_waiters(self, target: Target, pool: _TargetPool) -> None:
        """A slot freed up: open a connection for the first visitor still waiting."""
        while pool.waiters and pool.total < self._max:
            waiter = pool.waiters.popleft()
            if waiter.called:
                continue
            pool.total += 1
            self._connect(target, pool).addCallbacks(self._deliver, self._deliver_failure, callbackArgs=(waiter,), errbackArgs=(waiter,))

    def _deliver(self, conn: BackendConnection, waiter: Deferred) -> None:
        if waiter.called:  # the visitor left or timed out meanwhile: keep the connection
            self.release(conn, True)
        else:
            waiter.callback(conn)

    def _deliver_failure(self, reason: Failure, waiter: Deferred) -> None:
        if not waiter.called:
            waiter.errback(reason)

    def _lost(self, conn: BackendConnection) -> None:
        pool = self._pools.get(conn.target.url)
        if pool is None:
            return
        pool.total -= 1
        try:
            pool.idle.remove(conn)
        except ValueError:
            pass
        if conn.idle_call is not None and conn.idle_call.active():
            conn.idle_call.cancel()
        conn.idle_call = None
        self._serve_waiters(conn.target, pool)
        self._forget_if_empty(conn.target.url, pool)

    def _forget_if_empty(self, url: str, pool: _TargetPool) -> None:
        if pool.total == 0 and not pool.waiters and self._pools.get(url) is pool:
            del self._pools[url]

    def _check_idle(self, conn: BackendConnection) -> None:
        """Lazy idle timer: one callLater per connection, re-armed only when it fires."""
        conn.idle_call = None
        if conn.lost or conn.handler is not None:
            return
        pool = self._pools.get(conn.target.url)
        if pool is None or conn not in pool.idle:
            return
        waited = self._reactor.seconds() - conn.idle_since
        if waited >= self._idle_timeout:
            conn.transport.loseConnection()
        else:
            conn.idle_call = self._reactor.callLater(self._idle_timeout - waited, self._check_idle, conn)

"""How long a visitor connection may stay silent or slow, and what happens then: one lazy
timer each.

The timer is re-armed for the nearest deadline when it fires, not reset on every packet: the
connection only notes the time of its traffic. Between requests a connection may idle
``idle_timeout``. A request head must be whole by its deadline (``head_timeout`` from its
start), and a request body must keep up its minimum rate (``body_timeout`` + bytes /
``body_min_rate``): a client sending a byte now and then is closed, not kept. During an
exchange nothing limits how long a backend may think unless asked, as in
configurable-http-proxy: ``timeout`` drops a visitor's connection silent that long in both
directions, ``proxy_timeout`` gives up on a backend silent that long. Responses and upgraded
connections have no deadline of their own.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime

from .phases import BUFFERING, CLOSED, CONNECTING, FORWARDING, READ_HEAD, SPLICED
from .settings import ProxySettings


class TimedConnection(Protocol):
    """What the timer reads of a visitor connection, and what it tells it."""

    phase: int
    last_traffic: float  # either direction on the visitor's connection
    backend_traffic: float  # either direction on the backend's, during an exchange
    head_deadline: float | None  # when the head under way must be whole; None between requests

    def body_deadline(self) -> float | None:
        """When the body under way falls below its minimum rate; None when none is being
        read, or the proxy itself is not reading it (a backend slow to take it)."""

    def head_timed_out(self) -> None:
        """Idle too long between requests, or a head too slow to arrive."""

    def body_timed_out(self) -> None:
        """A request body slower than its minimum rate."""

    def visitor_silent(self, idle: float) -> None:
        """``timeout``: nothing either way for that long during an exchange."""

    def backend_silent(self, silent: float) -> None:
        """``proxy_timeout``: the backend said nothing for that long."""

    def websocket_idle(self) -> None:
        """An upgraded connection silent past ``websocket_idle_timeout``."""


class Limits:
    """A proxy's limits, read once from its settings."""

    __slots__ = ("idle", "head", "timeout", "proxy_timeout", "exchange", "websocket", "head_deadline", "body", "body_rate")

    def __init__(self, settings: ProxySettings) -> None:
        self.idle = settings.idle_timeout
        self.head_deadline = settings.head_timeout  # a whole head, from its start
        self.body = settings.body_timeout
        self.body_rate = settings.body_min_rate
        self.timeout = settings.timeout
        self.proxy_timeout = settings.proxy_timeout
        # Between requests, --timeout applies too when it is the shorter.
        self.head = self.idle if self.timeout is None else min(self.idle, self.timeout)
        limits = [limit for limit in (self.timeout, self.proxy_timeout) if limit is not None]
        self.exchange = min(limits) if limits else None  # the shortest limit on an exchange
        self.websocket = settings.websocket_idle_timeout


class ConnectionTimer:
    __slots__ = ("_clock", "_limits", "_connection", "_call")

    def __init__(self, clock: IReactorTime, limits: Limits, connection: TimedConnection) -> None:
        self._clock = clock
        self._limits = limits
        self._connection = connection
        self._call: Any = None

    def start(self) -> None:
        self._call = self._clock.callLater(self._limits.idle, self._check)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def exchange_started(self) -> None:
        """Look again within the exchange's limit: the timer may be set for the longer idle one."""
        limit = self._limits.exchange
        if limit is None:
            return
        self.look_by(self._clock.seconds() + limit)

    def look_by(self, when: float | None) -> None:
        """Look again no later than `when` (a deadline just set): the timer may be set later."""
        if when is None:
            return
        call = self._call
        if call is not None and call.active() and call.getTime() > when:
            call.reset(max(when - self._clock.seconds(), 0.0))

    def _check(self) -> None:
        self._call = None
        connection = self._connection
        phase = connection.phase
        if phase == CLOSED:
            return
        limits = self._limits
        now = self._clock.seconds()
        wait = limits.idle  # outside an exchange's limits, look again this often
        if phase == SPLICED:
            if limits.websocket is None:
                return
            idle = now - connection.last_traffic
            if idle >= limits.websocket:
                connection.websocket_idle()
                return
            wait = limits.websocket - idle
        elif phase == READ_HEAD:
            idle = now - connection.last_traffic
            deadline = connection.head_deadline
            if idle >= limits.head or (deadline is not None and now >= deadline):
                connection.head_timed_out()
                return
            wait = limits.head - idle
            if deadline is not None:
                wait = min(wait, deadline - now)
        elif phase == BUFFERING:
            deadline = connection.body_deadline()
            if deadline is not None:
                if now >= deadline:
                    connection.body_timed_out()
                    return
                wait = deadline - now
        elif phase in (CONNECTING, FORWARDING):
            if limits.timeout is not None:
                idle = now - connection.last_traffic
                if idle >= limits.timeout:
                    connection.visitor_silent(idle)
                    return
                wait = limits.timeout - idle
            if phase == FORWARDING and limits.proxy_timeout is not None:
                silent = now - connection.backend_traffic
                if silent >= limits.proxy_timeout:
                    connection.backend_silent(silent)
                    return
                wait = min(wait, limits.proxy_timeout - silent)
            deadline = connection.body_deadline() if phase == FORWARDING else None
            if deadline is not None:
                if now >= deadline:
                    connection.body_timed_out()
                    return
                wait = min(wait, deadline - now)
        self._call = self._clock.callLater(wait, self._check)

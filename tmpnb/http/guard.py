"""Deadlines and a body limit for a twisted.web Site that strangers can reach (the orchestrator).

twisted.web's own defence is one idle timer (12 hours by default) that every byte restarts: a
client sending a byte of its head every few seconds holds its connection for ever, and a body
is read to its end, spooled to a temporary file past 100 kB, before any resource may refuse
it. Here, as at the proxy (tmpnb/proxy/timeouts.py):

- a request head must be whole within ``head_timeout`` (from the connection's start for its
  first request, from the head's first byte for later ones);
- a body must keep up ``body_timeout`` + bytes / ``body_min_rate`` from its start;
- a body larger than ``max_body`` gets 413 as soon as that is known: at once from its
  Content-Length, or as a chunked body's bytes pass the limit; it is kept in memory, never
  spooled to disk;
- a connection idle between requests closes after ``idle_timeout``.

Responses take as long as they take: a visitor waiting in line holds a request open.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Site

from tmpnb.http.strict import StrictHTTPChannel, StrictRequest

log = Logger()

_REASONS = {408: b"Request Timeout", 413: b"Content Too Large"}
_IDLE, _HEAD, _BODY, _HANDLING = range(4)


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Seconds, bytes per second and bytes; None: no such limit."""

    head_timeout: float | None = 20.0
    body_timeout: float | None = 20.0
    body_min_rate: float = 500.0
    max_body: int | None = 65536
    idle_timeout: float | None = 60.0


class GuardedRequest(StrictRequest):
    """A request whose body is counted by its channel as it comes, and kept in memory."""

    def gotLength(self, length: int | None) -> None:
        # The channel refuses a body over its limit before it grows: memory suffices.
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel.body_chunk(len(data)):
            self.content.write(data)


class GuardedChannel(StrictHTTPChannel):
    """HTTP/1.1 as twisted.web speaks it, strict about what it takes (tmpnb/http/strict.py), with
    the deadlines and limit of `RequestLimits`."""

    def __init__(self, limits: RequestLimits, clock: IReactorTime) -> None:
        super().__init__()
        self._limits = limits
        self._clock = clock
        self._stage = _IDLE
        self._head_deadline = 0.0
        self._head_bytes = False
        self._body_started = 0.0
        self._body_received = 0
        self._call: Any = None
        self._refused = False

    # -- where a request is

    def connectionMade(self) -> None:
        super().connectionMade()
        self._head_begins()  # a connection that sends nothing is no cheaper

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._stage == _IDLE and not self._handlingRequest:
            self._head_begins()
        if self._stage == _HEAD and data:
            self._head_bytes = True
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._disarm()
        limit = self._limits.max_body
        if limit is not None and self.length is not None and self.length > limit:
            # Said before a byte of the body is read (and before any 100 Continue).
            self._refuse(413)
            self.length = 0
            return
        super().allHeadersReceived()
        if self.length != 0:  # a Content-Length or chunked body follows
            self._stage = _BODY
            self._body_started = self._clock.seconds()
            self._body_received = 0
            self._arm(self._deadline())
        else:
            self._stage = _HANDLING

    def body_chunk(self, size: int) -> bool:
        """Count `size` more body bytes; False (and the connection refused) past the limit."""
        if self._refused:
            return False
        self._body_received += size
        limit = self._limits.max_body
        if limit is not None and self._body_received > limit:
            self._refuse(413)
            return False
        return True

    def allContentReceived(self) -> None:
        if self._refused:
            return  # the rest of a refused request's bytes arrived in the same read
        self._disarm()
        self._stage = _HANDLING
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        self._stage = _IDLE
        super().requestDone(request)

    def connectionLost(self, reason: Any) -> None:
        self._disarm()
        super().connectionLost(reason)

    # -- the deadlines: one lazy timer, re-armed for the nearest when it fires

    def _head_begins(self) -> None:
        self._stage = _HEAD
        self._head_bytes = False
        timeout = self._limits.head_timeout
        if timeout is not None:
            self._head_deadline = self._clock.seconds() + timeout
            self._arm(self._head_deadline)

    def _deadline(self) -> float | None:
        limits = self._limits
        if self._stage == _HEAD and limits.head_timeout is not None:
            return self._head_deadline
        if self._stage == _BODY and limits.body_timeout is not None:
            rate = limits.body_min_rate
            allowance = self._body_received / rate if rate > 0 else 0.0
            return self._body_started + limits.body_timeout + allowance
        return None

    def _arm(self, when: float | None) -> None:
        self._disarm()
        if when is not None:
            self._call = self._clock.callLater(max(when - self._clock.seconds(), 0.0), self._check)

    def _disarm(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _check(self) -> None:
        self._call = None
        deadline = self._deadline()
        if deadline is None or self._refused:
            return
        if self._clock.seconds() < deadline:
            self._arm(deadline)
            return
        if self._stage == _HEAD and not self._head_bytes:
            self.loseConnection()  # nothing asked, nothing to answer
            return
        self._refuse(408)

    def _refuse(self, status: int) -> None:
        log.debug("refused a request: {status}", status=status)
        self._refused = True
        self._disarm()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (status, _REASONS[status])
        )
        self.loseConnection()


def guard_site(site: Site, limits: RequestLimits, clock: IReactorTime) -> Site:
    """`site` with every connection held to `limits` (its idle timeout included); HTTP/1.1
    only, since the guards are HTTP/1.1's."""
    site.protocol = lambda: GuardedChannel(limits, clock)
    site.requestFactory = GuardedRequest
    site.timeOut = limits.idle_timeout
    return site

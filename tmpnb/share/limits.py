"""Counting requests per key in a sliding window (renders per client address per minute)."""

from __future__ import annotations

from collections import deque

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

MAX_KEYS = 100_000


class RateLimit:
    """At most `count` hits per key within `period` seconds."""

    def __init__(self, clock: IReactorTime, count: int, period: float) -> None:
        self._clock = clock
        self._count = count
        self._period = period
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Record a hit for `key` unless it is over the limit; whether it was allowed."""
        now = self._clock.seconds()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= MAX_KEYS:
                self._forget_old(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self._period:
            hits.popleft()
        if len(hits) >= self._count:
            return False
        hits.append(now)
        return True

    def _forget_old(self, now: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self._period]:
            del self._hits[key]


def client_address(request: Request) -> str:
    """The visitor's address: the peer, or the last X-Forwarded-For entry when the peer is
    tmpnb's own proxy (a unix socket or loopback)."""
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    if host is None or host in ("127.0.0.1", "::1") or host.startswith("127."):
        forwarded = request.getHeader(b"x-forwarded-for")
        if forwarded:
            return forwarded.decode("latin-1").split(",")[-1].strip()
    return host or "local"

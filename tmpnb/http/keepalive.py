"""Kept-alive client connections that let a burst's surplus go.

Twisted's HTTPConnectionPool hands out its cached connections oldest first. A client that
polls every second (the redirector polling its nodes, a node polling its proxy) then cycles
through every connection a burst once opened: none is ever idle for `cachedConnectionTimeout`,
and the server on the other side holds the burst's sockets for good (a CI run of the Nature
day found a node with two more open fds after the day than before it). This pool hands out
the most recently returned connection instead: steady traffic keeps one warm, the burst's
extras idle out.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import HTTPConnectionPool


class RecentFirstPool(HTTPConnectionPool):
    """An HTTPConnectionPool whose cached connections are reused newest first."""

    def getConnection(self, key: Hashable, endpoint: IStreamClientEndpoint) -> Deferred[Any]:
        # `_connections` (key → list, oldest first) is the list the base class pops from the
        # front; moving the newest to the front is the whole change.
        cached = self._connections.get(key)
        if cached:
            cached.insert(0, cached.pop())
        return super().getConnection(key, endpoint)

"""How many connections one client may hold open at the public listener, and which go first.

A client is its address as the socket shows it (an IPv6 /64 counts as one client: a single
host usually owns a whole /64, and could otherwise open connections from each of its
addresses). At its cap the client's oldest idle connection is shed (a keep-alive connection
between requests, or one that has not sent a byte yet); when none of its connections is
idle, the new one is refused. Active connections (a request under way, a WebSocket) are
never shed: the deadlines in timeouts.py bound the ones that only pretend to be busy.
"""

from __future__ import annotations

from typing import Protocol

from tmpnb.http.clientkey import client_key

__all__ = ["ClientConnection", "ClientConnections", "client_key"]


class ClientConnection(Protocol):
    """What the registry asks of a visitor connection."""

    @property
    def idle(self) -> bool:
        """No request under way: between requests, or nothing received yet."""

    def shed(self) -> None:
        """Close, to make room for a newer connection of the same client."""


class ClientConnections:
    """Every open visitor connection by client, oldest first; `cap` 0 means no cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._by_client: dict[str, dict[ClientConnection, None]] = {}  # dicts keep insertion order
        self.shed = 0  # idle connections closed to make room, counted for the metrics
        self.refused = 0  # new connections refused at the cap

    def admit(self, key: str, connection: ClientConnection) -> bool:
        """Count a new connection in, shedding the client's oldest idle one at the cap;
        False (and not counted) when the client is at its cap with none idle."""
        if not self.cap or not key:
            return True
        open_ = self._by_client.setdefault(key, {})
        if len(open_) >= self.cap:
            oldest_idle = next((c for c in open_ if c.idle), None)
            if oldest_idle is None:
                self.refused += 1
                return False
            del open_[oldest_idle]
            self.shed += 1
            oldest_idle.shed()
        open_[connection] = None
        return True

    def leave(self, key: str, connection: ClientConnection) -> None:
        open_ = self._by_client.get(key)
        if open_ is None:
            return
        open_.pop(connection, None)
        if not open_:
            del self._by_client[key]

    def count(self, key: str) -> int:
        return len(self._by_client.get(key, ()))

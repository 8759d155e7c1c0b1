"""WebSocket (and any other HTTP/1.1 upgrade): once the backend answers 101, a byte pipe.

No frame is parsed: bytes go from one transport to the other, each side throttling the
other through producer registration, and the route is touched as they pass.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IPushProducer, ITransport
from zope.interface import implementer


@implementer(IPushProducer)
class Throttle:
    """Lets one transport pause the other's reading without letting it close it.

    A transport calls its producer's stopProducing() when its own connection is lost;
    registering the other transport directly would close it too, before the proxy could
    answer (a 502) or keep it alive. The proxy closes things itself.
    """

    __slots__ = ("transport",)

    def __init__(self, transport: ITransport) -> None:
        self.transport = transport

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass


def upgrade_headers(upgrade: bytes) -> bytes:
    """The hop-by-hop headers an upgrade request needs on the backend's hop."""
    return b"Connection: Upgrade\r\nUpgrade: " + upgrade + b"\r\n"


class Splice:
    """Both directions of an upgraded connection, until either side closes."""

    __slots__ = ("_client", "_backend", "_on_activity", "closed")

    def __init__(self, client: ITransport, backend: ITransport, on_activity: Callable[[], None]) -> None:
        self._client = client
        self._backend = backend
        self._on_activity = on_activity
        self.closed = False

    def start(self, from_client: bytes, from_backend: bytes) -> None:
        """Begin piping; the arguments are bytes each side sent right after the handshake."""
        self._client.registerProducer(Throttle(self._backend), True)
        self._backend.registerProducer(Throttle(self._client), True)
        self._client.resumeProducing()
        self._backend.resumeProducing()
        if from_backend:
            self.from_backend(from_backend)
        if from_client:
            self.from_client(from_client)

    def from_client(self, data: bytes) -> None:
        self._backend.write(data)
        self._on_activity()

    def from_backend(self, data: bytes) -> None:
        self._client.write(data)
        self._on_activity()

    def close(self) -> None:
        """One side went away: let the other finish writing what it has, then close."""
        if self.closed:
            return
        self.closed = True
        for transport in (self._client, self._backend):
            try:
                transport.unregisterProducer()
            except Exception:  # already gone
                pass
            transport.loseConnection()

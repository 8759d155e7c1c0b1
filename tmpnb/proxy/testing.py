"""An in-memory proxy for tests: visitors and backends over string transports, no reactor.

    harness = ProxyHarness()
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    visitor = harness.visit()
    visitor.send(b"GET /user/a/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    backend = harness.accept()            # the proxy's connection attempt, completed
    backend.received()                    # what the proxy sent there
    backend.send(b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n")
    visitor.received()

Time is a `MemoryReactorClock`: `harness.reactor.advance(seconds)`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.python.failure import Failure

from .public import public_proxy
from .routes import RouteTable
from .settings import ProxySettings


class Peer:
    """One end of a connection the proxy holds: what it wrote, and a way to answer."""

    def __init__(self, protocol: Any, transport: StringTransportWithDisconnection) -> None:
        self.protocol = protocol
        self.transport = transport

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def received(self) -> bytes:
        """Everything the proxy wrote to this peer so far, then forgotten."""
        value = self.transport.value()
        self.transport.clear()
        return value

    def close(self) -> None:
        self.transport.loseConnection()

    @property
    def open(self) -> bool:
        return self.transport.connected

    @property
    def paused(self) -> bool:
        """Whether the proxy stopped reading from this peer."""
        return self.transport.producerState == "paused"

    def fill_buffer(self) -> None:
        """Act as if this peer's send buffer were full: the transport pauses its producer."""
        self.transport.producer.pauseProducing()

    def drain_buffer(self) -> None:
        self.transport.producer.resumeProducing()


class ProxyHarness:
    def __init__(self, default_target: str | None = None, **settings: Any) -> None:
        """A proxy with these `ProxySettings` (an error target is reached through the harness too)."""
        self.reactor = MemoryReactorClock()
        self.routes = RouteTable(self.reactor)
        self.factory = public_proxy(self.reactor, self.routes, ProxySettings(default_target=default_target, **settings))
        self._handled = 0

    @staticmethod
    def unix_target(name: str) -> str:
        return "http+unix://" + quote(f"/run/test/{name}/jupyter.sock", safe="")

    def visit(self, host: str = "192.0.2.7", transport_class: type = StringTransportWithDisconnection) -> Peer:
        address = IPv4Address("TCP", host, 40000)
        protocol = self.factory.buildProtocol(address)
        transport = transport_class(peerAddress=address)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return Peer(protocol, transport)

    def attempts(self) -> list[tuple[str, Any]]:
        """Connection attempts not yet accepted or refused: (where, factory)."""
        return self._ordered()[self._handled :]

    def _ordered(self) -> list[tuple[str, Any]]:
        # Connectors are recorded in call order across UNIX and TCP.
        unix = iter(self.reactor.unixClients)
        tcp = iter(self.reactor.tcpClients)
        out = []
        for connector in self.reactor.connectors:
            if isinstance(connector.getDestination(), UNIXAddress):
                address, factory, *_ = next(unix)
                out.append((address, factory))
            else:
                host, port, factory, *_ = next(tcp)
                out.append((f"{host}:{port}", factory))
        return out

    def accept(self) -> Peer:
        """Complete the oldest pending connection attempt; returns the backend's end."""
        where, factory = self.attempts()[0]
        self._handled += 1
        protocol = factory.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        peer = Peer(protocol, transport)
        peer.address = where
        return peer

    def refuse(self, reason: Exception | None = None) -> str:
        """Fail the oldest pending connection attempt (refused, or a timeout)."""
        where, factory = self.attempts()[0]
        connector = self.reactor.connectors[self._handled]
        self._handled += 1
        factory.clientConnectionFailed(connector, Failure(reason or ConnectionRefusedError()))
        return where

"""What a proxy's visitor connections share: routes, the backend pool, answers, counters."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory
from zope.interface import implementer

from .answers import LocalAnswers
from .clients import ClientConnections
from .forward import BackendPool
from .rewrite import Rewriter
from .routes import RouteTable
from .server import ProxyServerProtocol
from .settings import ProxySettings
from .targets import ClientTLS, Target, parse_target
from .timeouts import Limits


@implementer(IProtocolNegotiationFactory)
class ReverseProxyFactory(Factory):
    """Builds visitor connections; holds what they share: routes, backend pool, answers, counters.

    Built by `public.public_proxy` from `ProxySettings`; `answers` and `client_tls` are the
    live parts the settings describe (static files, error pages, TLS towards https targets).
    """

    protocol = ProxyServerProtocol

    def __init__(
        self,
        reactor: Any,
        routes: RouteTable,
        settings: ProxySettings = ProxySettings(),
        answers: LocalAnswers | None = None,
        client_tls: ClientTLS | None = None,
    ) -> None:
        self.reactor = reactor
        self.routes = routes
        self.settings = settings
        self.default_target = settings.default_target
        self.scheme = settings.scheme.encode("ascii")  # how visitors reach us (X-Forwarded-Proto)
        self.host_routing = settings.host_routing
        self.limits = Limits(settings)
        self.default_target_max_body = settings.default_target_max_body
        self.clients = ClientConnections(settings.max_client_connections)
        self.rewriter = Rewriter(settings)
        self.answers = answers if answers is not None else LocalAnswers()
        self.pool = BackendPool(
            reactor,
            settings.connect_timeout,
            settings.max_backend_connections_per_target,
            settings.backend_idle_timeout,
            client_tls,
        )
        self.connections = 0
        # Counted for tmpnb.metrics: requests, bytes from visitors (in) and from backends
        # (out), WebSockets spliced and still open.
        self.requests = self.bytes_in = self.bytes_out = self.websockets = 0
        # The front door's refusals: heads and bodies too slow, bodies too large.
        self.heads_timed_out = self.bodies_timed_out = self.bodies_too_large = 0
        self._targets: dict[str, Target] = {}

    def buildProtocol(self, addr) -> ProxyServerProtocol:
        return ProxyServerProtocol(self)

    def acceptableProtocols(self) -> list[bytes]:
        """What we speak, for ALPN on an `ssl:` listener. Twisted answers every client that
        offers ALPN (browsers, curl) from this list, and fails the handshake when it is empty."""
        return [b"http/1.1"]

    def target(self, url: str) -> Target:
        """A parsed target, cached: the same few URLs are looked up on every request."""
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 10_000:
                self._targets.clear()
            target = self._targets[url] = parse_target(url)
        return target

    def stopFactory(self) -> None:
        self.pool.close_all()

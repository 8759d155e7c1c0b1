"""Error pages from elsewhere, as configurable-http-proxy's ``--error-target`` and ``--error-path``.

When a request has no route (404) or its server cannot be reached (503), CHP asks the error
target for ``<error-target>/<status>?url=<request-target>`` and answers with that page and the
original status; JupyterHub points it at ``/hub/error`` to say "Your server appears to be down".
``--error-path`` is the static variant: ``<dir>/<status>.html``, else ``<dir>/error.html``.
When either fails, the proxy falls back to its own page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from .targets import ClientTLS, Target, parse_target

log = Logger()

# CHP sends only these on from the error target's answer.
_RELAYED = (b"content-type", b"content-encoding")
ERROR_TARGET_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ErrorPage:
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class ErrorPages(Protocol):
    """Where 404 and 503 pages come from (`ErrorTarget` or `ErrorDirectory`)."""

    def page(self, status: int, request_target: bytes) -> Deferred[ErrorPage | None]: ...


@implementer(IAgentEndpointFactory)
class _OneTarget:
    """Every request of the agent goes to the error target, whatever its URL says."""

    def __init__(self, reactor: Any, target: Target, client_tls: ClientTLS | None) -> None:
        self._reactor = reactor
        self._target = target
        self._client_tls = client_tls

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        return self._target.endpoint(self._reactor, 5.0, self._client_tls)


class ErrorTarget:
    """``--error-target``: a server that renders error pages."""

    def __init__(self, reactor: Any, url: str, client_tls: ClientTLS | None = None) -> None:
        self._reactor = reactor
        self._target = parse_target(url)
        # A unix socket has no host: the request line and Host header say localhost, as CHP's.
        base = url if not self._target.socket_path else "http://localhost" + self._target.prefix.decode("ascii")
        self._base = base if base.endswith("/") else base + "/"
        self._agent = Agent.usingEndpointFactory(reactor, _OneTarget(reactor, self._target, client_tls))

    def url_for(self, status: int, request_target: bytes) -> str:
        query = urlencode({"url": request_target.decode("utf-8", "surrogateescape")}, errors="surrogateescape")
        return f"{self._base}{status}?{query}"

    def page(self, status: int, request_target: bytes) -> Deferred[ErrorPage | None]:
        url = self.url_for(status, request_target)
        d = self._agent.request(b"GET", url.encode("ascii"), Headers())
        d.addCallback(self._read)
        d.addTimeout(ERROR_TARGET_TIMEOUT, self._reactor)
        d.addErrback(self._failed, url)
        return d

    @staticmethod
    def _read(response: Any) -> Deferred[ErrorPage]:
        headers = tuple(
            (name, value) for name in _RELAYED for value in (response.headers.getRawHeaders(name) or [])[:1]
        )
        return readBody(response).addCallback(lambda body: ErrorPage(headers, body))

    @staticmethod
    def _failed(reason: Failure, url: str) -> None:
        log.warn("no error page from {url}: {error}", url=url, error=reason.getErrorMessage())
        return None


class ErrorDirectory:
    """``--error-path``: ``<status>.html`` or ``error.html`` from a directory, read once at start."""

    def __init__(self, directory: str) -> None:
        self._pages: dict[str, bytes] = {}
        for name in os.listdir(directory):
            if name.endswith(".html"):
                with open(os.path.join(directory, name), "rb") as f:
                    self._pages[name] = f.read()

    def page(self, status: int, request_target: bytes) -> Deferred[ErrorPage | None]:
        body = self._pages.get(f"{status}.html", self._pages.get("error.html"))
        if body is None:
            return succeed(None)
        return succeed(ErrorPage(((b"content-type", b"text/html"),), body))

"""Route targets in the forms configurable-http-proxy 5.3 accepts.

`http://host:port[/prefix]` and `http+unix://<percent-encoded socket path>[/prefix]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.abstract import isIPAddress, isIPv6Address


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    host: str  # hostname or IP; "" for a unix socket
    port: int
    socket_path: str  # "" for TCP
    prefix: bytes  # path prepended to every request-target, without trailing "/"

    def endpoint(self, reactor, timeout: float) -> IStreamClientEndpoint:
        if self.socket_path:
            return UNIXClientEndpoint(reactor, self.socket_path, timeout=timeout)
        if isIPAddress(self.host):
            return TCP4ClientEndpoint(reactor, self.host, self.port, timeout=timeout)
        if isIPv6Address(self.host):
            return HostnameEndpoint(reactor, self.host.encode("ascii"), self.port, timeout=timeout)
        return HostnameEndpoint(reactor, self.host.encode("idna"), self.port, timeout=timeout)


def parse_target(url: str) -> Target:
    """Parse a target URL; ValueError when it is not one the proxy can reach."""
    if url.startswith("http+unix://"):
        rest = url[len("http+unix://") :]
        encoded_socket, slash, path = rest.partition("/")
        socket_path = unquote(encoded_socket)
        if not socket_path.startswith("/"):
            raise ValueError(f"unix socket target needs an absolute, percent-encoded path: {url!r}")
        return Target(url, "", 0, socket_path, _prefix(slash + path))
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"unsupported target (http:// or http+unix:// only): {url!r}")
    return Target(url, parts.hostname, parts.port or 80, "", _prefix(parts.path))


def _prefix(path: str) -> bytes:
    return path.rstrip("/").encode("ascii")

"""Route targets in the forms configurable-http-proxy 5.3 accepts.

`http://host:port[/prefix]`, `https://host:port[/prefix]` and
`http+unix://<percent-encoded socket path>[/prefix]`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint


class ClientTLS(Protocol):
    """How the proxy speaks TLS to an https target (see `tls.TargetTLS`)."""

    def creator_for(self, hostname: str) -> IOpenSSLClientConnectionCreator: ...


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    host: str  # hostname or IP; "" for a unix socket
    port: int
    socket_path: str  # "" for TCP
    prefix: bytes  # path prepended to every request-target, without trailing "/"
    tls: bool = False  # an https target
    netloc: bytes = b""  # host[:port] as written in the URL, for --change-origin

    def endpoint(self, reactor, timeout: float, client_tls: ClientTLS | None = None) -> IStreamClientEndpoint:
        if self.socket_path:
            return UNIXClientEndpoint(reactor, self.socket_path, timeout=timeout)
        if isIPAddress(self.host):
            plain = TCP4ClientEndpoint(reactor, self.host, self.port, timeout=timeout)
        elif isIPv6Address(self.host):
            plain = HostnameEndpoint(reactor, self.host.encode("ascii"), self.port, timeout=timeout)
        else:
            plain = HostnameEndpoint(reactor, self.host.encode("idna"), self.port, timeout=timeout)
        if not self.tls:
            return plain
        if client_tls is None:
            from tmpnb.proxy.tls import TargetTLS

            client_tls = TargetTLS()
        return wrapClientTLS(client_tls.creator_for(self.host), plain)


def parse_target(url: str) -> Target:
    """Parse a target URL; ValueError when it is not one the proxy can reach."""
    if url.startswith(("http+unix://", "unix+http://")):
        rest = url[len("http+unix://") :]
        encoded_socket, slash, path = rest.partition("/")
        socket_path = unquote(encoded_socket)
        if not socket_path.startswith("/"):
            raise ValueError(f"unix socket target needs an absolute, percent-encoded path: {url!r}")
        return Target(url, "", 0, socket_path, _prefix(slash + path))
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unsupported target (http://, https:// or http+unix:// only): {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    return Target(url, parts.hostname, port, "", _prefix(parts.path), tls, parts.netloc.rpartition("@")[2].encode("idna"))


def is_unix_target(url: str) -> bool:
    return url.startswith(("http+unix://", "unix+http://"))


def socket_under(root: str, socket_path: str) -> bool:
    """Whether a unix socket path lies strictly below `root`, written plainly: no `..`, `.`
    or doubled slashes that could walk out of it (a route to /var/run/docker.sock is root on
    the host)."""
    root = root.rstrip("/") or "/"
    if "\0" in socket_path or os.path.normpath(socket_path) != socket_path:
        return False
    return socket_path != root and socket_path.startswith(root if root == "/" else root + "/")


def _prefix(path: str) -> bytes:
    return path.rstrip("/").encode("ascii")

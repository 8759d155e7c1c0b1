"""The client address a request counts against.

The socket's peer, unless that peer is a proxy we trust: then X-Forwarded-For, read from the
right. Each trusted proxy appends the address it saw (configurable-http-proxy's `xfwd`, and
tmpnb's embedded proxy, which behaves the same), so the entries right of the client were
written by proxies we trust and everything left of it by the client itself: the client is the
rightmost entry that is not a trusted proxy ("rightmost untrusted"). Anything a visitor writes
into the header lands left of that and is never read.

The orchestrator always sits behind its own proxy: the embedded one (over a unix socket, or
--web-listen on loopback) or configurable-http-proxy (on loopback). So a unix-socket peer, and
with `local_peer` a loopback one, is trusted as that hop; the entries in the header are judged
by the configured networks (--trusted-proxy) only, so a visitor on loopback cannot speak for
another address.

IPv6 clients count by their /64: one host usually has a whole /64 to pick addresses from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from twisted.internet.address import UNIXAddress
from twisted.web.iweb import IRequest

from tmpnb.http.clientkey import IPAddress, address_key, parse_ip

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

LOCAL = "local"  # a peer without an address (a unix socket) and no header naming anyone


@dataclass(frozen=True)
class TrustedProxies:
    """Whose X-Forwarded-For is believed: `networks` (--trusted-proxy), and the orchestrator's
    own proxy hop (a unix-socket peer always; a loopback peer when `local_peer`)."""

    networks: tuple[IPNetwork, ...] = ()
    local_peer: bool = True

    @classmethod
    def parse(cls, cidrs: Iterable[str], local_peer: bool = True) -> TrustedProxies:
        """From CIDR strings ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7"); raises ValueError."""
        return cls(tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs), local_peer)

    def trusts(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self.networks)


def forwarded_for(request: IRequest) -> list[str]:
    """Every X-Forwarded-For entry, left to right, over all the header's lines."""
    lines = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
    entries = []
    for line in lines:
        entries.extend(e.strip() for e in line.decode("latin-1").split(","))
    return [e for e in entries if e]


def _peer(request: IRequest) -> tuple[IPAddress | None, bool]:
    """The peer's IP address (None if it has none), and whether it is a trusted proxy hop."""
    address = request.getClientAddress()
    if isinstance(address, UNIXAddress):  # only our own proxy can connect (mode 600)
        return None, True
    host = getattr(address, "host", None)
    return parse_ip(host) if isinstance(host, str) else None, False


def _peer_trusted(request: IRequest, trusted: TrustedProxies) -> tuple[IPAddress | None, bool]:
    peer, unix = _peer(request)
    if unix or peer is None:
        return peer, unix
    return peer, (trusted.local_peer and peer.is_loopback) or trusted.trusts(peer)


def client_address(request: IRequest, trusted: TrustedProxies) -> str:
    """The key the request's client is counted by (address_key), or LOCAL."""
    peer, believed = _peer_trusted(request, trusted)
    known = LOCAL if peer is None else address_key(peer)
    if not believed:
        return known
    for entry in reversed(forwarded_for(request)):
        ip = parse_ip(entry)
        if ip is None:
            # A trusted proxy writes only addresses: this was written by someone else (or
            # the proxy is not one we should trust). Keep the last address we could believe.
            return known
        known = address_key(ip)
        if not trusted.trusts(ip):
            return known
    return known  # every hop trusted: the leftmost is the nearest thing to a client


def over_https(request: IRequest, trusted: TrustedProxies) -> bool:
    """Whether the visitor reached us over TLS: our own socket, or the last X-Forwarded-Proto
    of a trusted proxy hop (the embedded proxy appends "https" behind `ssl:`)."""
    if request.isSecure():
        return True
    if not _peer_trusted(request, trusted)[1]:
        return False
    lines = request.requestHeaders.getRawHeaders(b"x-forwarded-proto") or []
    values = [v.strip().lower() for line in lines for v in line.decode("latin-1").split(",") if v.strip()]
    return bool(values) and values[-1] in ("https", "wss")

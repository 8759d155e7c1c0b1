"""Who a client is, for every per-client count: its IPv4 address, or its IPv6 /64.

One definition for the proxy's connection cap (tmpnb/proxy/clients.py) and the orchestrator's
share of capacity and spawn rate (tmpnb/clients/address.py), so a client cannot be one client
to one of them and many to the other. An IPv6 host usually owns a whole /64 and could
otherwise speak from each of its addresses; an IPv4-mapped IPv6 address is its IPv4 address.
"""

from __future__ import annotations

import ipaddress
from typing import Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

IPV6_PREFIX = 64  # the part of an IPv6 address one client is counted by


def parse_ip(text: str) -> IPAddress | None:
    """An address as sockets and proxies write it ("192.0.2.1", "192.0.2.1:5555",
    "[2001:db8::1]:5555", "fe80::1%eth0", "::ffff:192.0.2.1"); None for anything else."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_key(ip: IPAddress) -> str:
    """What one client is counted by: the IPv4 address, or the IPv6 address's /64."""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)


def client_key(host: str) -> str:
    """The client a socket's peer host belongs to; "" when there is none (a unix socket),
    the text itself when it is not an address."""
    if not host:
        return ""
    ip = parse_ip(host)
    return host if ip is None else address_key(ip)

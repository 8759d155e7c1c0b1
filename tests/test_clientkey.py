"""One client, one key: the proxy's connection cap and the orchestrator's share agree."""

from __future__ import annotations

import pytest

from tmpnb.http.clientkey import client_key, parse_ip


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # a dual-stack listener's view of an IPv4 client
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # another address of the same host
        ("fe80::1%eth0", "fe80::/64"),
        ("", ""),  # a unix socket: no client address, no cap
    ],
)
def test_a_peer_counts_as_its_ipv4_address_or_its_ipv6_64(peer, key):
    assert client_key(peer) == key


@pytest.mark.parametrize(
    ("written", "address"),
    [("192.0.2.1:5555", "192.0.2.1"), ("[2001:db8::1]:5555", "2001:db8::1"), ("not an address", None)],
)
def test_addresses_as_proxies_write_them_in_x_forwarded_for(written, address):
    parsed = parse_ip(written)
    assert (None if parsed is None else str(parsed)) == address

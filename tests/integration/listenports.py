"""Ports for the listeners a test starts, chosen where no outgoing connection can take them.

Binding port 0 hands out a port from the kernel's ephemeral range, the same range every
outgoing connection on the machine draws its local port from: between the probe closing and
the server binding, a client socket can take it (a CI run lost `test_browser` to
"Address already in use" that way). Below the range's floor only other listeners compete, and
a random pick with a bind probe makes two of those meeting unlikely.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000  # clear of the well-known and registered ports services on this host may use


def ephemeral_floor() -> int:
    try:
        return int(PORT_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def listen_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now, outside the ephemeral range."""
    top = ephemeral_floor()
    for _ in range(200):
        port = random.randrange(LOWEST, top)
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOWEST} and {top} on {host}")

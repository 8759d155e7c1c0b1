"""Slow clients, as an attacker runs them: many connections dripping a request head or body.

Shared by tests/integration/test_frontdoor_real.py and benchmarks/frontdoor.py, so it uses no
pytest. One thread drives every socket (non-blocking, a selector): each connection sends its
prefix, then one more byte every `interval` seconds, never finishing. A connection the server
closes is counted (with what the server said before closing) and, while the attack lasts,
replaced by a new one, so the server always faces `count` of them. Connections come from
several loopback source addresses (127.0.0.0/8 is all loopback), so a per-address cap alone
cannot be what stops them: the deadlines must.
"""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

HEAD_PREFIX = b"GET /api/stats HTTP/1.1\r\nHost: tmpnb\r\nX-Drip: "
BODY_PREFIX = b"POST /api/spawn HTTP/1.1\r\nHost: tmpnb\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"


def raise_open_file_limit(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def open_files(pid: int) -> int:
    """How many file descriptors process `pid` holds."""
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class _Drip:
    sock: socket.socket
    source: str
    original: bool  # one of the first wave (each must be closed by the server)
    received: bytes = b""


@dataclass
class SlowClients:
    host: str
    port: int
    prefix: bytes
    count: int
    interval: float = 0.5
    sources: int = 100  # connections spread over 127.0.0.2 … 127.0.0.<sources+1>
    closed: int = 0  # connections the server closed
    answers: dict[bytes, int] = field(default_factory=dict)  # status line → how many
    originals_open: int = 0
    opened: int = 0
    refused_connects: int = 0

    def __post_init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._drips: dict[int, _Drip] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self._next_source = 0

    def start(self) -> None:
        for _ in range(self.count):
            self._open(original=True)
        self.originals_open = self.count
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for drip in list(self._drips.values()):
            self._forget(drip)

    @property
    def open_now(self) -> int:
        return len(self._drips)

    def _open(self, original: bool = False) -> None:
        source = f"127.0.0.{2 + self._next_source % self.sources}"
        self._next_source += 1
        sock = socket.socket()
        try:
            sock.bind((source, 0))
            sock.connect((self.host, self.port))
            sock.sendall(self.prefix)
        except OSError:
            sock.close()
            self.refused_connects += 1
            return
        sock.setblocking(False)
        drip = _Drip(sock, source, original)
        self._drips[sock.fileno()] = drip
        self._selector.register(sock, selectors.EVENT_READ, drip)
        self.opened += 1

    def _forget(self, drip: _Drip) -> None:
        self._drips.pop(drip.sock.fileno(), None)
        try:
            self._selector.unregister(drip.sock)
        except (KeyError, ValueError):
            pass
        drip.sock.close()

    def _server_closed(self, drip: _Drip) -> None:
        try:  # an answer may have arrived before the close we noticed while sending
            while data := drip.sock.recv(65536):
                drip.received += data
        except OSError:
            pass
        self.closed += 1
        status = drip.received.split(b"\r\n", 1)[0]
        self.answers[status] = self.answers.get(status, 0) + 1
        if drip.original:
            self.originals_open -= 1
        self._forget(drip)
        if not self._stop.is_set():
            self._open()  # the attacker comes back at once

    def _run(self) -> None:
        next_drip = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_drip - time.monotonic())
            for key, _ in self._selector.select(timeout):
                drip = key.data
                try:
                    data = drip.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    drip.received += data
                else:
                    self._server_closed(drip)
            if time.monotonic() >= next_drip:
                next_drip += self.interval
                for drip in list(self._drips.values()):
                    try:
                        drip.sock.send(b"a")
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        if e.errno in (errno.EPIPE, errno.ECONNRESET):
                            self._server_closed(drip)

"""docker_client_factory against a small stand-in for dockerd's API on a unix socket.

docker-py is real here; only dockerd is not. The stand-in answers /version and /_ping and
counts the connections open to it, which is what these tests are about: every connection
to dockerd is an fd of the tmpnb process.
"""

from __future__ import annotations

import json
import shutil
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from tmpnb.dockerapi import docker_client_factory

API_VERSION = "1.41"


class FakeDockerd(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        super().__init__(path, _Handler)
        self.lock = threading.Lock()
        self.open_connections = 0
        self.requests: list[str] = []

    def connections_settle_at(self, expected: int, timeout: float = 2.0) -> int:
        """The open connection count once it is `expected` or `timeout` has passed (a close
        reaches the server's thread a moment after the client made it)."""
        deadline = time.monotonic() + timeout
        while self.open_connections != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.open_connections


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as dockerd
    server: FakeDockerd

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.open_connections += 1

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.open_connections -= 1

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.requests.append(path)
        if path.endswith("/version"):
            self._answer(200, json.dumps({"ApiVersion": API_VERSION, "Version": "20.10.24"}).encode(), "application/json")
        elif path.endswith("/_ping"):
            self._answer(200, b"OK", "text/plain")
        else:
            self._answer(404, b'{"message": "not here"}', "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a unix peer has no address to log


@pytest.fixture
def dockerd() -> Iterator[FakeDockerd]:
    directory = tempfile.mkdtemp(prefix="fakedockerd", dir="/tmp")  # a unix socket path is short
    server = FakeDockerd(f"{directory}/docker.sock")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)
    shutil.rmtree(directory, ignore_errors=True)


def test_a_client_fresh_from_the_factory_holds_no_connection_to_dockerd(dockerd):
    """Negotiating the API version leaves nothing open: the first client may be the events
    watcher's, kept as long as dockerd runs (the soak saw its /version connection stay)."""
    make = docker_client_factory(f"unix://{dockerd.server_address}", timeout=5)

    client = make()

    assert client.api.api_version == API_VERSION
    assert dockerd.requests == ["/version"]
    assert dockerd.connections_settle_at(0) == 0
    client.close()


def test_the_version_is_negotiated_once_and_every_client_uses_it(dockerd):
    make = docker_client_factory(f"unix://{dockerd.server_address}", timeout=5)

    clients = [make() for _ in range(3)]
    for client in clients:
        assert client.ping()

    assert [client.api.api_version for client in clients] == [API_VERSION] * 3
    assert dockerd.requests.count("/version") == 1
    for client in clients:
        client.close()
    assert dockerd.connections_settle_at(0) == 0


def test_a_fixed_version_is_used_as_given_without_asking(dockerd):
    make = docker_client_factory(f"unix://{dockerd.server_address}", timeout=5, version="1.40")

    client = make()

    assert client.api.api_version == "1.40"
    assert dockerd.requests == []
    client.close()

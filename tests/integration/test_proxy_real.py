"""The proxy in front of a real Jupyter server in a real container, over its unix socket.

One container serves every check (booting is the slow part): REST calls, a kernel
running 1+1 over a WebSocket, a large download streamed without the proxy holding it,
a WebSocket to a removed route refused; and the proxy process ends with the file
descriptors it started with.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time

import pytest
import pytest_twisted
import treq
import websocket
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from tmpnb import sockets
from tmpnb.dockerapi import LaunchRequest, _thd_launch
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxy.factory import ReverseProxyFactory
from tmpnb.readiness import wait_ready
from tmpnb_process import execute

pytestmark = pytest.mark.integration

BIG_FILE_MB = 128


def open_fds() -> dict[str, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed meanwhile
            pass
    return found


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def websocket_refusal(ws_url: str) -> int | None:
    """Runs in a thread: the HTTP status a WebSocket handshake is refused with (None: accepted)."""
    try:
        ws = websocket.create_connection(ws_url, timeout=10)
    except websocket.WebSocketBadStatusException as e:
        return e.status_code
    ws.close()
    return None


@pytest_twisted.ensureDeferred
async def test_a_real_notebook_server_behind_the_proxy(docker_client, container_spec):
    from twisted.internet import reactor

    # A home that holds the big file: the default (128m, a tmpfs in the memory limit) is its size.
    container_spec = dataclasses.replace(container_spec, home_size="256m")
    container_id = secrets.token_hex(6)
    token = secrets.token_hex(16)
    base = f"/user/{container_id}/"
    socket_dir = sockets.socket_dir(container_spec, container_id)
    request = LaunchRequest(container_id, token, base, socket_dir, container_spec)
    docker_id = await deferToThread(_thd_launch, docker_client, request, time.time())
    socket_path = sockets.socket_path_in(socket_dir)
    await wait_ready(reactor, socket_path, base, token, timeout=30, interval=0.1)
    # A big file to download, made before counting descriptors (docker-py keeps its own).
    container = docker_client.containers.get(docker_id)
    code, output = await deferToThread(
        container.exec_run, f"dd if=/dev/zero of=/home/jovyan/big.bin bs=1M count={BIG_FILE_MB}", user="1000:1000"
    )
    assert code == 0, output

    # Twisted opens one descriptor on /dev/null the first time a port listens (held for
    # the process's life to survive EMFILE): listen once so the count starts after it.
    warm_up = reactor.listenTCP(0, ReverseProxyFactory(reactor, RouteTable(reactor)), interface="127.0.0.1")
    await warm_up.stopListening()
    fds_at_start = open_fds()
    routes = RouteTable(reactor)
    routes.add(base, {"target": sockets.proxy_target(socket_path)})
    factory = ReverseProxyFactory(reactor, routes)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    origin = f"127.0.0.1:{port.getHost().port}"
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    auth = {"Authorization": f"token {token}"}
    try:
        # REST calls, through the proxy.
        status = await http.get(f"http://{origin}{base}api/status", headers=auth)
        assert status.code == 200
        assert "started" in await status.json()
        notebook = {"type": "file", "format": "text", "content": "hello through the proxy"}
        saved = await http.put(f"http://{origin}{base}api/contents/hello.txt", json=notebook, headers=auth)
        assert saved.code in (200, 201), await saved.text()
        read = await http.get(f"http://{origin}{base}api/contents/hello.txt", headers=auth)
        assert (await read.json())["content"] == "hello through the proxy"
        before_kernel = routes.last_activity(base)

        # A kernel over a WebSocket: 1+1 → 2.
        kernel = await (await http.post(f"http://{origin}{base}api/kernels", json={}, headers=auth)).json()
        ws_url = f"ws://{origin}{base}api/kernels/{kernel['id']}/channels?token={token}"
        # (How fast: benchmarks/proxy.py measures the round trip.)
        assert await deferToThread(execute, f"http://{origin}", base, token, kernel["id"], "1+1") == "2"
        assert routes.last_activity(base) >= before_kernel

        # A large download streams: the proxy never holds it.
        rss_before = rss_bytes()
        peak = [rss_before]
        received = [0]

        def count(chunk: bytes) -> None:
            received[0] += len(chunk)
            peak[0] = max(peak[0], rss_bytes()) if received[0] % (8 << 20) < len(chunk) else peak[0]

        download = await http.get(f"http://{origin}{base}files/big.bin", headers=auth, unbuffered=True)
        assert download.code == 200
        await treq.collect(download, count)
        assert received[0] == BIG_FILE_MB << 20
        assert peak[0] - rss_before < 48 << 20, f"RSS grew by {(peak[0] - rss_before) >> 20} MiB"

        # Removed route: the WebSocket handshake is refused, cleanly.
        routes.remove(base)
        assert await deferToThread(websocket_refusal, ws_url) == 404
        gone = await http.get(f"http://{origin}{base}api/status", headers=auth)
        assert gone.code == 404
        await gone.text()
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()
        factory.pool.close_all()

    # Every socket the proxy opened, on either side, is closed again. (The test process may
    # close what earlier tests left meanwhile: only what is new counts.)
    def opened() -> dict[str, str]:
        return dict(open_fds().items() - fds_at_start.items())

    for _ in range(50):
        if not opened():
            break
        await deferLater(reactor, 0.1, lambda: None)
    assert opened() == {}
    assert factory.connections == 0
    assert factory.pool.stats() == {}

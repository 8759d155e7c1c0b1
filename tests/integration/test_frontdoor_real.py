"""The front door of a real `twistd tmpnb` against slow and greedy clients (issue 21).

Measured before (main at 86e5dca): 300 connections dripping a head were never closed, 300
dripping a `POST /api/spawn` body held the orchestrator's connection slots (a new visitor got
503 for 16 s), and a 512 MiB body was spooled to disk (508 MiB) before its 413. Here 400 + 400
slow connections, from a hundred loopback addresses and replaced as soon as they are closed,
face short deadlines set by the options; a new visitor gets a notebook meanwhile. Closure is
asserted, not timing figures (benchmarks/frontdoor.py measures those).
"""

from __future__ import annotations

import errno
import json
import select
import socket
import time

import pytest

from slow_clients import BODY_PREFIX, HEAD_PREFIX, SlowClients, open_files, raise_open_file_limit
from tmpnb_process import ONE_ADDRESS, Tmpnb, call, visit, wait_until

pytestmark = pytest.mark.integration

SLOW = 400
DEADLINES = ["--head-timeout=3", "--body-timeout=3", "--body-min-rate=100"]
# Boots are not this module's subject; on a loaded 2-core machine they take longer than 30 s.
BOOTS = ["--boot-timeout=180"]
BOOT_WAIT = 400


@pytest.fixture(scope="module")
def server(launch) -> Tmpnb:
    raise_open_file_limit(4 * SLOW + 1024)
    tmpnb = launch(*ONE_ADDRESS, "--pool-size=2", "--capacity=4", *DEADLINES, *BOOTS)
    tmpnb.wait_available(2, timeout=BOOT_WAIT)
    return tmpnb


def process_io(pid: int) -> dict[str, int]:
    """/proc/<pid>/io: rchar and wchar count every byte read and written (sockets, files)."""
    with open(f"/proc/{pid}/io") as f:
        return {name: int(value) for name, value in (line.split(": ") for line in f)}


def notebook_reached(base: str) -> str:
    """A new visitor: GET / → 302 to their server → its page 200; their prefix."""
    prefix, _, location = visit(base)
    page = call(base, "GET", location, timeout=60)
    assert page.status == 200, (page.status, page.body[:200])
    return prefix


def test_800_slow_connections_are_closed_by_the_deadlines_while_a_new_visitor_gets_a_notebook(server):
    fds_before = open_files(server.pid)
    heads = SlowClients(server.host, server.port, HEAD_PREFIX, SLOW)
    bodies = SlowClients(server.host, server.port, BODY_PREFIX, SLOW)
    heads.start()
    bodies.start()
    try:
        wait_until(lambda: heads.open_now + bodies.open_now >= 2 * SLOW - 20, 30, "the slow connections open")
        # Under attack: the orchestrator answers, and a new visitor gets a notebook.
        for _ in range(5):
            assert call(server.base, "GET", "/api/stats", timeout=10).status == 200
        prefix = notebook_reached(server.base)
        spawn = call(server.base, "POST", "/api/spawn", b"{}", {"Content-Type": "application/json"}, timeout=30)
        assert spawn.status == 200, spawn.body
        # Every connection of the first wave was closed by the server, each with a 408.
        wait_until(lambda: heads.originals_open == 0 and bodies.originals_open == 0, 60,
                   "the first 800 slow connections closed by the server")
        assert set(heads.answers) == {b"HTTP/1.1 408 Request Timeout"}, heads.answers
        assert set(bodies.answers) == {b"HTTP/1.1 408 Request Timeout"}, bodies.answers
        assert heads.open_now + bodies.open_now >= 2 * SLOW - 50  # and the attack still goes on
    finally:
        heads.stop()
        bodies.stop()
    server.check_alive()
    assert call(server.base, "GET", prefix + "api/status").status in (200, 403)
    # Nothing left behind: the process holds about what it held before the attack.
    wait_until(lambda: open_files(server.pid) <= fds_before + 20, 30, "the slow connections' descriptors freed")


def send_until_answered(sock: socket.socket, total: int, chunk: bytes) -> tuple[bytes, int]:
    """Send up to `total` body bytes, stopping as soon as the server answers; (answer, bytes sent)."""
    sent = 0
    answer = b""
    sock.setblocking(False)
    while sent < total:
        readable, writable, _ = select.select([sock], [sock], [], 10)
        if readable:
            try:
                answer += sock.recv(65536)
            except OSError:
                pass
            break
        if not writable:
            break
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            continue
        except OSError as e:
            assert e.errno in (errno.EPIPE, errno.ECONNRESET), e
            break
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
        select.select([sock], [], [], 1)
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            break
        if not data:
            break
        answer += data
    return answer, sent


GIB_HALF = 512 * 1024 * 1024
CHUNK = b"x" * 65536


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_512_mib_body_is_refused_before_it_is_read(server, framing):
    before = process_io(server.pid)
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        if framing == "content-length":
            head = b"POST /api/spawn HTTP/1.1\r\nHost: tmpnb\r\nContent-Length: %d\r\n\r\n" % GIB_HALF
            chunk = CHUNK
        else:
            head = b"POST /api/spawn HTTP/1.1\r\nHost: tmpnb\r\nTransfer-Encoding: chunked\r\n\r\n"
            chunk = b"10000\r\n" + CHUNK + b"\r\n"
        sock.sendall(head)
        answer, sent = send_until_answered(sock, GIB_HALF, chunk)
    finally:
        sock.close()
    after = process_io(server.pid)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert sent < 64 * 1024 * 1024  # the 413 came long before the client had sent it all
    # What the process read, and wrote anywhere (a spooled body would be here), stays small;
    # the pool's own work (status polls, logs) is some kilobytes.
    assert after["rchar"] - before["rchar"] < 32 * 1024 * 1024
    assert after["wchar"] - before["wchar"] < 8 * 1024 * 1024
    server.check_alive()


def test_the_orchestrator_itself_refuses_a_large_chunked_body_while_reading_it(server):
    """Behind an external proxy (or any path past tmpnb's own) the orchestrator's Site holds
    its own limit: straight to its socket, a chunked body is refused past --web-max-body."""
    before = process_io(server.pid)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(f"{server.socket_root}/{server.instance}.web.sock")
    try:
        sock.sendall(b"POST /api/spawn HTTP/1.1\r\nHost: tmpnb\r\nTransfer-Encoding: chunked\r\n\r\n")
        answer, sent = send_until_answered(sock, GIB_HALF, b"10000\r\n" + CHUNK + b"\r\n")
    finally:
        sock.close()
    after = process_io(server.pid)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert sent < 64 * 1024 * 1024
    assert after["wchar"] - before["wchar"] < 8 * 1024 * 1024
    server.check_alive()


def test_one_address_at_its_connection_cap_sheds_its_idle_connections_and_others_are_served(launch):
    tmpnb = launch("--pool-size=1", "--capacity=2", "--max-client-connections=20", *BOOTS)
    tmpnb.wait_available(1, timeout=BOOT_WAIT)
    idle = []
    for _ in range(20):
        s = socket.socket()
        s.bind(("127.0.0.9", 0))
        s.connect((tmpnb.host, tmpnb.port))
        idle.append(s)
    # The 21st from the same address: the oldest idle one is closed to make room.
    newest = socket.socket()
    newest.bind(("127.0.0.9", 0))
    newest.connect((tmpnb.host, tmpnb.port))
    newest.sendall(b"GET /api/stats HTTP/1.1\r\nHost: tmpnb\r\nConnection: close\r\n\r\n")
    newest.settimeout(10)
    reply = b""
    while chunk := newest.recv(65536):
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["capacity"] == 2
    idle[0].settimeout(10)
    assert idle[0].recv(1) == b""  # shed: closed by the server
    # Another address is not affected at all.
    assert call(tmpnb.base, "GET", "/api/stats").status == 200
    for s in [*idle, newest]:
        s.close()

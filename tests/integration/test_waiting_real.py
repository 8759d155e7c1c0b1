"""The waiting line with the real engine: a spike within capacity bounces nobody.

Visitors arrive together at a pool of 1 and wait in line for the containers booted for
them, as a browser without JavaScript (following the waiting page's <meta refresh>) or as
`curl -L` (following 303s). A visitor who hangs up frees their place; once the capacity is
spent, the answer is still No vacancy (503) and, for the API, 429.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
from urllib.parse import urlsplit

import pytest

from tmpnb.judging import never_used
from tmpnb_process import Tmpnb, TmpnbError, call, wait_until

pytestmark = pytest.mark.integration

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
NOTEBOOK = re.compile(r"(/user/[A-Za-z0-9]+/)tree\?token=[0-9a-f]+")


def as_a_browser(base: str, path: str = "/") -> tuple[list[int], str]:
    """Follow redirects and <meta refresh> until the notebook page: (statuses, notebook URL)."""
    statuses = []
    for _ in range(100):
        reply = call(base, "GET", path, headers=BROWSER, timeout=60)
        statuses.append(reply.status)
        if reply.status == 302:
            location = reply.headers["location"]
            if NOTEBOOK.fullmatch(location):
                page = call(base, "GET", location, headers=BROWSER, timeout=60)
                statuses.append(page.status)
                return statuses, location
            path = location
        elif reply.status == 202:
            refresh = re.search(rb'http-equiv="refresh" content="0; url=([^"]+)"', reply.body)
            assert refresh, reply.body
            path = refresh.group(1).decode()
        else:
            raise TmpnbError(f"{path}: {reply.status} {reply.body[:300]!r}")
    raise TmpnbError(f"never arrived: {statuses}")


def as_curl(base: str) -> tuple[list[int], str]:
    """`curl -L`, which follows redirects (303 while in line) and reads no HTML."""
    out = subprocess.run(
        ["curl", "-sS", "-L", "-o", "/dev/null", "--max-time", "120", "-w", "%{http_code} %{url_effective}",
         base + "/"],
        capture_output=True, text=True, timeout=150, check=True,
    ).stdout
    code, url = out.split(" ", 1)
    return [int(code)], urlsplit(url).path + "?" + urlsplit(url).query


@pytest.fixture(scope="module")
def server(launch) -> Tmpnb:
    # Six visitors, all from 127.0.0.1: one address may hold the whole capacity (tmpnb/clients/).
    tmpnb = launch("--pool-size=1", "--capacity=6", "--client-share=1")
    tmpnb.wait_available(1)
    return tmpnb


def test_a_pooled_server_warmed_its_landing_page_and_still_counts_as_never_used(server, docker_client):
    """Readiness rendered the landing page once; that is no visitor's activity, so a restart
    would still pool the container again (tmpnb.judging.never_used)."""
    [container] = docker_client.containers.list(filters={"label": f"org.tmpnb.instance={server.instance}"})
    container_id, token = container.labels["org.tmpnb.id"], container.labels["org.tmpnb.token"]
    sock = f"{server.socket_root}/{server.instance}/{container_id}/jupyter.sock"
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(sock)
        conn.sendall(f"GET /user/{container_id}/api/status HTTP/1.0\r\nHost: localhost\r\n"
                     f"Authorization: token {token}\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert never_used(status), status


def test_six_visitors_at_once_at_a_pool_of_one_all_get_a_notebook(server):
    arrivals: list[tuple[list[int], str] | BaseException] = []

    def visitor(how) -> None:
        try:
            arrivals.append(how(server.base))
        except BaseException as e:  # reported below, with the others' outcomes
            arrivals.append(e)

    threads = [threading.Thread(target=visitor, args=(how,)) for how in [as_a_browser] * 3 + [as_curl] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=200)

    assert all(isinstance(a, tuple) for a in arrivals) and len(arrivals) == 6, arrivals
    assert all(503 not in statuses and statuses[-1] == 200 for statuses, _ in arrivals), arrivals
    notebooks = {NOTEBOOK.fullmatch(url).group(1) for _, url in arrivals}
    assert len(notebooks) == 6  # six visitors, six containers
    waited = [r for r in server.lifecycle() if r.get("line") == "served"]
    assert len(waited) >= 1  # the pool had one: the others waited in line
    assert server.stats()["waiting"]["length"] == 0


def test_with_the_capacity_spent_a_seventh_visitor_gets_no_vacancy(server):
    # Continues the test above: six notebooks handed out, capacity 6.
    wait_until(lambda: server.stats()["total"] == 6, 60, "six containers")
    assert call(server.base, "GET", "/", headers=BROWSER).status == 503
    assert call(server.base, "POST", "/api/spawn").status == 429
    waited = call(server.base, "POST", "/api/spawn", body=json.dumps({"wait": 5}).encode())
    assert waited.status == 429  # no place in line either: nothing could ever serve it


def test_a_visitor_who_hangs_up_frees_their_place_in_line(launch):
    # Servers that never get ready (the command only sleeps): whoever waits, waits.
    tmpnb = launch("--pool-size=0", "--capacity=2", "--max-waiting=1", "--boot-timeout=300", "--client-share=1",
                   "--command=sleep 600")
    wait_until(lambda: tmpnb.stats()["states"] == {}, 60, "the server answering")

    first = socket.create_connection(("127.0.0.1", tmpnb.port), timeout=30)
    first.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n")
    wait_until(lambda: tmpnb.stats()["waiting"]["length"] == 1, 30, "the first visitor in line")
    # The line holds one: the next visitor is turned away.
    assert call(tmpnb.base, "GET", "/", headers=BROWSER).status == 503

    first.close()
    wait_until(lambda: tmpnb.stats()["waiting"]["length"] == 0, 30, "the place freed")
    assert tmpnb.stats()["waiting"]["left"] == 1
    second = call(tmpnb.base, "GET", "/", headers=BROWSER, timeout=60)
    assert second.status == 202  # in line, and told where
    assert b"number <strong>1</strong> in line" in second.body

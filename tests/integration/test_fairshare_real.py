"""A fair share per client, with the real engine: `twistd tmpnb` on 127.0.0.1 with its embedded
proxy, visitors on other loopback addresses (their sockets bound to 127.0.0.2, 127.0.0.3, …).

- one address sending 60 `GET /` at once (not following the redirects) gets its share (a quarter
  of the capacity) and 429s, and a header of its own naming another address changes nothing,
  while a second address is served at once from the pool;
- an `<img>`-style request for `/` (Sec-Fetch-Dest: image) gets no container;
- a visitor who reloads `/` with the cookie gets the same server, logged in by the server's own
  cookie: the tree, not a login page and not a new server.
"""

from __future__ import annotations

import http.client
import re
import threading

import pytest

from tmpnb_process import Tmpnb, wait_until

pytestmark = pytest.mark.integration

NAVIGATE = {"Accept": "text/html", "Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Site": "none"}
IMAGE = {"Accept": "image/avif,image/webp,*/*", "Sec-Fetch-Dest": "image", "Sec-Fetch-Mode": "no-cors",
         "Sec-Fetch-Site": "cross-site"}
NOTEBOOK = re.compile(r"/user/([A-Za-z0-9]+)/tree(\?token=[0-9a-f]+)?")


def ask(server: Tmpnb, source: str, path: str, headers: dict, timeout: float = 60) -> tuple[int, dict, list, bytes]:
    """One exchange from a socket bound to `source`: (status, headers, Set-Cookie values, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout, source_address=(source, 0))
    try:
        connection.request("GET", path, headers={"Host": f"127.0.0.1:{server.port}", **headers})
        response = connection.getresponse()
        pairs = response.getheaders()
        cookies = [v.split(";", 1)[0] for k, v in pairs if k.lower() == "set-cookie"]
        return response.status, {k.lower(): v for k, v in pairs}, cookies, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server(launch) -> Tmpnb:
    # The default share: 2 of 8. Three pooled: after the greedy address's two, one is left.
    # Boots get time: this machine is shared, and a slow boot is not what this module tests.
    tmpnb = launch("--pool-size=3", "--capacity=8", "--cull-timeout=600", "--boot-timeout=120")
    tmpnb.wait_available(3, timeout=400)
    return tmpnb


def test_one_address_gets_its_share_while_a_second_is_served_at_once(server):
    answers: list = []

    def greedy() -> None:
        try:
            answers.append(ask(server, "127.0.0.2", "/", NAVIGATE))
        except Exception as e:  # counted below
            answers.append(e)

    threads = [threading.Thread(target=greedy) for _ in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = [a[0] if isinstance(a, tuple) else repr(a) for a in answers]
    assert len(statuses) == 60 and statuses.count(302) == 2 and statuses.count(429) == 58, statuses
    refused = next(a for a in answers if a[0] == 429)
    assert refused[1]["retry-after"].isdigit() and b"You have your share of notebooks" in refused[3]

    # A header of its own naming another address changes nothing: the proxy appends the socket's.
    status, *_ = ask(server, "127.0.0.2", "/", {**NAVIGATE, "X-Forwarded-For": "127.0.0.9"})
    assert status == 429

    status, headers, _, _ = ask(server, "127.0.0.3", "/", NAVIGATE)
    assert status == 302 and NOTEBOOK.fullmatch(headers["location"])  # from the pool, no waiting
    stats = server.stats()
    assert stats["states"].get("assigned", 0) == 3
    assert stats["clients"]["refused"]["share"] == 59


def test_an_image_request_for_the_front_page_gets_no_container(server):
    before = server.stats()
    for path in ("/", "/spawn/notebooks/Welcome.ipynb"):
        status, _, cookies, body = ask(server, "127.0.0.4", path, IMAGE)
        assert status == 403 and not cookies and b"/user/" not in body
    after = server.stats()
    assert after["states"].get("assigned", 0) == before["states"].get("assigned", 0)
    assert after["clients"]["refused"]["not-navigation"] == before["clients"]["refused"].get("not-navigation", 0) + 2


def test_a_reload_of_the_front_page_gets_the_same_server_logged_in(server):
    server.wait_available(2, timeout=400)  # refilled after the tests above: nobody waits in line
    status, headers, cookies, _ = ask(server, "127.0.0.5", "/", NAVIGATE)
    first = NOTEBOOK.fullmatch(headers["location"])
    assert status == 302 and first and first.group(2)
    [ours] = [c for c in cookies if c.startswith("tmpnb-server=")]
    # The visitor's browser opens their notebook: the server logs it in with a cookie of its own.
    jar = {ours.split("=", 1)[0]: ours.split("=", 1)[1]}
    path = headers["location"]
    for _ in range(5):
        status, headers, cookies, body = ask(server, "127.0.0.5", path, {**NAVIGATE, "Cookie": cookie_header(jar)})
        jar.update(c.split("=", 1) for c in cookies)
        if status != 302:
            break
        path = headers["location"]
    assert status == 200

    held = server.stats()["states"].get("assigned", 0)
    status, headers, _, _ = ask(server, "127.0.0.5", "/", {**NAVIGATE, "Cookie": cookie_header(jar)})
    again = NOTEBOOK.fullmatch(headers["location"])
    assert status == 302 and again.group(1) == first.group(1) and again.group(2) is None  # no token
    status, headers, _, body = ask(server, "127.0.0.5", headers["location"], {**NAVIGATE, "Cookie": cookie_header(jar)})
    assert status == 200 and b"login" not in headers.get("location", "").encode()
    assert server.stats()["states"].get("assigned", 0) == held  # nothing new handed out

    # Without the cookie the same address is a new visitor.
    status, headers, _, _ = ask(server, "127.0.0.5", "/", NAVIGATE)
    assert status == 302 and NOTEBOOK.fullmatch(headers["location"]).group(1) != first.group(1)
    wait_until(lambda: server.stats()["states"].get("assigned", 0) == held + 1, 30, "one more handed out")


def cookie_header(jar: dict) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())

"""End to end: a real `twistd tmpnb-redirector` process in front of two small fake nodes that are
real HTTP servers on 127.0.0.1 (tests/fake_flavor_node.py): visitors asking for a flavor reach
only the node that serves it, with their query, path and body intact. No Docker: the nodes'
side of flavors has its own tests; this one is the redirector's, over real sockets."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from listenports import listen_port  # noqa: E402  (the suite's one way to pick a listener's port)

TOKEN = "flavor-admin-token"


def free_port() -> int:
    return listen_port()


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "ADMIN_AUTH_TOKEN": TOKEN}


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # our own child, by its PID
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def nodes() -> Iterator[dict[str, int]]:
    """Node "py" serves python (its default) and shared; node "r" serves r and shared."""
    started: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for name, rooms, default in [("py", {"python": 100, "shared": 50}, "python"),
                                     ("r", {"r": 100, "shared": 50}, "r")]:
            process = subprocess.Popen([sys.executable, "-m", "tests.fake_flavor_node", name, json.dumps(rooms), default],
                                       cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            started[name] = (process, 0)
            port = int(process.stdout.readline())
            started[name] = (process, port)
        yield {name: port for name, (_, port) in started.items()}
    finally:
        for process, _ in started.values():
            stop(process)


@pytest.fixture
def redirector(nodes) -> Iterator[tuple[int, int]]:
    port, admin_port = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="tnb-redirector-flavors-", suffix=".log", delete=False)
    log.close()
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            f"--logfile={log.name}", "tmpnb-redirector", f"--listen=tcp:{port}:interface=127.0.0.1",
            f"--admin-listen={admin_port}", "--health-period=0.5",
            *(f"--node=http://127.0.0.1:{p}" for p in nodes.values())]
    process = subprocess.Popen(argv, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        def both_up_with_flavors() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the redirector exited:\n{Path(log.name).read_text()[-3000:]}")
            status, _, body = call(admin_port, "GET", "/api/nodes", headers={"Authorization": f"token {TOKEN}"})
            return status == 200 and all(n["up"] and n["flavors"] for n in json.loads(body)["nodes"])

        wait_until(both_up_with_flavors, 30, "the redirector seeing both nodes and their flavors")
        yield port, admin_port
    finally:
        stop(process)
        text = Path(log.name).read_text()
        os.unlink(log.name)
        assert "Traceback" not in text and "Unhandled" not in text, text[-3000:]


def received(port: int) -> list[dict]:
    return json.loads(call(port, "GET", "/_received")[2])


def test_visitors_asking_for_a_flavor_reach_only_its_node_with_query_and_body_intact(nodes, redirector):
    front, admin = redirector
    py, r = nodes["py"], nodes["r"]

    # Visitors: a 302 to the node that serves their flavor, path and query kept; they follow it.
    for path, expected in [("/spawn/notebooks/Lesson1.ipynb?flavor=python", py), ("/?flavor=r&from=course", r)]:
        for _ in range(4):
            status, headers, _ = call(front, "GET", path)
            assert status == 302, (path, status)
            location = urlsplit(headers["location"])
            assert (location.hostname, location.port) == ("127.0.0.1", expected)
            target = location.path + "?" + location.query
            assert target == path
            assert call(expected, "GET", target)[0] == 200
    assert [x["uri"] for x in received(py)] == ["/spawn/notebooks/Lesson1.ipynb?flavor=python"] * 4
    assert [x["uri"] for x in received(r)] == ["/?flavor=r&from=course"] * 4

    # API clients: the body forwarded byte for byte, to the node of the flavor only.
    body = json.dumps({"flavor": "r", "path": "notebooks/Lesson1.ipynb"}).encode()
    for _ in range(3):
        status, _, answer = call(front, "POST", "/api/spawn", body, {"Content-Type": "application/json"})
        assert status == 200 and urlsplit(json.loads(answer)["url"]).port == r and json.loads(answer)["flavor"] == "r"
    spawns = [x for x in received(r) if x["uri"] == "/api/spawn"]
    assert [x["body"] for x in spawns] == [body.decode()] * 3
    assert not any(x["uri"] == "/api/spawn" for x in received(py))

    # A flavor both serve goes to both, by room; one neither serves is a 404 listing the flavors.
    hosts = {urlsplit(call(front, "GET", "/?flavor=shared")[1]["location"]).port for _ in range(30)}
    assert hosts == {py, r}
    status, headers, page = call(front, "GET", "/?flavor=julia")
    assert status == 404 and headers["content-type"].startswith("text/html")
    assert all(f'href="/?flavor={name}"' in page.decode() for name in ("python", "r", "shared"))
    status, _, answer = call(front, "POST", "/api/spawn", b'{"flavor": "julia"}', {"Content-Type": "application/json"})
    assert status == 404 and json.loads(answer)["flavors"] == ["python", "r", "shared"]

    # The redirector's own account: the sums per flavor, and each node's flavors on the admin side.
    stats = json.loads(call(front, "GET", "/api/stats")[2])
    assert set(stats["flavors"]) == {"python", "r", "shared"}
    metrics = call(admin, "GET", "/metrics")[2].decode()
    assert f'tmpnb_redirector_flavor_visitors_total{{flavor="r",how="api",node="http://127.0.0.1:{r}"}} 3.0' in metrics
    assert "julia" not in metrics

"""A visitor gets a working notebook: `twistd -n tmpnb` end to end, with the real engine.

Each server is a subprocess on free loopback ports, with its own --instance and
--socket-root, stopped with SIGTERM by its PID; afterwards no container of that instance
may be left. The visitor side is plain blocking HTTP and a websocket client: everything
asynchronous happens in the server process.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import websocket

from conftest import INSTANCE_LABEL, remove_instance_containers

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHP = os.environ.get("TMPNB_CHP", "/opt/chp/node_modules/configurable-http-proxy/bin/configurable-http-proxy")
ADMIN_TOKEN = "e2e-admin-" + secrets.token_hex(8)
BOOT_WAIT = 90.0  # seconds for a pool to fill on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Reply:
    """One HTTP exchange, redirects not followed."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@dataclass
class Tmpnb:
    """One `twistd -n tmpnb` process and what a test needs to reach it."""

    instance: str
    socket_root: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path = os.path.join(self.socket_root, "twistd.log")
        argv = [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", f"--logfile={self.log_path}", "tmpnb",
            f"--instance={self.instance}", f"--socket-root={self.socket_root}",
            f"--listen=tcp:{self.port}:interface=127.0.0.1",
            f"--proxy-api-listen=tcp:{free_port()}:interface=127.0.0.1",
            f"--admin-port={self.admin_port}",
            f"--image={os.environ.get('TMPNB_TEST_IMAGE', 'tmpnb/notebook:latest')}",
            # these tests check that a stop leaves nothing; keeping visitors across a
            # restart (the default) is tests/integration/test_restart_real.py's subject
            "--cleanup-on-stop",
            *self.args,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO), "ADMIN_AUTH_TOKEN": ADMIN_TOKEN, **self.env}
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return Path(self.log_path).read_text() if os.path.exists(self.log_path) else ""

    def stats(self, base: str | None = None) -> dict:
        return call(base or self.base, "GET", "/api/stats").json()

    def wait_available(self, count: int, base: str | None = None) -> None:
        deadline = time.monotonic() + BOOT_WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"tmpnb exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if self.stats(base)["available"] >= count:
                    return
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        pytest.fail(f"pool never reached {count} available: {self.stats(base)}")

    def stop(self) -> int:
        """SIGTERM by PID; the exit status once it has cleaned up.

        twistd ends itself with the signal that stopped it, so a clean stop is -SIGTERM.
        """
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()  # our own child, by its PID
            self.process.wait()
            pytest.fail(f"tmpnb did not stop within 60 s of SIGTERM:\n{self.log()[-4000:]}")

    def admin(self, method: str, path: str) -> Reply:
        return call(f"http://127.0.0.1:{self.admin_port}", method, path,
                    headers={"Authorization": f"token {ADMIN_TOKEN}"})


@pytest.fixture(scope="module")
def launch(docker_client, notebook_image) -> Iterator:
    """Start tmpnb servers for this module; stop each and check nothing of it is left."""
    started: list[Tmpnb] = []

    def start(*args: str, env: dict | None = None, listen_port: int | None = None) -> Tmpnb:
        server = Tmpnb("test-e2e-" + secrets.token_hex(4), tempfile.mkdtemp(prefix="tnbE", dir="/tmp"),
                       list(args), env or {})
        if listen_port is not None:
            server.port = listen_port
        server.start()
        started.append(server)
        return server

    yield start
    problems = []
    for server in started:
        if server.process.poll() is None:
            if server.stop() != -signal.SIGTERM:
                problems.append(f"{server.instance} exited with {server.process.returncode}")
        left = docker_client.containers.list(all=True, filters={"label": f"{INSTANCE_LABEL}={server.instance}"})
        if left:
            problems.append(f"{server.instance} left {len(left)} containers behind")
            remove_instance_containers(docker_client, server.instance)
        shutil.rmtree(server.socket_root, ignore_errors=True)
    assert not problems


def visit(base: str, path: str = "/") -> tuple[str, str, str]:
    """A visitor opens `path`: (their /user/<id>/ prefix, token, the URL they landed on)."""
    reply = call(base, "GET", path)
    assert reply.status == 302, (reply.status, reply.body[:300])
    location = reply.headers["location"]
    match = re.fullmatch(r"(/user/[A-Za-z0-9]+/)([^?]*)\?token=([0-9a-f]+)", location)
    assert match, location
    return match.group(1), match.group(3), location


def run_one_plus_one(base: str, prefix: str, token: str) -> str:
    """Start a kernel, open its websocket, execute 1+1; the text/plain result."""
    auth = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    kernel = call(base, "POST", prefix + "api/kernels", json.dumps({"name": "python3"}).encode(), auth)
    assert kernel.status == 201, kernel.body[:300]
    kernel_id = kernel.json()["id"]
    ws_url = base.replace("http://", "ws://") + f"{prefix}api/kernels/{kernel_id}/channels?token={token}"
    ws = websocket.create_connection(ws_url, timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "e2e", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": "1+1", "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
        pytest.fail("no execute_result within 60 s")
    finally:
        ws.close()


# -- the embedded proxy ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(launch) -> Tmpnb:
    tmpnb = launch("--pool-size=2", "--capacity=8")
    tmpnb.wait_available(2)
    return tmpnb


def test_a_visitor_follows_the_redirect_and_runs_1_plus_1(server):
    prefix, token, landing = visit(server.base)
    assert landing.startswith(prefix + "tree")
    page = call(server.base, "GET", landing)
    assert page.status == 200
    assert b"<html" in page.body.lower()
    assert run_one_plus_one(server.base, prefix, token) == "2"


def test_two_visitors_get_different_containers(server):
    server.wait_available(2)
    first, first_token, _ = visit(server.base, "/spawn/tree")
    second, second_token, _ = visit(server.base, "/spawn/tree")
    assert first != second
    assert first_token != second_token
    # Each token opens its own server only.
    assert call(server.base, "GET", first + "api/status", headers={"Authorization": f"token {first_token}"}).status == 200
    assert call(server.base, "GET", first + "api/status", headers={"Authorization": f"token {second_token}"}).status == 403


def test_api_spawn_hands_out_a_working_url(server):
    server.wait_available(1)
    reply = call(server.base, "POST", "/api/spawn")
    assert reply.status == 200
    url = reply.json()["url"]
    match = re.fullmatch(r"(/user/[A-Za-z0-9]+/)\?token=([0-9a-f]+)", url)
    assert match, url
    status = call(server.base, "GET", match.group(1) + "api/status",
                  headers={"Authorization": f"token {match.group(2)}"})
    assert status.status == 200


def test_a_culled_notebook_shows_the_friendly_page(server):
    server.wait_available(1)
    prefix, token, _ = visit(server.base, "/spawn/notebooks/Welcome.ipynb")
    container_id = prefix.split("/")[2]
    assert server.admin("DELETE", f"/api/containers/{container_id}").status == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = call(server.base, "GET", prefix + "notebooks/Welcome.ipynb")
        if reply.status == 404:
            break
        time.sleep(0.2)
    assert reply.status == 404
    assert b"This notebook has ended" in reply.body
    assert b'href="/spawn/notebooks/Welcome.ipynb"' in reply.body


def test_robots_and_stats(server):
    robots = call(server.base, "GET", "/robots.txt")
    assert b"Disallow: /user/" in robots.body
    stats = server.stats()
    assert {"available", "capacity", "version", "container_image", "states"} <= stats.keys()
    assert call(server.base, "GET", "/stats").headers["location"] == "/api/stats"


# -- full ---------------------------------------------------------------------------------


def test_when_full_no_vacancy_page_and_429(launch):
    tmpnb = launch("--pool-size=1", "--capacity=1")
    tmpnb.wait_available(1)
    visit(tmpnb.base)
    page = call(tmpnb.base, "GET", "/")
    assert page.status == 503
    assert "retry-after" in page.headers
    assert b"No vacancy" in page.body
    assert b'http-equiv="refresh"' in page.body
    api = call(tmpnb.base, "POST", "/api/spawn")
    assert api.status == 429
    assert api.json() == {"status": "full"}


def test_sigterm_with_cleanup_on_stop_removes_every_container(launch, docker_client):
    tmpnb = launch("--pool-size=2", "--capacity=3")
    tmpnb.wait_available(2)
    visit(tmpnb.base)
    label = {"label": f"{INSTANCE_LABEL}={tmpnb.instance}"}
    assert len(docker_client.containers.list(all=True, filters=label)) >= 2
    assert tmpnb.stop() == -signal.SIGTERM
    assert docker_client.containers.list(all=True, filters=label) == []
    assert not any(Path(tmpnb.socket_root, tmpnb.instance).glob("*/*.sock"))


# -- configurable-http-proxy 5.3 as the external proxy --------------------------------------


@pytest.fixture(scope="module")
def chp() -> Iterator[dict]:
    if not os.path.exists(CHP):
        pytest.skip("configurable-http-proxy 5.3 not installed (npm install --prefix /opt/chp configurable-http-proxy@5.3.0)")
    ports = {"public": free_port(), "api": free_port(), "web": free_port()}
    token = secrets.token_hex(16)
    process = subprocess.Popen(
        [CHP, "--ip", "127.0.0.1", "--port", str(ports["public"]), "--api-ip", "127.0.0.1",
         "--api-port", str(ports["api"]), "--default-target", f"http://127.0.0.1:{ports['web']}"],
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if call(f"http://127.0.0.1:{ports['api']}", "GET", "/api/routes",
                    headers={"Authorization": f"token {token}"}).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    yield {**ports, "token": token}
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


@pytest.mark.chp
def test_the_same_flow_through_chp(launch, chp):
    tmpnb = launch("--pool-size=1", "--capacity=2", f"--proxy-api-url=http://127.0.0.1:{chp['api']}",
                   env={"CONFIGPROXY_AUTH_TOKEN": chp["token"]}, listen_port=chp["web"])
    public = f"http://127.0.0.1:{chp['public']}"
    tmpnb.wait_available(1, base=public)
    prefix, token, landing = visit(public)
    assert call(public, "GET", landing).status == 200
    assert run_one_plus_one(public, prefix, token) == "2"
    routes = call(f"http://127.0.0.1:{chp['api']}", "GET", "/api/routes",
                  headers={"Authorization": f"token {chp['token']}"}).json()
    assert prefix.rstrip("/") in routes
    assert routes[prefix.rstrip("/")]["target"].startswith("http+unix://")
    # A stale path falls through CHP's default target to the orchestrator's page.
    assert b"This notebook has ended" in call(public, "GET", "/user/gone123/tree").body

    assert tmpnb.stop() == -signal.SIGTERM
    routes = call(f"http://127.0.0.1:{chp['api']}", "GET", "/api/routes",
                  headers={"Authorization": f"token {chp['token']}"}).json()
    assert [path for path in routes if path.startswith("/user/")] == []

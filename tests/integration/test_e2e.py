"""A visitor gets a working notebook: `twistd -n tmpnb` end to end, with the real engine.

Each server is a subprocess on free loopback ports, with its own --instance and
--socket-root, started with --cleanup-on-stop and stopped with SIGTERM by its PID;
afterwards no container of that instance may be left (the `launch` fixture in conftest.py).
The visitor side is plain blocking HTTP and a websocket client (tmpnb_process.py):
everything asynchronous happens in the server process.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tmpnb_process import INSTANCE_LABEL, Tmpnb, call, container_id_of, run_one_plus_one, visit

pytestmark = pytest.mark.integration


# -- the embedded proxy ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(launch) -> Tmpnb:
    # Every visitor here is 127.0.0.1: one address may hold the whole capacity (tmpnb/clients/).
    tmpnb = launch("--pool-size=2", "--capacity=8", "--client-share=1")
    tmpnb.wait_available(2)
    return tmpnb


def test_a_visitor_follows_the_redirect_and_runs_1_plus_1(server):
    prefix, token, landing = visit(server.base)
    assert landing.startswith(prefix + "tree")
    page = call(server.base, "GET", landing)
    assert page.status == 200
    assert b"<html" in page.body.lower()
    assert run_one_plus_one(server.base, prefix, token) == "2"


def test_tmpnb_run_serves_a_visitor_without_loading_tls(launch, server):
    """`tmpnb run`, as tools/run and the Swarm stack start a node: no option names TLS, so
    pyOpenSSL and cryptography stay out of the process (its memory: benchmarks/RESULTS.md,
    footprint), and a visitor still gets a working kernel. Plain twistd loads them."""
    node = launch("--pool-size=1", "--capacity=2", launcher="tmpnb-run")
    node.wait_available(1)
    prefix, token, _ = visit(node.base)
    assert run_one_plus_one(node.base, prefix, token) == "2"
    assert "/cryptography/" not in Path(f"/proc/{node.pid}/maps").read_text()
    assert "/cryptography/" in Path(f"/proc/{server.pid}/maps").read_text()


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
    assert server.admin("DELETE", f"/api/containers/{container_id_of(prefix)}").status == 200
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
    tmpnb = launch("--pool-size=1", "--capacity=1", "--client-share=1")  # 503 for the line, not 429 for the share
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


# -- configurable-http-proxy 5.3 as the external proxy (the `chp` fixture: conftest.py) ---


@pytest.mark.chp
def test_the_same_flow_through_chp(launch, chp):
    tmpnb = launch("--pool-size=1", "--capacity=2", "--client-share=1", f"--proxy-api-url={chp.api}",
                   env={"CONFIGPROXY_AUTH_TOKEN": chp.token}, port=chp.default_port)
    tmpnb.wait_available(1, base=chp.base)
    prefix, token, landing = visit(chp.base)
    assert call(chp.base, "GET", landing).status == 200
    assert run_one_plus_one(chp.base, prefix, token) == "2"
    routes = chp.routes()
    assert prefix.rstrip("/") in routes
    assert routes[prefix.rstrip("/")]["target"].startswith("http+unix://")
    # A stale path falls through CHP's default target to the orchestrator's page.
    assert b"This notebook has ended" in call(chp.base, "GET", "/user/gone123/tree").body

    assert tmpnb.stop() == -signal.SIGTERM
    assert [path for path in chp.routes() if path.startswith("/user/")] == []

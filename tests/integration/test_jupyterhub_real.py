"""JupyterHub (from PyPI) starting tmpnb-proxy itself: the one line an operator changes.

    c.ConfigurableHTTPProxy.should_start = True
    c.ConfigurableHTTPProxy.command = ["tmpnb-proxy"]

Each case runs a whole user's life through the proxy the hub started: login, spawn, ``/lab``
(with the OAuth redirects), a kernel's ``1+1`` over its websocket, the hub re-adding a route
deleted behind its back, a dead server answered with the hub's own error page (the error
target), and stop. The same with JupyterHub's internal SSL (the proxy's API over TLS with
client certificates, every target https with a certificate from the hub's CA) and with
subdomains (host routing; the test's client sends every name to 127.0.0.1).

No Docker here: SimpleLocalProcessSpawner runs jupyterhub-singleuser as this Unix user.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from hub_process import Hub, login, loopback_names, run_one_plus_one, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.jupyterhub]


@pytest.fixture
def names_to_loopback():
    with loopback_names():
        yield


def _pid_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent (the hub) has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize(
    "hub_options",
    [
        pytest.param({}, id="plain"),
        pytest.param({"internal_ssl": True}, id="internal-ssl"),
        pytest.param({"subdomain": True}, id="subdomains"),
    ],
)
def test_a_user_lives_through_the_proxy_jupyterhub_started(names_to_loopback, hub_options):
    with Hub(**hub_options) as hub:
        # The proxy is tmpnb-proxy, started by the hub with CHP's command line.
        with open(f"/proc/{hub.proxy_pid}/cmdline", "rb") as f:
            command_line = f.read().split(b"\0")
        assert any(part.endswith(b"tmpnb-proxy") for part in command_line)
        assert b"--error-target" in command_line

        browser = login(hub, "alice")
        server = hub.spawn("alice")
        if hub.subdomain:
            assert server.startswith(f"http://alice.hub.localhost:{hub.port}/")
            assert hub.route_of("alice") == "/alice.hub.localhost/user/alice"
        else:
            assert server == f"{hub.base}/user/alice/"

        lab = browser.get(server + "lab", timeout=60)  # through the hub's OAuth dance
        assert lab.status_code == 200
        assert lab.url == server + "lab"
        assert "JupyterLab" in lab.text

        token = hub.user_token("alice")
        assert run_one_plus_one(server, token) == "2"

        # A route deleted behind the hub's back is put back by its route check.
        route = hub.route_of("alice")
        assert hub.proxy_api("DELETE", route).status_code == 204
        wait_for("the hub re-adding alice's route", lambda: hub.route_of("alice") == route, 60)
        status = requests.get(server + "api/status", headers={"Authorization": f"token {token}"}, timeout=30)
        assert status.status_code == 200

        # A dead server: the proxy asks the hub's error target, which tells the user.
        pid = hub.server_pid("alice")
        os.kill(pid, signal.SIGTERM)
        wait_for("alice's server gone", lambda: _pid_gone(pid), 30)
        down = browser.get(server + "lab", timeout=60, allow_redirects=False)
        assert down.status_code == 503
        assert "Your server appears to be down" in down.text

        hub.stop("alice")
        assert hub.route_of("alice") is None


def test_the_hub_stops_its_tmpnb_proxy_on_shutdown():
    hub = Hub()
    try:
        hub.start()
        proxy_pid = hub.proxy_pid
        hub.process.send_signal(signal.SIGTERM)
        hub.process.wait(60)
        deadline = time.monotonic() + 30
        while not _pid_gone(proxy_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _pid_gone(proxy_pid)
    finally:
        hub.close()

"""The ``tmpnb-proxy`` command next to configurable-http-proxy 5.3, on the same requests.

A backend that thinks for a few seconds before answering, behind each proxy started with the
same command line: without a timeout both wait for it; with ``--timeout`` both drop the
visitor's connection; with ``--proxy-timeout`` both answer 503. Each proxy is a subprocess on
free loopback ports, stopped by its PID.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from hub_process import stop_pid, tmpnb_proxy_command
from tmpnb_process import CHP, REPO, free_port

pytestmark = pytest.mark.integration

THINKING = 3.0  # seconds the backend stays silent: a few beyond the 1 s timeouts below


class _Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(THINKING)
        body = b"done thinking"
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy gave up on us: what the timeout tests want

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def slow_backend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()



def start_proxy(kind: str, tmp_path, target: str, *options: str) -> tuple[subprocess.Popen, str]:
    if kind == "chp":
        if not os.path.exists(CHP):
            pytest.skip("configurable-http-proxy 5.3 not installed")
        command = [CHP]
    else:
        command = tmpnb_proxy_command(tmp_path / "bin")
    port, api_port = free_port(), free_port()
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}", PYTHONPATH=str(REPO))
    env["CONFIGPROXY_AUTH_TOKEN"] = "t"
    process = subprocess.Popen(
        [*command, "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1", "--api-port", str(api_port),
         "--default-target", target, *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            socket.create_connection(("127.0.0.1", api_port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            assert process.poll() is None, f"{kind} exited with {process.returncode}"
            time.sleep(0.1)
    stop_pid(process.pid)
    raise AssertionError(f"{kind} did not listen within 30s")


@pytest.fixture(params=["tmpnb-proxy", pytest.param("chp", marks=pytest.mark.chp)])
def proxy(request, tmp_path, slow_backend):
    started = []

    def start(*options: str) -> str:
        process, base = start_proxy(request.param, tmp_path, slow_backend, *options)
        started.append(process)
        return base

    yield start
    for process in started:
        stop_pid(process.pid)
        process.wait(10)


def test_without_a_timeout_a_thinking_backend_is_waited_for(proxy):
    base = proxy()
    reply = requests.get(f"{base}/think", timeout=60)
    assert (reply.status_code, reply.text) == (200, "done thinking")


def test_with_timeout_a_silent_exchange_drops_the_visitors_connection(proxy):
    base = proxy("--timeout", "1000")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/think", timeout=60)


def test_with_proxy_timeout_a_silent_backend_gives_503(proxy):
    base = proxy("--proxy-timeout", "1000")
    reply = requests.get(f"{base}/think", timeout=60)
    assert reply.status_code == 503

"""The proxy API client's cases against real servers: `twistd tmpnb-proxy` and CHP 5.3.

The cases are those of tests/test_proxyapi_client.py, run unchanged over real TCP on
127.0.0.1 with the production client (`make_chp_client`). Passing against
configurable-http-proxy proves tmpnb's own API (and the in-memory tests built on it)
answers as CHP does. Each server is a subprocess started once per module and ended by its PID.

CHP comes from npm: `npm install --prefix /opt/chp configurable-http-proxy@5.3.0`
(or set TMPNB_CHP to its bin/configurable-http-proxy); its tests skip when it is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
import treq
from treq.client import HTTPClient
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from tmpnb.proxyapi import make_chp_client

from listenports import listen_port

REPO = Path(__file__).resolve().parents[2]
CHP = os.environ.get("TMPNB_CHP", "/opt/chp/node_modules/configurable-http-proxy/bin/configurable-http-proxy")


def _load_cases():
    # tests/ is not a package: load the sibling module by its path to share its cases.
    spec = importlib.util.spec_from_file_location("proxyapi_client_cases", REPO / "tests" / "test_proxyapi_client.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cases = _load_cases()


@dataclass(frozen=True)
class LiveAPI:
    url: str
    token: str


def free_port() -> int:
    return listen_port()


def wait_for_api(process: subprocess.Popen, api: LiveAPI, log_path: str, timeout: float = 20.0) -> None:
    """Poll GET /api/routes until it answers 200; fail with the server's output if it dies."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(api.url + "/api/routes", headers={"Authorization": f"token {api.token}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{Path(log_path).read_text()}")
        try:
            with urllib.request.urlopen(request, timeout=1) as answer:
                if answer.status == 200:
                    json.load(answer)
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"API of the server never answered:\n{Path(log_path).read_text()}")


def run_server(argv: list[str], api: LiveAPI, cwd: Path) -> Iterator[LiveAPI]:
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": api.token}
    with tempfile.NamedTemporaryFile("w+", prefix="proxyapi-live-", suffix=".log", delete=False) as log:
        log_path = log.name
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_api(process, api, log_path)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.unlink(log_path)


def twistd_tmpnb_proxy() -> Iterator[LiveAPI]:
    port, api_port = free_port(), free_port()
    api = LiveAPI(f"http://127.0.0.1:{api_port}", secrets.token_hex(16))
    # twistd's run() from the repository root: the editable install does not expose
    # twisted/plugins/tmpnb_plugin.py to plugin discovery, the working directory does.
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
    argv += ["tmpnb-proxy", "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1", "--api-port", str(api_port)]
    yield from run_server(argv, api, REPO)


def configurable_http_proxy() -> Iterator[LiveAPI]:
    if not os.path.exists(CHP):
        pytest.skip(f"configurable-http-proxy not installed at {CHP}")
    version = subprocess.run(["node", CHP, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if not version.startswith("5."):
        pytest.skip(f"configurable-http-proxy {version} is not 5.x")
    port, api_port = free_port(), free_port()
    api = LiveAPI(f"http://127.0.0.1:{api_port}", secrets.token_hex(16))
    argv = ["node", CHP, "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1", "--api-port", str(api_port)]
    yield from run_server(argv, api, Path(tempfile.gettempdir()))


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(twistd_tmpnb_proxy, id="twistd-tmpnb-proxy"),
        pytest.param(configurable_http_proxy, id="chp-5.3", marks=pytest.mark.chp),
    ],
)
def live_api(request) -> Iterator[LiveAPI]:
    yield from request.param()


@pytest.mark.integration
@pytest.mark.parametrize("case", cases.CASES + cases.HTTP_CASES, ids=cases.case_id)
@pytest_twisted.ensureDeferred
async def test_proxy_api_client_against_a_live_server(live_api, case):
    from twisted.internet import reactor

    pool = HTTPConnectionPool(reactor, persistent=True)
    api = make_chp_client(reactor, live_api.url, live_api.token, pool=pool)
    try:
        for path in await api.list_routes():  # every case starts from an empty table
            await api.delete_route(path)
        await case(
            cases.Harness(
                api=api,
                pass_time=lambda seconds: deferLater(reactor, seconds),
                with_token=lambda token: make_chp_client(reactor, live_api.url, token, pool=pool),
            )
        )
    finally:
        await pool.closeCachedConnections()


# The HTTP answers themselves, in order, as tests/test_proxy_api.py expects them from tmpnb:
# (method, path under the API, JSON body, good token?, status, JSON content type?, body)
EXCHANGES = [
    ("GET", "/api/routes", None, False, 403, False, b""),
    ("POST", "/api/routes/user/a%20b/", {"target": "http://127.0.0.1:9", "user": "a"}, True, 201, False, b""),
    ("POST", "/api/routes/user/c", {"nottarget": 1}, True, 400, False, b"Must specify 'target' as string"),
    ("GET", "/api/routes/user/a%20b", None, True, 200, True, None),
    ("GET", "/api/routes/user/c", None, True, 404, False, b""),
    ("GET", "/api/routes?inactive_since=yesterday", None, True, 400, False, b"Invalid datestamp 'yesterday' must be ISO8601."),
    ("PUT", "/api/routes/user/c", {"target": "http://127.0.0.1:9"}, True, 405, False, b"Method not supported"),
    ("GET", "/api/other", None, True, 404, False, b"Not Found"),
    ("DELETE", "/api/routes/user/a%20b", None, True, 204, False, b""),
    ("DELETE", "/api/routes/user/a%20b", None, True, 404, False, b""),
    ("GET", "/api/routes", None, True, 200, True, b"{}"),
]


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_the_http_answers_are_chps(live_api):
    from twisted.internet import reactor

    http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
    seen = []
    for method, path, body, good_token, *_ in EXCHANGES:
        token = live_api.token if good_token else "wrong"
        response = await http.request(
            method, live_api.url + path, headers={"Authorization": f"token {token}"}, json=body
        )
        content = await treq.content(response)
        is_json = response.headers.getRawHeaders(b"content-type") == [b"application/json"]
        seen.append((response.code, is_json, content))
    expected = [(status, is_json, content) for *_, status, is_json, content in EXCHANGES]
    # the route's own JSON carries a time: compare its shape, not its bytes
    route_answer = json.loads(seen[3][2])
    assert sorted(route_answer) == ["last_activity", "target", "user"]
    seen[3] = (*seen[3][:2], None)
    assert seen == expected

"""The route API is a key to every visitor: unix targets only under the socket root, and
tmpnb-proxy never serves an open API off loopback."""

from __future__ import annotations

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.python import usage

from tests.results import succeeded
from tmpnb.proxy.api import ProxyAPIResource
from tmpnb.proxy.cli import main
from tmpnb.proxy.options import Options
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxy.targets import socket_under
from tmpnb.sockets import proxy_target

API = "http://127.0.0.1:8001/api/routes"
TOKEN = "t0k"
ROOT = "/run/tmpnb"


def post(root: str | None, target: str) -> tuple[int, bytes, RouteTable]:
    routes = RouteTable(Clock())
    http = StubTreq(ProxyAPIResource(routes, TOKEN, unix_root=root))
    response = succeeded(http.post(f"{API}/user/abc", json={"target": target},
                                   headers={"Authorization": f"token {TOKEN}"}))
    return response.code, succeeded(response.content()), routes


def test_a_socket_below_the_root_is_accepted():
    code, _, routes = post(ROOT, proxy_target("/run/tmpnb/tmpnb/abc/jupyter.sock"))
    assert code == 201 and routes.get("/user/abc") is not None


@pytest.mark.parametrize("path", [
    "/var/run/docker.sock", "/run/docker.sock", "/run/tmpnb/../docker.sock", "/run/tmpnb/./x/../../docker.sock",
    "/run/tmpnbx/jupyter.sock", "/run/tmpnb", "/run/tmpnb/", "/run//tmpnb/a.sock", "/run/tmpnb/a\0b",
])
def test_any_other_socket_is_400_and_no_route(path):
    code, body, routes = post(ROOT, proxy_target(path))
    assert code == 400 and b"must lie under /run/tmpnb" in body
    assert routes.get("/user/abc") is None


def test_without_a_root_no_unix_target_at_all_and_http_targets_as_before():
    assert post(None, proxy_target("/run/tmpnb/tmpnb/abc/jupyter.sock"))[0] == 400
    assert post(None, "http://127.0.0.1:9000")[0] == 201


@pytest.mark.parametrize("target", ["http+unix://relative.sock", "unix+http://%2Fvar%2Frun%2Fdocker.sock"])
def test_malformed_or_aliased_unix_targets_are_400(target):
    assert post(ROOT, target)[0] == 400


def test_socket_under_is_plain_prefix_on_path_boundaries():
    assert socket_under("/run/tmpnb/", "/run/tmpnb/i/a/jupyter.sock")
    assert not socket_under("/run/tmpnb", "/run/tmpnb-other/a.sock")


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


@pytest.mark.parametrize("api_ip", ["0.0.0.0", "", "192.0.2.10", "::", "example.org"])
def test_tmpnb_proxy_refuses_an_open_api_off_loopback(monkeypatch, api_ip):
    monkeypatch.delenv("CONFIGPROXY_AUTH_TOKEN", raising=False)
    with pytest.raises(usage.UsageError, match="would accept anyone"):
        parse("--api-ip", api_ip)


@pytest.mark.parametrize("argv", [[], ["--api-ip", "127.0.0.5"], ["--api-ip", "::1"], ["--api-ip", "localhost"],
                                  ["--api-socket", "/tmp/api.sock"]])
def test_without_a_token_loopback_or_a_unix_socket_is_still_fine(monkeypatch, argv):
    monkeypatch.delenv("CONFIGPROXY_AUTH_TOKEN", raising=False)
    assert parse(*argv)["auth-token"] is None


def test_with_a_token_any_api_ip_is_fine(monkeypatch):
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "t")
    assert parse("--api-ip", "0.0.0.0")["api-ip"] == "0.0.0.0"


def test_tmpnb_proxy_cli_says_why_and_exits_nonzero(monkeypatch, capsys):
    monkeypatch.delenv("CONFIGPROXY_AUTH_TOKEN", raising=False)
    assert main(["--api-ip", "0.0.0.0"]) != 0
    assert "would accept anyone" in capsys.readouterr().err

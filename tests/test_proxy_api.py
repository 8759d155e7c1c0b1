"""The REST API at the HTTP level: what configurable-http-proxy 5.3 answers, we answer.

Each expectation below was read from CHP's lib/configproxy.js and checked with curl
against a running CHP 5.3.0 (status codes, bodies, which answers carry a content type).
"""

from __future__ import annotations

import json

import pytest
import treq
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from treq.testing import StubTreq

from tmpnb.proxy.api import ProxyAPIResource
from tmpnb.proxy.routes import RouteTable, format_activity
from tests.results import succeeded
from tmpnb.proxy.tap import Options, makeService

TOKEN = "s3cret"
AUTH = {"Authorization": f"token {TOKEN}"}
API = "http://127.0.0.1:8001/api/routes"
START = 1795309013.123  # 2026-11-22T00:56:53.123Z



class Server:
    """The API resource on a Clock, spoken to through StubTreq (a real Agent and Site in memory)."""

    def __init__(self, token: str | None = TOKEN, start: float = START) -> None:
        self.clock = Clock()
        self.clock.advance(start)
        self.routes = RouteTable(self.clock)
        # Any unix socket: these tests are about CHP's API; tests/test_proxy_api_targets.py
        # checks the socket root (tmpnb passes its --socket-root).
        self.http = StubTreq(ProxyAPIResource(self.routes, token, unix_root="/"))

    def call(self, method: str, url: str, headers: dict | None = AUTH, **kwargs):
        response = succeeded(self.http.request(method, url, headers=headers, **kwargs))
        body = succeeded(treq.content(response))
        return response.code, response.headers.getRawHeaders(b"content-type"), body


@pytest.fixture
def server() -> Server:
    return Server()


# --- authorization


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "token wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "token"},
    ],
)
def test_without_the_right_token_every_method_is_refused_with_403(server, headers):
    server.routes.add("/a", {"target": "http://a"})
    for method in ("GET", "POST", "DELETE"):
        code, _, _ = server.call(method, f"{API}/a", headers=headers, json={"target": "http://b"})
        assert code == 403
    assert server.routes.get("/a")["target"] == "http://a"


def test_the_token_is_found_as_chp_finds_it_after_the_word_token(server):
    code, _, _ = server.call("GET", API, headers={"Authorization": f"token   {TOKEN}"})
    assert code == 200


def test_without_a_configured_token_the_api_is_open_as_in_chp():
    open_server = Server(token=None)
    code, _, _ = open_server.call("GET", API, headers=None)
    assert code == 200


# --- reading


def test_get_routes_returns_the_table_as_json(server):
    server.routes.add("/user/abc/", {"target": "http://127.0.0.1:9000", "user": "abc"})
    code, content_type, body = server.call("GET", API)
    assert (code, content_type) == (200, [b"application/json"])
    assert json.loads(body) == {
        "/user/abc": {"target": "http://127.0.0.1:9000", "user": "abc", "last_activity": "2026-11-22T00:56:53.123Z"}
    }


def test_get_routes_with_a_trailing_slash_is_the_whole_table_too(server):
    server.routes.add("/a", {"target": "http://a"})
    code, _, body = server.call("GET", f"{API}/")
    assert code == 200
    assert list(json.loads(body)) == ["/a"]


def test_get_one_route_decodes_its_path(server):
    server.routes.add("/user/a b", {"target": "http://a"})
    code, content_type, body = server.call("GET", f"{API}/user/a%20b")
    assert (code, content_type) == (200, [b"application/json"])
    assert json.loads(body) == {"target": "http://a", "last_activity": "2026-11-22T00:56:53.123Z"}


def test_get_a_missing_route_is_404_with_an_empty_body(server):
    assert server.call("GET", f"{API}/user/none") == (404, None, b"")


@pytest.mark.parametrize("name", ["inactive_since", "inactiveSince"])
def test_inactive_since_keeps_routes_idle_since_before_that_time(server, name):
    server.routes.add("/old", {"target": "http://old"})
    server.clock.advance(600)
    server.routes.add("/new", {"target": "http://new"})
    cutoff = format_activity(START + 300)
    code, _, body = server.call("GET", API, params={name: cutoff})
    assert code == 200
    assert list(json.loads(body)) == ["/old"]


MIDNIGHT = 1795305600.0  # 2026-11-22T00:00:00Z


@pytest.mark.parametrize(
    "cutoff, expected",
    [
        # /old was last active at 23:00Z the day before, /new at 02:00Z
        ("2026-11-22T02:30:00+01:00", ["/old"]),  # 01:30Z: the offset counts
        ("2026-11-22T03:00:00", ["/new", "/old"]),  # no offset: UTC
        ("2026-11-21T22:00:00", []),
        ("2026-11-22T01:00:00.000Z", ["/old"]),
        ("2026-11-23", ["/new", "/old"]),
    ],
)
def test_inactive_since_accepts_iso8601_with_or_without_an_offset(cutoff, expected):
    server = Server(start=MIDNIGHT - 3600)
    server.routes.add("/old", {"target": "http://old"})
    server.clock.advance(3 * 3600)
    server.routes.add("/new", {"target": "http://new"})
    code, _, body = server.call("GET", API, params={"inactive_since": cutoff})
    assert code == 200
    assert sorted(json.loads(body)) == expected


def test_a_bad_date_is_400_with_chps_message(server):
    code, _, body = server.call("GET", API, params={"inactive_since": "last tuesday"})
    assert (code, body) == (400, b"Invalid datestamp 'last tuesday' must be ISO8601.")


# --- writing


def test_post_adds_a_route_with_the_data_as_given_and_answers_201_empty(server):
    server.clock.advance(2)
    code, content_type, body = server.call("POST", f"{API}/user/abc", json={"target": "http+unix://%2Fs", "user": "abc"})
    assert (code, content_type, body) == (201, None, b"")
    assert server.routes.get("/user/abc") == {
        "target": "http+unix://%2Fs",
        "user": "abc",
        "last_activity": format_activity(START + 2),
    }


def test_post_to_an_existing_route_replaces_it(server):
    server.call("POST", f"{API}/a", json={"target": "http://one", "old": True})
    code, _, _ = server.call("POST", f"{API}/a/", json={"target": "http://two"})
    assert code == 201
    assert server.routes.get("/a") == {"target": "http://two", "last_activity": format_activity(START)}


def test_post_without_a_path_sets_the_root_route(server):
    assert server.call("POST", API, json={"target": "http://default"})[0] == 201
    assert server.routes.get("/")["target"] == "http://default"


@pytest.mark.parametrize("body", [{"nottarget": "x"}, {"target": 5}, ["target"], "http://x"])
def test_post_without_a_string_target_is_400(server, body):
    code, _, text = server.call("POST", f"{API}/a", json=body)
    assert (code, text) == (400, b"Must specify 'target' as string")
    assert server.routes.get("/a") is None


def test_post_with_a_body_that_is_not_json_is_400(server):
    code, _, text = server.call("POST", f"{API}/a", data=b"{not json")
    assert code == 400
    assert text.startswith(b"Body not valid JSON")


def test_delete_removes_a_route_with_204(server):
    server.routes.add("/user/abc", {"target": "http://a"})
    assert server.call("DELETE", f"{API}/user/abc/") == (204, None, b"")
    assert server.routes.get("/user/abc") is None


def test_delete_of_a_missing_route_is_404(server):
    assert server.call("DELETE", f"{API}/user/none") == (404, None, b"")


# --- everything else


def test_other_paths_are_404(server):
    assert server.call("GET", "http://127.0.0.1:8001/api/other")[0] == 404
    assert server.call("GET", "http://127.0.0.1:8001/api/routesx")[0] == 404


def test_other_methods_are_405(server):
    assert server.call("PUT", f"{API}/a", json={"target": "http://a"})[0] == 405


# --- `twistd tmpnb-proxy`: the API on its own listener, with CHP's option names


def make_proxy_service(monkeypatch, argv: list[str], token: str | None = TOKEN):
    if token is None:
        monkeypatch.delenv("CONFIGPROXY_AUTH_TOKEN", raising=False)
    else:
        monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", token)
    options = Options()
    options.parseOptions(argv)
    reactor = MemoryReactorClock()
    service = makeService(options, reactor=reactor)
    service.startService()
    listeners = {(interface, port): factory for port, factory, _, interface in reactor.tcpServers}
    return options, service, listeners


def test_the_api_listens_on_port_plus_one_on_loopback_by_default(monkeypatch):
    options, service, listeners = make_proxy_service(monkeypatch, ["--port", "9100"])
    assert options["api-port"] == 9101
    assert set(listeners) == {("127.0.0.1", 9100), ("127.0.0.1", 9101)}
    service.stopService()


def test_chps_option_names_choose_the_listeners(monkeypatch):
    _, service, listeners = make_proxy_service(
        monkeypatch, ["--ip", "127.0.0.2", "--port", "9100", "--api-ip", "127.0.0.3", "--api-port", "9200"]
    )
    assert set(listeners) == {("127.0.0.2", 9100), ("127.0.0.3", 9200)}
    service.stopService()


def test_the_api_listener_wants_the_token_from_the_environment_and_shows_the_default_target(monkeypatch):
    _, service, listeners = make_proxy_service(
        monkeypatch, ["--port", "9100", "--default-target", "http://127.0.0.1:9000"], token="from-env"
    )
    api = StubTreq(listeners[("127.0.0.1", 9101)].resource)
    refused = succeeded(api.get(API, headers={"Authorization": f"token {TOKEN}"}))
    assert refused.code == 403
    answer = succeeded(api.get(API, headers={"Authorization": "token from-env"}))
    routes = succeeded(answer.json())
    assert {path: route["target"] for path, route in routes.items()} == {"/": "http://127.0.0.1:9000"}
    service.stopService()


def test_without_a_token_in_the_environment_the_api_is_open_and_says_so(monkeypatch):
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    try:
        _, service, listeners = make_proxy_service(monkeypatch, ["--port", "9100"], token=None)
    finally:
        globalLogPublisher.removeObserver(events)
    [warning] = [event for event in events if event["log_level"] == LogLevel.warn]
    assert warning["variable"] == "CONFIGPROXY_AUTH_TOKEN"
    api = StubTreq(listeners[("127.0.0.1", 9101)].resource)
    assert succeeded(api.get(API)).code == 200
    service.stopService()


# --- what CHP does that JupyterHub relies on


def test_a_route_with_an_empty_segment_is_kept_as_chp_keeps_it(server):
    code, _, _ = server.call("POST", f"{API}/user//x", json={"target": "http://x"})
    assert code == 201
    code, _, body = server.call("GET", API)
    assert list(json.loads(body)) == ["/user//x"]
    assert server.call("GET", f"{API}/user/x")[0] == 404
    assert server.call("DELETE", f"{API}/user//x")[0] == 204


def test_with_host_routing_a_route_records_its_host_as_chp_does():
    server = Server()
    server.http = StubTreq(ProxyAPIResource(server.routes, TOKEN, host_routing=True))
    server.call("POST", f"{API}/alice.hub.example/user/alice/", json={"target": "http://a", "jupyterhub": True})
    _, _, body = server.call("GET", f"{API}/alice.hub.example/user/alice")
    route = json.loads(body)
    assert (route["host"], route["target"], route["jupyterhub"]) == ("alice.hub.example", "http://a", True)


def test_inactive_since_in_rfc_1123_form_is_understood(server):
    server.routes.add("/old", {"target": "http://old"})
    code, _, body = server.call("GET", API, params={"inactive_since": "Tue, 01 Dec 2026 00:00:00 GMT"})
    assert (code, list(json.loads(body))) == (200, ["/old"])

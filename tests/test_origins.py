"""Each visitor its own origin (tmpnb/origins): --subdomain-host parsed, the URLs built from it,
ids that survive lower-casing, routes keyed by host, host-locked cookies, the orchestrator on the
bare host only, absolute URLs where a page on a visitor's host needs them, and the warning."""

from __future__ import annotations

import ast
import json
import math
import re
import string

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.python import usage
from treq.testing import StubTreq

from tests.builders import build_pool, one_address_gate
from tests.results import succeeded
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerrecipe import LaunchRequest, server_command, tornado_settings
from tmpnb.ids import ID_ALPHABET
from tmpnb.origins import Origins, SubdomainHostError, parse_subdomain_host
from tmpnb.origins.cookies import LOGIN_COOKIE, XSRF_COOKIE
from tmpnb.origins.exposure import WARNING, endpoint_interface, exposed, warn_if_exposed
from tmpnb.origins.ids import LOWER_ID_ALPHABET, new_lower_container_id, subdomain_id_length
from tmpnb.origins.routing import HostRoutes, host_route, path_route
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxy.testing import ProxyHarness
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.redirector.web import visitor_spawn_url
from tmpnb.settings import container_spec, pool_config, web_settings
from tmpnb.share.web import page_csp
from tmpnb.tap import Options, makeService
from tmpnb.web import WebSettings, make_resource
from tests.test_web import FakePool, header

NB = parse_subdomain_host("https://nb.example.org")
LOCAL = parse_subdomain_host("http://nb.localhost:8000")


# -- --subdomain-host -----------------------------------------------------------------------


@pytest.mark.parametrize("url, origins", [
    ("https://nb.example.org", Origins("https", "nb.example.org", None)),
    ("https://NB.Example.org:443/", Origins("https", "nb.example.org", None)),
    ("https://nb.example.org:8443", Origins("https", "nb.example.org", 8443)),
    ("http://localhost:8000", Origins("http", "localhost", 8000)),
    ("http://nb.localhost:8000", Origins("http", "nb.localhost", 8000)),
    ("", Origins()),
    (None, Origins()),
])
def test_the_subdomain_host_is_a_scheme_a_lower_case_host_and_a_port(url, origins):
    assert parse_subdomain_host(url) == origins


@pytest.mark.parametrize("url", [
    "http://nb.example.org",  # plain http beyond localhost: no Secure cookies, no locking
    "ftp://nb.example.org", "nb.example.org", "https://nb.example.org/hub", "https://nb.example.org?x=1",
    "https://user@nb.example.org", "https://127.0.0.1", "https://[::1]:8000", "https://nb.example.org:99999",
    "https://" + "a" * 64 + ".org", "https://a..org",
])
def test_anything_else_is_refused(url):
    with pytest.raises(SubdomainHostError):
        parse_subdomain_host(url)


def test_the_command_line_refuses_a_bad_subdomain_host_in_one_line():
    with pytest.raises(usage.UsageError, match="must be https://"):
        Options().parseOptions(["--subdomain-host", "http://nb.example.org", "--share-store", "none"])


# -- URLs ---------------------------------------------------------------------------------


def test_in_subdomain_mode_a_visitors_server_is_on_its_own_host():
    assert NB.server_url("abc", "/user/abc/tree") == "https://abc.nb.example.org/user/abc/tree"
    assert LOCAL.server_url("abc", "/user/abc/") == "http://abc.nb.localhost:8000/user/abc/"
    assert NB.orchestrator_url("/share/x") == "https://nb.example.org/share/x"
    assert LOCAL.visitor_source == "http://*.nb.localhost:8000"


def test_in_path_mode_urls_stay_paths_on_tmpnbs_origin():
    path = Origins()
    assert path.server_url("abc", "/user/abc/tree") == "/user/abc/tree"
    assert path.orchestrator_url("/share/x") == "/share/x"
    assert path.visitor_source == ""
    assert path.container_of_host("abc.nb.example.org") is None


@pytest.mark.parametrize("host, container", [
    ("abc.nb.example.org", "abc"), ("ABC.NB.example.org:443", "abc"), ("nb.example.org", None),
    ("x.abc.nb.example.org", None), ("abcnb.example.org", None), ("evil.org", None), ("[::1]:80", None),
    (".nb.example.org", None),
])
def test_the_container_a_host_names(host, container):
    assert NB.container_of_host(host) == container


def test_hand_outs_and_the_api_give_the_visitors_own_origin():
    pool = FakePool()
    treq = StubTreq(make_resource(pool, WebSettings(origins=LOCAL), gate=one_address_gate()))
    response = succeeded(treq.get("http://nb.localhost:8000/", allow_redirects=False))
    assert header(response, "Location") == "http://c00.nb.localhost:8000/user/c00/tree?token=tok00"
    response = succeeded(treq.post("http://nb.localhost:8000/api/spawn", data=b"{}"))
    assert json.loads(succeeded(response.content()))["url"] == "http://c01.nb.localhost:8000/user/c01/?token=tok01"


# -- the orchestrator answers on the bare host ------------------------------------------------


def test_on_a_visitors_host_the_orchestrator_hands_out_nothing_and_sends_gets_to_the_bare_host():
    pool = FakePool()
    treq = StubTreq(make_resource(pool, WebSettings(origins=LOCAL), gate=one_address_gate()))
    for path in ["/", "/spawn/x.ipynb", "/user/c09/tree?x=1", "/remix/abc"]:
        response = succeeded(treq.get("http://c05.nb.localhost:8000" + path, allow_redirects=False))
        assert response.code == 302
        assert header(response, "Location") == "http://nb.localhost:8000" + path
    response = succeeded(treq.post("http://c05.nb.localhost:8000/api/spawn", data=b"{}"))
    assert response.code == 404
    assert pool.assigned == []


def test_the_share_button_may_post_to_its_own_host():
    """The Share button posts to /api/share on its page's origin, a visitor's subdomain."""
    treq = StubTreq(make_resource(FakePool(), WebSettings(origins=LOCAL), extensions=[_share_api_stub], gate=one_address_gate()))
    response = succeeded(treq.post("http://c05.nb.localhost:8000/api/share", data=b"{}"))
    assert response.code == 200 and succeeded(response.content()) == b"share api"


def _share_api_stub(tree):
    from twisted.web.resource import Resource

    class Stub(Resource):
        isLeaf = True

        def render_POST(self, request):
            return b"share api"

    tree.api.putChild(b"share", Stub())


def test_other_hosts_such_as_the_address_a_redirector_polls_are_served_as_before():
    pool = FakePool()
    treq = StubTreq(make_resource(pool, WebSettings(origins=LOCAL), gate=one_address_gate()))
    response = succeeded(treq.get("http://127.0.0.1:8000/api/stats"))
    assert response.code == 200


def test_the_share_page_lets_its_remix_form_lead_to_a_visitors_host():
    assert b"form-action 'self' http://*.nb.localhost:8000;" in page_csp("'self'", LOCAL.visitor_source)
    assert b"form-action 'self';" in page_csp("'self'")


# -- ids ------------------------------------------------------------------------------------


def test_subdomain_ids_are_lower_case_letters_and_digits_with_no_less_entropy():
    assert LOWER_ID_ALPHABET == string.ascii_lowercase + string.digits
    for length in range(1, 65):
        lower = subdomain_id_length(length)
        assert lower <= 63
        if lower < 63:
            assert lower * math.log2(36) >= length * math.log2(len(ID_ALPHABET))
    assert subdomain_id_length(12) == 14  # 71.5 bits -> 72.4
    ids = {new_lower_container_id(14) for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[a-z0-9]{14}", i) for i in ids)
    with pytest.raises(ValueError):
        new_lower_container_id(64)


def test_the_pool_is_told_the_longer_length_in_subdomain_mode():
    options = Options()
    options.parseOptions(["--subdomain-host", "https://nb.example.org", "--share-store", "none"])
    assert pool_config(options).user_length == 14
    options = Options()
    options.parseOptions(["--share-store", "none"])
    assert pool_config(options).user_length == 12


# -- routes keyed by host ------------------------------------------------------------------


def test_routes_go_to_the_proxy_keyed_by_host_and_come_back_keyed_by_path():
    assert host_route(NB, "/user/abc") == "/abc.nb.example.org/user/abc"
    assert host_route(NB, "/other") == "/other"
    assert path_route(NB, "/abc.nb.example.org/user/abc") == "/user/abc"
    assert path_route(NB, "/abc.nb.example.org/user/xyz") is None  # not its own host
    assert path_route(NB, "/user/abc") is None
    table = RouteTable(Clock())
    routes = HostRoutes(InProcessProxyAPI(table), NB)
    succeeded(routes.add_route("/user/abc", "http+unix://x", container="abc"))
    table.add("/", {"target": "http://elsewhere"})
    assert set(table.all()) == {"/abc.nb.example.org/user/abc", "/"}
    assert succeeded(routes.get_route("/user/abc"))["target"] == "http+unix://x"
    assert set(succeeded(routes.list_routes())) == {"/user/abc", "/"}
    succeeded(routes.delete_route("/user/abc"))
    assert set(table.all()) == {"/"}


def test_the_proxy_serves_a_visitors_route_on_that_visitors_host_only():
    harness = ProxyHarness(host_routing=True)
    succeeded(HostRoutes(InProcessProxyAPI(harness.routes), LOCAL).add_route("/user/abc", harness.unix_target("abc")))
    harness.visit().send(b"GET /user/abc/tree HTTP/1.1\r\nHost: abc.nb.localhost:8000\r\n\r\n")
    assert harness.accept().address == "/run/test/abc/jupyter.sock"
    for host in [b"xyz.nb.localhost:8000", b"nb.localhost:8000", b"127.0.0.1:8000"]:
        visitor = harness.visit()
        visitor.send(b"GET /user/abc/tree HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert visitor.received().startswith(b"HTTP/1.1 404"), host


def test_a_pool_over_host_routes_keeps_its_visitors_through_heartbeats(logged):
    """The heartbeat reconciles routes by /user/<id>: through HostRoutes it finds each one."""
    table = RouteTable(Clock())
    rig = build_pool(PoolConfig(pool_size=1, capacity=3, user_length=14, cull_period=60, cull_timeout=600),
                     routes=table, proxy=HostRoutes(InProcessProxyAPI(table), NB),
                     new_id=new_lower_container_id)
    rig.pool.startService()
    rig.answer_all()
    assignment = succeeded(rig.pool.acquire())
    assert re.fullmatch(r"[a-z0-9]{14}", assignment.container_id)
    route = f"/{assignment.container_id}.nb.example.org/user/{assignment.container_id}"
    assert set(table.all()) == {route}
    for _ in range(4):
        rig.clock.advance(60)
        rig.answer_all()
    assert set(table.all()) == {route}
    states = rig.pool.stats()["states"]
    assert states.get("assigned", 0) + states.get("idle", 0) == 1 and not states.get("culled"), states
    # Found where the heartbeat looks: never "lost" (and added again), never a stray.
    assert not [e for e in logged if "lost the route" in e.get("log_format", "")
                or "leads to no container" in e.get("log_format", "")]
    rig.pool.stopService()


# -- cookies --------------------------------------------------------------------------------


def _command(host_locked: bool) -> list[str]:
    spec = ContainerSpec(host_locked_cookies=host_locked)
    return server_command(LaunchRequest("abc", "tok", "/user/abc/", "/tmp/x", spec))


def test_in_subdomain_mode_the_servers_cookies_are_host_locked():
    settings = ast.literal_eval(tornado_settings("'self'", host_locked_cookies=True))
    assert settings["xsrf_cookie_name"] == XSRF_COOKIE == "__Host-tmpnb-xsrf"
    assert settings["xsrf_cookie_kwargs"] == {"path": "/", "secure": True}
    command = _command(True)
    assert f"--IdentityProvider.cookie_name={LOGIN_COOKIE}" in command
    assert LOGIN_COOKIE.startswith("__Host-")
    [options] = [a for a in command if a.startswith("--IdentityProvider.cookie_options=")]
    assert ast.literal_eval(options.split("=", 1)[1]) == {"path": "/", "secure": True}


def test_in_path_mode_the_servers_keep_jupyters_cookies():
    """All servers share one host there: Path=/ would make them overwrite each other's."""
    assert "xsrf_cookie_name" not in ast.literal_eval(tornado_settings("'self'"))
    assert not [a for a in _command(False) if "IdentityProvider" in a]


def test_the_option_reaches_the_container_spec_and_the_web_settings():
    options = Options()
    options.parseOptions(["--subdomain-host", "https://nb.example.org", "--share-store", "none"])
    assert container_spec(options).host_locked_cookies
    settings = web_settings(options, {})
    assert settings.origins == NB
    assert settings.public_url == "https://nb.example.org"  # told to a redirector


# -- the redirector -------------------------------------------------------------------------


@pytest.mark.parametrize("url, sent", [
    ("/user/a/?token=t", "https://n1.example.org/user/a/?token=t"),
    ("https://abc.n1.example.org/user/abc/?token=t", "https://abc.n1.example.org/user/abc/?token=t"),
    ("https://abc.n2.example.org/user/abc/", None),  # another node's name
    ("https://evil.org/user/abc/", None),
    ("http://abc.n1.example.org/user/abc/", None),  # another scheme
    ("https://abc.n1.example.org:8443/user/abc/", None),
    ("https://x.abc.n1.example.org/user/abc/", None),
    ("//evil.org/x", None),
    ("https://user@abc.n1.example.org/", None),
])
def test_the_redirector_sends_visitors_only_to_the_nodes_own_hosts(url, sent):
    assert visitor_spawn_url("https://n1.example.org", url) == sent


# -- the warning ----------------------------------------------------------------------------


@pytest.mark.parametrize("listen, interface", [
    ("tcp:8000", ""), ("tcp:8000:interface=0.0.0.0", "0.0.0.0"), (r"tcp:8000:interface=\:\:1", "::1"),
    ("ssl:443:privateKey=k.pem", ""), ("unix:/run/x.sock", None),
])
def test_the_interface_an_endpoint_listens_on(listen, interface):
    assert endpoint_interface(listen) == interface


@pytest.mark.parametrize("listen, warned", [
    ("tcp:8000:interface=127.0.0.1", False), (r"tcp:8000:interface=\:\:1", False),
    ("tcp:8000:interface=localhost", False), ("unix:/run/x.sock", False),
    ("tcp:8000", True), ("tcp:8000:interface=0.0.0.0", True), ("tcp:8000:interface=192.0.2.1", True),
    ("ssl:443:privateKey=k.pem", True),
])
def test_path_mode_on_an_address_others_reach_is_warned_about(listen, warned):
    assert exposed(listen, Origins()) == warned
    assert not exposed(listen, NB)


def test_the_warning_is_one_event_that_says_what_is_exposed(logged):
    assert warn_if_exposed("tcp:8000:interface=0.0.0.0", Origins())
    assert not warn_if_exposed("tcp:8000:interface=0.0.0.0", NB)
    assert not warn_if_exposed("tcp:8000:interface=127.0.0.1", Origins())
    warnings = [e for e in logged if e["log_format"] == WARNING]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == LogLevel.warn
    assert "--subdomain-host" in WARNING and "other visitor" in WARNING


def test_twistd_tmpnb_warns_once_at_start(logged, tmp_path):
    options = Options()
    options.parseOptions(["--listen", "tcp:8123:interface=0.0.0.0", "--share-store", "none",
                          f"--socket-root={tmp_path}", "--instance=t1"])
    makeService(options, reactor=MemoryReactorClock(), environ={})
    assert len([e for e in logged if e.get("log_format") == WARNING]) == 1


def test_in_subdomain_mode_the_embedded_proxy_routes_by_host_and_twistd_does_not_warn(logged, tmp_path):
    options = Options()
    options.parseOptions(["--listen", "tcp:8123:interface=0.0.0.0", "--share-store", "none",
                          f"--socket-root={tmp_path}", "--instance=t1", "--subdomain-host=https://nb.example.org"])
    reactor = MemoryReactorClock()
    top = makeService(options, reactor=reactor, environ={})
    top.getServiceNamed("proxy").privilegedStartService()
    [(_, public, _, _)] = reactor.tcpServers
    assert public.host_routing
    assert not [e for e in logged if e.get("log_format") == WARNING]

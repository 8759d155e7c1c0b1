"""The front door's options reach the public proxy, the orchestrator's Site and Share, in
`twistd tmpnb` and in `tmpnb-proxy` (the parts are tested in test_proxy_frontdoor.py,
test_http_guard.py and test_share_bounded.py)."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.web.server import Site

from tmpnb.http.guard import GuardedChannel, RequestLimits
from tmpnb.proxy.options import Options as ProxyOptions
from tmpnb.proxy.settings import ProxySettings, settings_from_options
from tmpnb.settings import front_door, request_limits
from tmpnb.tap import Options, makeService


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_the_node_has_a_front_door_by_default():
    options = parse()
    assert request_limits(options) == RequestLimits(head_timeout=20.0, body_timeout=20.0, body_min_rate=500.0,
                                                    max_body=65536)
    assert front_door(options) == {"head_timeout": 20.0, "body_timeout": 20.0, "body_min_rate": 500.0,
                                   "max_client_connections": 256, "default_target_max_body": 65536}


def test_zero_turns_each_limit_off():
    options = parse("--head-timeout=0", "--body-timeout=0", "--max-client-connections=0", "--web-max-body=0")
    assert request_limits(options).head_timeout is None and request_limits(options).max_body is None
    door = front_door(options)
    assert door["head_timeout"] is door["body_timeout"] is door["default_target_max_body"] is None
    assert door["max_client_connections"] == 0


def test_the_embedded_proxy_and_the_orchestrator_get_the_options(tmp_path):
    reactor = MemoryReactorClock()
    options = parse(f"--socket-root={tmp_path}", "--instance=t1", "--listen=tcp:8123:interface=127.0.0.1",
                    "--head-timeout=3", "--body-timeout=4", "--body-min-rate=50", "--max-client-connections=7",
                    "--web-max-body=1000", "--share-read-timeout=9")
    top = makeService(options, reactor=reactor, environ={})
    for name in ("proxy", "web"):
        top.getServiceNamed(name).privilegedStartService()
    [public] = [factory for port, factory, *_ in reactor.tcpServers if port == 8123]
    assert (public.limits.head_deadline, public.limits.body, public.limits.body_rate) == (3.0, 4.0, 50.0)
    assert public.clients.cap == 7 and public.default_target_max_body == 1000
    [web] = [factory for _, factory, *_ in reactor.unixServers if isinstance(factory, Site)]
    channel = web.buildProtocol(None)
    assert isinstance(channel, GuardedChannel)
    assert channel._limits == RequestLimits(head_timeout=3.0, body_timeout=4.0, body_min_rate=50.0, max_body=1000)


def test_with_an_external_proxy_the_orchestrators_own_listener_is_guarded(monkeypatch):
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "t")
    reactor = MemoryReactorClock()
    options = parse("--proxy-api-url=http://127.0.0.1:8001", "--listen=tcp:8124:interface=127.0.0.1")
    top = makeService(options, reactor=reactor, environ={"CONFIGPROXY_AUTH_TOKEN": "t"})
    top.getServiceNamed("web").privilegedStartService()
    [web] = [factory for port, factory, *_ in reactor.tcpServers if port == 8124]
    assert isinstance(web.buildProtocol(None), GuardedChannel)


def test_tmpnb_proxy_takes_the_front_door_in_milliseconds_as_chps_own():
    options = ProxyOptions()
    options.parseOptions(["--head-timeout=5000", "--body-timeout=0", "--body-min-rate=100",
                          "--max-client-connections=64"])
    settings = settings_from_options(options)
    assert (settings.head_timeout, settings.body_timeout, settings.body_min_rate) == (5.0, None, 100.0)
    assert settings.max_client_connections == 64


def test_tmpnb_proxy_defaults_keep_a_drop_in_chps_behaviour_but_the_deadlines():
    options = ProxyOptions()
    options.parseOptions([])
    settings = settings_from_options(options)
    assert (settings.head_timeout, settings.body_timeout) == (20.0, 20.0)
    assert settings.max_client_connections == 0  # behind a load balancer every client is one address
    assert settings.default_target_max_body is None
    assert ProxySettings().max_client_connections == 0


def test_the_node_raises_its_soft_open_file_limit_to_the_hard_one_at_start(monkeypatch, tmp_path):
    import resource

    from tmpnb import openfiles

    limits = {"now": (1024, 65536)}
    monkeypatch.setattr(openfiles.resource, "getrlimit", lambda which: limits["now"])
    monkeypatch.setattr(openfiles.resource, "setrlimit", lambda which, value: limits.__setitem__("now", value))
    assert openfiles.raise_soft_limit() == (65536, 65536)
    limits["now"] = (1024, resource.RLIM_INFINITY)
    assert openfiles.raise_soft_limit() == (openfiles.UNLIMITED_TARGET, resource.RLIM_INFINITY)
    reactor = MemoryReactorClock()
    top = makeService(parse(f"--socket-root={tmp_path}"), reactor=reactor, environ={})
    assert isinstance(top.getServiceNamed("open-files"), openfiles.OpenFileLimit)

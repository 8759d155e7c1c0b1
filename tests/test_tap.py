"""`twistd tmpnb`: tmpnb's option names become settings, and the listeners are where asked.

Services are built on a MemoryReactorClock: listeners are recorded, nothing is bound,
and the pool is never started here (that needs dockerd; see tests/integration/test_e2e.py).
"""

from __future__ import annotations

import os
import stat
import sys

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError

from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.sockets import proxy_target
from tmpnb.endpoints import web_socket_path
from tmpnb.servertokens import ServerTokens
from tmpnb.settings import container_spec, pool_config, restarts, web_settings
from tmpnb.tap import Options, makeService


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_the_plugin_names_tmpnb_tap():
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert makers["tmpnb"].module == "tmpnb.tap"


def test_defaults_match_the_shared_settings():
    options = parse()
    assert container_spec(options) == ContainerSpec()
    assert pool_config(options) == PoolConfig()
    assert options["listen"] == "tcp:8000:interface=127.0.0.1"
    assert options["proxy-api-listen"] == "tcp:8001:interface=127.0.0.1"
    assert options["redirect-uri"] == "/tree"
    assert web_settings(options, {}).use_tokens  # always: --no-tokens is refused


def test_tmpnb_option_names_fill_the_settings():
    options = parse(
        "--pool-size=5", "--capacity=50", "--cull-period=30", "--cull-timeout=900", "--cull-max=7200",
        "--user-length=16", "--image=my/notebook:1", "--mem-limit=1g", "--cpu-shares=512",
        "--cpu-quota=50000", "--host-network", "--container-ip=127.0.0.2", "--container-port=9000",
        "--host-directories=/data:/home/jovyan/data:ro,/x:/y", "--instance=class1",
        "--socket-root=/tmp/s", "--use-tokens", "--boot-attempts=2", "--boot-timeout=9",
        "--allow-origin=https://a.example", "--frame-ancestors='self' https://j.example",
    )
    spec = container_spec(options)
    assert (spec.image, spec.mem_limit, spec.cpu_shares, spec.cpu_quota) == ("my/notebook:1", "1g", 512, 50000)
    assert (spec.host_network, spec.container_ip, spec.container_port) == (True, "127.0.0.2", 9000)
    assert spec.host_directories == ("/data:/home/jovyan/data:ro", "/x:/y")
    assert (spec.instance, spec.socket_root) == ("class1", "/tmp/s")
    assert (spec.allow_origin, spec.frame_ancestors) == ("https://a.example", "'self' https://j.example")
    config = pool_config(options)
    assert (config.pool_size, config.capacity, config.user_length) == (5, 50, 16)
    assert (config.cull_period, config.cull_timeout, config.cull_max) == (30, 900, 7200)
    assert (config.boot_attempts, config.boot_timeout) == (2, 9)


def test_max_booting_reaches_the_pool_config():
    assert pool_config(parse("--max-booting=2")).max_booting == 2


def test_refill_delay_reaches_the_pool_config():
    assert pool_config(parse("--refill-delay=0")).refill_delay == 0.0
    assert parse()["max-waiting"] == 200


def test_by_default_a_restart_keeps_the_visitors_and_the_flags_clean_up_instead():
    assert restarts(parse()) == {"adopt": True, "keep_assigned": True}
    assert restarts(parse("--cleanup-on-start")) == {"adopt": False, "keep_assigned": True}
    assert restarts(parse("--cleanup-on-stop")) == {"adopt": True, "keep_assigned": False}


def test_cors_options_and_api_token_reach_the_web_settings():
    options = parse("--allow-origin=*", "--allow-credentials=true", "--allow-methods=GET, POST",
                    "--allow-headers=Authorization", "--expose-headers=Location", "--max-age=600")
    settings = web_settings(options, {"API_AUTH_TOKEN": "k"})
    assert settings.api_token == "k"
    assert settings.cors.allow_origin == "*"
    assert settings.cors.allow_credentials is True
    assert (settings.cors.allow_methods, settings.cors.max_age) == ("GET, POST", 600)


@pytest.mark.parametrize(
    "argv",
    [["--pool-size=30", "--capacity=20"], ["--capacity=0"], ["--redirect-uri=https://evil.example/"],
     ["--user-length=0"], ["--use-tokens", "--no-tokens"], ["--allow-credentials=maybe"],
     ["--cleanup-on-stop=no"], ["--cleanup-on-start=yes"], ["--max-booting=0"], ["--max-waiting=-1"],
     ["--refill-delay=-1"]],
)
def test_nonsense_is_refused_at_parse_time(argv):
    with pytest.raises(UsageError):
        parse(*argv)


def test_no_tokens_is_refused_with_a_reason():
    with pytest.raises(UsageError, match="--no-tokens was removed"):
        parse("--no-tokens")


def test_the_secret_file_is_made_0600_at_start_and_tokens_survive_a_restart(tmp_path):
    options = parse(f"--socket-root={tmp_path}", "--instance=t1", "--proxy-api-listen=none")
    makeService(options, reactor=MemoryReactorClock(), environ={})
    path = tmp_path / "t1.secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    chosen = tmp_path / "elsewhere" / "s"
    makeService(parse(f"--socket-root={tmp_path}", f"--secret-file={chosen}", "--proxy-api-listen=none"),
                reactor=MemoryReactorClock(), environ={})
    assert stat.S_IMODE(os.stat(chosen).st_mode) == 0o600
    assert ServerTokens.from_file(str(path)).token_for("a") != ServerTokens.from_file(str(chosen)).token_for("a")


def test_a_secret_file_others_can_read_stops_the_start(tmp_path):
    path = tmp_path / "t1.secret"
    path.write_text("z" * 64)
    path.chmod(0o644)
    with pytest.raises(SystemExit, match="chmod 600"):
        makeService(parse(f"--socket-root={tmp_path}", "--instance=t1", "--proxy-api-listen=none"),
                    reactor=MemoryReactorClock(), environ={})


def test_an_external_proxy_needs_its_token(monkeypatch):
    monkeypatch.delenv("CONFIGPROXY_AUTH_TOKEN", raising=False)
    with pytest.raises(UsageError):
        parse("--proxy-api-url=http://127.0.0.1:8001")
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "t")
    assert parse("--proxy-api-url=http://127.0.0.1:8001")["proxy-api-url"] == "http://127.0.0.1:8001"


def start_listeners(service, reactor: MemoryReactorClock, names: list[str]) -> None:
    for name in names:
        service.getServiceNamed(name).privilegedStartService()


def test_embedded_proxy_listens_publicly_and_sends_the_rest_to_the_orchestrators_socket(tmp_path):
    reactor = MemoryReactorClock()
    options = parse(f"--socket-root={tmp_path}", "--instance=t1", "--admin-port=10000",
                    "--listen=tcp:8123:interface=127.0.0.1")
    top = makeService(options, reactor=reactor, environ={})
    start_listeners(top, reactor, ["proxy", "proxy-api", "web", "admin"])

    tcp = {port: (factory, interface) for port, factory, _, interface in reactor.tcpServers}
    assert sorted(tcp) == [8123, 10000]
    assert all(interface == "127.0.0.1" for _, interface in tcp.values())
    api_socket = str(tmp_path / "t1.proxy-api.sock")
    public = tcp[8123][0]
    socket = web_socket_path(container_spec(options))
    assert socket == str(tmp_path / "t1.web.sock")
    assert public.default_target == proxy_target(socket)
    assert sorted(address for address, *_ in reactor.unixServers) == sorted([api_socket, socket])
    # Room in the backlog for a spike's proxy connections, one per visitor in line.
    [(_, _, backlog, *_)] = [server for server in reactor.unixServers if server[0] == socket]
    assert backlog > options["max-waiting"]


def test_with_an_external_proxy_the_orchestrator_takes_the_listener(monkeypatch):
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "t")
    reactor = MemoryReactorClock()
    options = parse("--listen=tcp:9999:interface=127.0.0.1", "--proxy-api-url=http://127.0.0.1:8001")
    top = makeService(options, reactor=reactor, environ={"CONFIGPROXY_AUTH_TOKEN": "t"})
    names = {service.name for service in top}
    assert "proxy" not in names and "proxy-api" not in names
    start_listeners(top, reactor, ["web"])
    [(port, site, _, interface)] = reactor.tcpServers
    assert (port, interface) == (9999, "127.0.0.1")
    assert site.resource.children[b"api"].children.keys() == {b"spawn", b"stats", b"share"}


def test_the_public_listener_can_be_tls(tmp_path):
    from test_proxy_tls import self_signed_pem

    (tmp_path / "server.pem").write_bytes(self_signed_pem())
    reactor = MemoryReactorClock()
    options = parse(f"--socket-root={tmp_path}", "--proxy-api-listen=none",
                    f"--listen=ssl:8443:interface=127.0.0.1:privateKey={tmp_path}/server.pem")
    top = makeService(options, reactor=reactor, environ={})
    start_listeners(top, reactor, ["proxy"])
    [(port, public, _, _, interface)] = reactor.sslServers
    assert (port, interface) == (8443, "127.0.0.1")
    assert public.scheme == b"https"  # X-Forwarded-Proto for the notebook servers


def test_web_listen_can_be_tcp(tmp_path):
    reactor = MemoryReactorClock()
    options = parse(f"--socket-root={tmp_path}", "--web-listen=tcp:9100:interface=127.0.0.1",
                    "--listen=tcp:8124:interface=127.0.0.1", "--proxy-api-listen=none")
    top = makeService(options, reactor=reactor, environ={})
    assert "proxy-api" not in {service.name for service in top}
    start_listeners(top, reactor, ["proxy", "web"])
    tcp = {port: factory for port, factory, _, _ in reactor.tcpServers}
    assert tcp[8124].default_target == "http://127.0.0.1:9100"
    assert 9100 in tcp


def test_two_nodes_on_one_host_differ_only_in_instance_and_listen(tmp_path):
    """Everything else that must differ (sockets, the proxy API) is derived from the instance."""
    listeners = []
    for instance, port in (("n1", 8101), ("n2", 8102)):
        reactor = MemoryReactorClock()
        options = parse(f"--socket-root={tmp_path}", f"--instance={instance}", f"--listen=tcp:{port}:interface=127.0.0.1",
                        "--public-url=http://n.example.org")
        top = makeService(options, reactor=reactor, environ={})
        start_listeners(top, reactor, ["proxy", "proxy-api", "web"])
        listeners.append({("tcp", p) for p, *_ in reactor.tcpServers} | {("unix", a) for a, *_ in reactor.unixServers})
        assert web_settings(options, {}).node == instance
    assert listeners[0].isdisjoint(listeners[1])


def test_a_postgresql_store_without_its_driver_is_one_line_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if tmpnb[postgresql] were not installed
    with pytest.raises(UsageError, match=r"^--share-store on PostgreSQL needs the psycopg driver: "
                                                r"pip install 'tmpnb\[postgresql\]'$"):
        Options().parseOptions(["--share-store", "postgresql://db.example/shares"])

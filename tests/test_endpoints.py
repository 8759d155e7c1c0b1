"""Where `twistd tmpnb`'s own listeners go (tmpnb/endpoints.py), and the option coercers both
taps share (tmpnb/options.py)."""

from __future__ import annotations

import pytest
from twisted.python.usage import UsageError

from tmpnb.config import ContainerSpec
from tmpnb.endpoints import default_proxy_api_listen, orchestrator_endpoint, target_of, web_socket_path
from tmpnb.options import endpoint_or_port, optional_int, yes_no
from tmpnb.sockets import proxy_target


@pytest.mark.parametrize("endpoint, target", [
    ("tcp:9100", "http://127.0.0.1:9100"),
    ("tcp:9100:interface=10.0.0.2", "http://10.0.0.2:9100"),
    ("unix:/run/tmpnb/web.sock:mode=600", proxy_target("/run/tmpnb/web.sock")),
])
def test_the_proxy_reaches_the_orchestrator_where_it_listens(endpoint, target):
    assert target_of(endpoint) == target


def test_only_tcp_and_unix_orchestrators_can_be_reached():
    with pytest.raises(UsageError):
        target_of("ssl:443")


def test_the_default_instance_keeps_chps_api_port_and_others_get_a_socket_each():
    assert default_proxy_api_listen("tmpnb", "/run/tmpnb") == "tcp:8001:interface=127.0.0.1"
    assert default_proxy_api_listen("n2", "/run/tmpnb") == "unix:/run/tmpnb/n2.proxy-api.sock:mode=600:lockfile=1"


def test_by_default_the_orchestrator_listens_on_a_socket_next_to_the_containers():
    spec = ContainerSpec(instance="n1", socket_root="/tmp/s")
    listen, target = orchestrator_endpoint(None, spec, max_waiting=200)
    assert web_socket_path(spec) == "/tmp/s/n1.web.sock"
    assert listen == "unix:/tmp/s/n1.web.sock:mode=600:lockfile=1:backlog=328"
    assert target == proxy_target("/tmp/s/n1.web.sock")
    assert orchestrator_endpoint("tcp:9100", spec, 200) == ("tcp:9100", "http://127.0.0.1:9100")


def test_the_shared_coercers():
    assert [yes_no(v) for v in ("yes", "TRUE", "1", "no", "False", "0")] == [True] * 3 + [False] * 3
    with pytest.raises(ValueError):
        yes_no("maybe")
    assert (optional_int(""), optional_int("none"), optional_int("7")) == (None, None, 7)
    assert endpoint_or_port("9000") == "tcp:9000:interface=127.0.0.1"
    assert endpoint_or_port("unix:/run/admin.sock") == "unix:/run/admin.sock"

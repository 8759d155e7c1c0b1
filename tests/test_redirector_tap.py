"""`twistd tmpnb-redirector` options and wiring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from tests.results import succeeded
from tmpnb.http.guard import GuardedChannel
from tmpnb.logs import QuietSite
from tmpnb.redirector.polling import Poller
from tmpnb.redirector.tap import Options, makeService

REPO = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_nodes_repeat_and_are_normalized():
    options = parse("--node", "http://10.0.0.1:8000/", "--node", "https://n2.example.org")
    assert options["node"] == ["http://10.0.0.1:8000", "https://n2.example.org"]


@pytest.mark.parametrize("argv", [[], ["--node", "10.0.0.1:8000"], ["--node", "http://x:1", "--health-period", "0"],
                                  ["--node", "http://x:1", "--down-after", "0"]])
def test_bad_options_are_refused(argv):
    with pytest.raises(usage.UsageError):
        parse(*argv)


def test_the_service_listens_publicly_and_admin_on_loopback(tmp_path):
    nodes = tmp_path / "nodes"
    nodes.write_text("http://127.0.0.2:8000\nhttp://127.0.0.3:8000\n")
    reactor = MemoryReactorClock()
    top = makeService(parse("--nodes-file", str(nodes), "--node", "http://127.0.0.4:8000",
                            "--listen", "tcp:8123:interface=127.0.0.1", "--admin-listen", "8124"),
                      reactor=reactor, environ={"ADMIN_AUTH_TOKEN": "t"})
    for name in ("web", "admin"):
        top.getServiceNamed(name).privilegedStartService()
    assert sorted((port, interface) for port, _, _, interface in reactor.tcpServers) == [
        (8123, "127.0.0.1"), (8124, "127.0.0.1")]
    admin = next(f for port, f, _, _ in reactor.tcpServers if port == 8124)
    table = admin.resource._redirector.table
    assert sorted(n.url for n in table) == ["http://127.0.0.2:8000", "http://127.0.0.3:8000", "http://127.0.0.4:8000"]


def test_the_redirector_writes_no_line_per_request_or_connection():
    """An hour of health polls and visitors must not bury what matters in the log: its sites
    keep no access log and its client connections log no factory start and stop."""
    reactor = MemoryReactorClock()
    top = makeService(parse("--node", "http://127.0.0.2:8000", "--listen", "tcp:8123:interface=127.0.0.1",
                            "--admin-listen", "8124"), reactor=reactor, environ={"ADMIN_AUTH_TOKEN": "t"})
    for name in ("web", "admin"):
        top.getServiceNamed(name).privilegedStartService()
    for _, site, _, _ in reactor.tcpServers:
        assert isinstance(site, QuietSite) and not site.noisy
    public = next(site for port, site, _, _ in reactor.tcpServers if port == 8123)
    # Strangers reach the public site: a node's deadlines and body limit guard it.
    assert isinstance(public.buildProtocol(None), GuardedChannel)
    poller = next(s for s in top if isinstance(s, Poller))
    pool = poller._http._agent._pool
    assert not pool._factory.noisy


def test_the_nodes_file_is_read_again_on_request_and_a_bad_one_is_refused(tmp_path):
    nodes = tmp_path / "nodes"
    nodes.write_text("http://127.0.0.2:8000\n")
    reactor = MemoryReactorClock()
    top = makeService(parse("--nodes-file", str(nodes), "--admin-listen", "8124"), reactor=reactor,
                      environ={"ADMIN_AUTH_TOKEN": "t"})
    top.getServiceNamed("admin").privilegedStartService()
    [(_, site, _, _)] = reactor.tcpServers
    admin = StubTreq(site.resource)

    def reload() -> bool:
        response = succeeded(admin.post("http://127.0.0.1:8124/api/reload", headers={"Authorization": "token t"}))
        return json.loads(succeeded(response.content()))["reloaded"]

    table = site.resource._redirector.table
    nodes.write_text("http://127.0.0.3:8000\nhttp://127.0.0.4:8000\n")
    assert reload() is True
    assert sorted(n.url for n in table) == ["http://127.0.0.3:8000", "http://127.0.0.4:8000"]
    nodes.write_text("http://127.0.0.5:8000\nhalf a line")
    assert reload() is False
    assert sorted(n.url for n in table) == ["http://127.0.0.3:8000", "http://127.0.0.4:8000"]


def test_the_tmpnb_command_runs_the_redirector():
    done = subprocess.run([sys.executable, "-m", "tmpnb.cli", "redirector", "--help"], capture_output=True,
                          text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert "--nodes-file" in done.stdout and "--health-period" in done.stdout, done.stderr


# The node's machinery: the pool, the container machine and Docker, and what loads them.
NODE_MODULES = ("docker", "automat", "tmpnb.pool", "tmpnb.states", "tmpnb.waitingline", "tmpnb.dockerapi")


def test_the_redirector_loads_nothing_of_the_pool_the_machine_or_docker():
    """A fresh interpreter, so that no other test's imports count."""
    check = ("import sys, tmpnb.redirector.tap, tmpnb.redirector.web; "
             f"print(sorted(m for m in {NODE_MODULES!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_hosts_are_collected_and_an_empty_one_allows_nothing():
    options = parse("--node", "http://127.0.0.2:8000", "--public-host", "*.nb.example.org",
                    "--public-host", "", "--public-host", "N1.Example.org")
    assert options["public-host"] == ["*.nb.example.org", "n1.example.org"]
    with pytest.raises(usage.UsageError):
        parse("--node", "http://127.0.0.2:8000", "--public-host", "https://x.example.org/")

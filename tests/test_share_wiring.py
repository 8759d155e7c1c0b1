"""Sharing as `twistd tmpnb` wires it, and its events in the lifecycle log."""

from __future__ import annotations

import io
import json

from twisted.internet.testing import MemoryReactorClock

from sharefakes import BASE
from tests.results import succeeded
from tmpnb.lifecycle import LifecycleLogObserver, load
from tmpnb.tap import Options, makeService


def test_share_options_have_defaults_and_none_turns_sharing_off(tmp_path, monkeypatch):
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "t")
    options = Options()
    options.parseOptions([])
    assert options["share-store"] == "/var/lib/tmpnb/shares.sqlite3"
    assert options["share-max-bytes"] == 10_000_000
    reactor = MemoryReactorClock()
    on = Options()
    on.parseOptions(["--listen=tcp:9999:interface=127.0.0.1", "--proxy-api-url=http://127.0.0.1:8001",
                     f"--share-store={tmp_path / 'shares.sqlite3'}", "--share-max-bytes=5000"])
    top = makeService(on, reactor=reactor, environ={"CONFIGPROXY_AUTH_TOKEN": "t"})
    top.getServiceNamed("web").privilegedStartService()
    site = reactor.tcpServers[0][1]
    assert {b"share", b"remix"} <= set(site.resource.children)
    assert (tmp_path / "shares.sqlite3").exists()

    reactor = MemoryReactorClock()
    off = Options()
    off.parseOptions(["--listen=tcp:9999:interface=127.0.0.1", "--proxy-api-url=http://127.0.0.1:8001",
                      "--share-store=none"])
    top = makeService(off, reactor=reactor, environ={"CONFIGPROXY_AUTH_TOKEN": "t"})
    top.getServiceNamed("web").privilegedStartService()
    site = reactor.tcpServers[0][1]
    assert not {b"share", b"remix"} & set(site.resource.children)


def test_share_events_go_to_the_lifecycle_log_and_the_transition_report_skips_them(tmp_path):
    from test_share_web import notebook, post_share
    from sharefakes import World

    world = World(tmp_path)
    out = io.StringIO()
    world.sharing._records.append(LifecycleLogObserver(out).write)
    token = world.visitor("alice", notebook())
    _, answer = post_share(world, token)
    assert succeeded(world.http.post(f"{BASE}/remix/{answer['id']}", allow_redirects=False)).code == 302
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["kind"], e["event"], e["share"], e["container"]) for e in events] == [
        ("share", "shared", answer["id"], "alice"), ("share", "remixed", answer["id"], "alice")]
    assert events[1]["into"] == "pool0"
    path = tmp_path / "lifecycle.jsonl"
    path.write_text(out.getvalue())
    assert load(str(path)) == []
    world.close()

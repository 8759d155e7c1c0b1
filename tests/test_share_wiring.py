"""Sharing as `twistd tmpnb` wires it, and its events in the lifecycle log."""

from __future__ import annotations

import io
import json

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger

from tmpnb.lifecycle import SHARE_MARKER, LifecycleLogObserver, load
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
    out = io.StringIO()
    observer = LifecycleLogObserver(out)
    log = Logger(observer=observer)
    log.info("share {share} {share_event}", share="S" * 22, share_event="remixed", container="abc",
             into="def", time=1800000000.0, **{SHARE_MARKER: True})
    log.info("unrelated")
    [line] = out.getvalue().splitlines()
    assert json.loads(line) == {"kind": "share", "event": "remixed", "share": "S" * 22, "container": "abc",
                                "time": 1800000000.0, "iso": "2027-01-15T08:00:00+00:00", "into": "def"}
    path = tmp_path / "lifecycle.jsonl"
    path.write_text(line + "\n")
    assert load(str(path)) == []
